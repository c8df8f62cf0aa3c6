"""A built wheel, installed into a fresh venv and run from another directory, streams with no config file:
the demo page, sse-client.js and the built-in offline-mock config travel inside the package."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest

from tests.test_concurrency_and_shutdown import free_port
from tests.test_server_limits import wait_healthy

ROOT = Path(__file__).parent.parent
SOURCES = ["pyproject.toml", "README.md", "LICENSE", "proxy", "adapters", "mock_upstream"]


def test_the_packaged_config_is_the_shipped_config_yaml() -> None:
    from llm_sse_proxy.proxy.server.starter import PACKAGED_CONFIG

    assert PACKAGED_CONFIG.read_text() == (ROOT / "config.yaml").read_text()


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `bin` directory of a fresh venv holding only the wheel (its dependencies come from this venv)."""
    work = tmp_path_factory.mktemp("install")
    wheel = build_wheel(work)
    venv = work / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    # The dependencies, without the network: a path entry to this venv's site-packages. Its .pth files
    # (the editable install of this checkout among them) are not processed, so only the wheel holds `proxy`.
    purelib = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    (purelib / "test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)])
    return venv / "bin"


def build_wheel(work: Path) -> Path:
    """From a copy of the tracked sources, so nothing of this checkout (build/, egg-info) leaks in."""
    source = work / "source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, source / name)
    built = run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(work / "dist"), str(source)])
    (work / "build.log").write_text(built.stdout + built.stderr)
    return next((work / "dist").glob("llm_sse_proxy-*.whl"))


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, timeout=240, capture_output=True, text=True)


@pytest.mark.timeout(600)
def test_the_build_says_nothing_about_packages(installed: Path) -> None:
    """Issue 26: proxy/static/ was read as an unlisted package, ~40 lines of warnings on every `make run`."""
    log = (installed.parent.parent / "build.log").read_text()
    assert "Warning" not in log and "absent from" not in log, log


@pytest.mark.timeout(600)
def test_the_wheel_imports_from_its_own_venv(installed: Path, tmp_path: Path) -> None:
    code = "import llm_sse_proxy.proxy.resume, llm_sse_proxy.adapters, llm_sse_proxy.mock_upstream as m; print(m.__file__)"
    done = subprocess.run([str(installed / "python"), "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(installed.parent), done.stdout


@pytest.mark.timeout(600)
def test_the_wheel_installs_one_top_level_name(installed: Path) -> None:
    """No generic `proxy` or `adapters` package that could clash with another distribution's."""
    [wheel] = (installed.parent.parent / "dist").glob("llm_sse_proxy-*.whl")
    names = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {name for name in names if not name.endswith(".dist-info")} == {"llm_sse_proxy"}


def test_every_subpackage_in_the_tree_is_packaged() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    in_tree = {"llm_sse_proxy." + ".".join(init.parent.relative_to(ROOT).parts)
               for room in ("proxy", "adapters", "mock_upstream") for init in (ROOT / room).rglob("__init__.py")}
    assert listed == in_tree


@pytest.mark.timeout(600)
def test_the_installed_command_streams_from_any_directory_with_no_config(installed: Path, tmp_path: Path) -> None:
    with running_command(installed / "llm-sse-proxy", tmp_path) as (port, stderr):
        base = f"http://127.0.0.1:{port}"
        page = httpx2.get(f"{base}/", timeout=10)
        client = httpx2.get(f"{base}/static/sse-client.js", timeout=10)
        events = stream_events(f"{base}/chat")
    assert (page.status_code, page.text) == (200, (ROOT / "proxy/static/index.html").read_text())
    assert (client.status_code, client.text) == (200, (ROOT / "proxy/static/sse-client.js").read_text())
    assert (events[-1]["action"], events[-1]["reason"]) == ("terminate", "stop") and len(events) > 1
    said = "".join(stderr)
    assert "config: built-in, the offline mock (no config.yaml here); for a real model, run `llm-sse-proxy init`" in said
    assert f"listening on http://127.0.0.1:{port}" in said


@contextmanager
def running_command(command: Path, cwd: Path) -> Iterator[tuple[int, list[str]]]:
    port = free_port()
    process = subprocess.Popen([str(command), "--port", str(port)], cwd=cwd, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    stderr: list[str] = []
    try:
        wait_healthy(port, process)
        yield port, stderr
    finally:
        process.terminate()
        stderr += process.communicate(timeout=10)[1].splitlines()


def stream_events(url: str) -> list[dict]:
    with httpx2.stream("POST", url, json={"messages": [{"role": "user", "content": "hi"}]}, timeout=10) as response:
        raw = response.read()
    return [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")]


def test_a_wheel_built_as_the_readme_says_is_not_tracked() -> None:
    """Issue 26: `pip wheel . --no-deps` leaves the wheel in the checkout; git must not offer to add it."""
    for name in ("llm_sse_proxy-0.1.0-py3-none-any.whl", "dist/llm_sse_proxy-0.1.0.tar.gz"):
        done = subprocess.run(["git", "check-ignore", "--no-index", "-q", name], cwd=ROOT, timeout=30)
        assert done.returncode == 0, f"{name} is not ignored"
