"""Every fenced block in docs/*.md is run or read by a test here, or listed in NOT_RUNNABLE with why.

Blocks are named by a `<!-- check: NAME -->` comment above them (tests/docs_blocks.py). A new block
without a name, or with a name no test below knows, fails the first test: that keeps this true.
Commands run against real processes on free 127.0.0.1 ports, bounded in time; the README's own blocks
are run by tests/browser/test_readme_snippets.py and tests/test_readme_models.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llm_sse_proxy.mock_upstream import DEFAULT_REPLY as DEFAULT_REPLY_UPSTREAM
from llm_sse_proxy.proxy.telemetry.log_format import JsonFormatter
from llm_sse_proxy.proxy.config import parse_config
from tests.conftest import chat_body, make_config, proxy, read_stream
from tests.docs_blocks import block, doc_blocks, inline_commands
from tests.redis_fixtures import RedisServer, free_port
from tests.sse_parse import parse_stream
from tests.upstream_fixtures import mock_upstream, upstream_config

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).parent.parent
BIN = Path(sys.executable).parent  # the venv's bin: where `.venv/bin/…` in the docs points
CLI = str(BIN / "llm-sse-proxy")

FLAG = r"--[a-z][a-z-]*"


def flags_missing(command: str, defined: set[str]) -> list[str]:
    """The --flags a command uses that the program does not define."""
    return [flag for flag in re.findall(rf"(?<!\S){FLAG}", command) if flag not in defined]

# Blocks a test reads or runs (the test is named after the block).
RUN = {
    "retry-timeouts", "rehearsal", "access-log-line", "command-line", "redis-shared-state",
    "client-keys-config", "client-keys-recipe", "forwarded-allow-ips", "recovery-models",
    "continue-transcript", "restart-transcript", "json-log-line",
    "jwt-budgets-config", "jwt-sign-python", "jwt-sign-node",
    "readyz-body", "trace-tree", "routing-example",  # tests/test_readiness.py, tests/test_tracing.py
}
# Blocks no test can run here, and why; each is still checked as far as it can be (the test named after it).
NOT_RUNNABLE = {
    "bench-ab": "starts the proxy at several git revisions in temporary worktrees for minutes, on an idle "
                "machine; its flags are checked against `bench/ab.py --help`",
    "bench-resume-rows": "a measurement of minutes for a quiet machine; its flags are checked against "
                         "`bench/run.py --help` and its paths against bench/paths.py",
}


def test_every_fenced_block_in_docs_is_named_and_known() -> None:
    found = doc_blocks()
    unnamed = [f"{b.path}:{b.line}" for b in found if b.name is None]
    names = [b.name for b in found if b.name is not None]
    assert unnamed == [], f"fenced blocks with no <!-- check: NAME --> above them: {unnamed}"
    assert len(names) == len(set(names)), sorted(names)
    known = RUN | set(NOT_RUNNABLE)
    assert set(names) == known, set(names) ^ known
    assert not RUN & set(NOT_RUNNABLE)


def test_the_walker_finds_indented_fences_and_their_names(tmp_path: Path) -> None:
    from tests.docs_blocks import blocks_of

    page = tmp_path / "page.md"
    page.write_text("text\n\n```sh\necho a\n```\n\n- item\n\n  <!-- check: inner -->\n  ```\n  id: 1\n  ```\n")
    found = [(b.line, b.name, b.lang, b.code) for b in blocks_of(page)]
    assert found == [(3, None, "sh", "echo a\n"), (10, "inner", "", "id: 1\n")]


def test_retry_timeouts() -> None:
    shown = make_config(**yaml.safe_load(block("retry-timeouts")))
    defaults = make_config()
    assert (shown.retry, shown.timeouts) == (defaults.retry, defaults.timeouts)  # the block shows the defaults


# --- docs/mock-upstream.md --------------------------------------------------------------------------

def run_script(script: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a shell snippet in its own process group; its background jobs are stopped when it ends."""
    wrapped = "set -eu\ntrap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT\n" + script
    process = subprocess.Popen(["bash", "-c", wrapped], cwd=cwd, text=True, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # anything the trap missed
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def terminates(raw: str) -> list[tuple[int, dict]]:
    """(text events before it, terminate payload) for each stream in curl's concatenated output."""
    out, texts = [], 0
    for event in parse_stream(raw.encode()).events:
        payload = json.loads(event.data)
        if payload.get("action") == "terminate":
            out.append((texts, payload))
            texts = 0
        elif "text" in payload:
            texts += 1
    return out


def test_rehearsal(tmp_path: Path) -> None:
    upstream_port, proxy_port = free_port(), free_port()
    script = (block("rehearsal").replace(".venv/bin/", f"{BIN}/").replace("/tmp/rehearse.yaml", "rehearse.yaml")
              .replace("9000", str(upstream_port)).replace("8081", str(proxy_port)))
    done = run_script(script, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    ended = [(texts, t["reason"], (t.get("error") or {}).get("type")) for texts, t in terminates(done.stdout)]
    assert [end[1:] for end in ended] == [("stop", None), ("error", "timeout"), ("error", "truncated")], done.stdout
    assert ended[1][0] == ended[2][0] == 3  # three chunks, then the error
    # curl's progress meter shares stderr with the proxy's access-log lines, and may precede one on its line.
    logged = [json.loads(line) for line in re.findall(r'(\{"event":"stream".*\})\s*$', done.stderr, re.MULTILINE)]
    flaky = [(line["answered_by"], line["retries"]) for line in logged if line["model"] == "flaky"]
    assert flaky == [("flaky", 2)], done.stderr[-3000:]  # two 503s, retried, then the answer


# --- docs/operations.md -----------------------------------------------------------------------------

async def test_access_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="llm_sse_proxy.access")
    async with proxy(make_config()) as client:
        await read_stream(client, "POST", "/chat", json=chat_body())
    [logged] = [json.loads(r.getMessage()) for r in caplog.records if r.name == "llm_sse_proxy.access"]
    shown = json.loads(block("access-log-line"))
    assert list(shown) == list(logged)  # the same fields, in the same order


def test_json_log_line() -> None:
    """The example has the fields a JSON line about a stream has, in the same order."""
    record = logging.LogRecord("llm_sse_proxy.relay", logging.INFO, __file__, 1, "retrying", None, None)
    record.request_id = "c2b4"
    logged = json.loads(JsonFormatter().format(record))
    assert list(json.loads(block("json-log-line"))) == list(logged)


def test_command_line(tmp_path: Path) -> None:
    synopsis, module, init = block("command-line").splitlines()
    helped = subprocess.run([CLI, "--help"], capture_output=True, text=True, timeout=60, check=True).stdout
    assert flags_missing(synopsis, set(re.findall(FLAG, helped))) == []
    version = subprocess.run([CLI, "--version"], capture_output=True, text=True, timeout=60, check=True).stdout
    assert module.startswith("python -m llm_sse_proxy.proxy …")
    same = subprocess.run([sys.executable, "-m", "llm_sse_proxy.proxy", "--version"], capture_output=True, text=True,
                          timeout=60, check=True).stdout
    assert same == version and version.strip()
    assert init.startswith("llm-sse-proxy init [PATH]")
    subprocess.run([CLI, "init", "starter.yaml"], cwd=tmp_path, capture_output=True, timeout=60, check=True)
    written = (tmp_path / "starter.yaml").read_text()
    again = subprocess.run([CLI, "init", "starter.yaml"], cwd=tmp_path, capture_output=True, timeout=60)
    assert again.returncode != 0 and (tmp_path / "starter.yaml").read_text() == written  # never overwrites
    subprocess.run([CLI, "init"], cwd=tmp_path, capture_output=True, timeout=60, check=True)
    assert (tmp_path / "config.yaml").read_text() == written  # the default path


def redis_from_the_docs(command: str, directory: Path) -> RedisServer:
    """The block's redis-server line on a free port, bound to loopback, its files in a temporary directory."""
    argv = shlex.split(command)
    port = free_port()
    argv[argv.index("--port") + 1] = str(port)
    argv += ["--bind", "127.0.0.1", "--dir", str(directory), "--daemonize", "no", "--logfile", "redis.log"]
    return RedisServer(port, subprocess.Popen(argv, cwd=directory, stdout=subprocess.DEVNULL))


def wait_for_ping(server: RedisServer) -> None:
    for _ in range(500):
        assert server.process.poll() is None, "redis-server exited: see its redis.log"
        try:
            if server.command("PING") == b"+PONG":
                return
        except OSError:
            subprocess.run(["sleep", "0.02"], check=True)
    raise AssertionError("redis-server did not answer PING")


def test_the_readme_shows_the_redis_set_up_that_is_run_here() -> None:
    """README's Scale out block is the one test_redis_shared_state runs, word for word."""
    from tests.docs_blocks import blocks_of

    [readme] = [b.code for b in blocks_of(ROOT / "README.md") if b.name == "readme-redis-setup"]
    assert readme == block("redis-shared-state") and len(readme.splitlines()) == 3
    # Issue 26: in the foreground, redis-server never lets the block's next line run.
    assert shlex.split(readme.splitlines()[0])[-2:] == ["--daemonize", "yes"]


async def test_redis_shared_state(tmp_path: Path) -> None:
    start, export, config_line = block("redis-shared-state").splitlines()
    server = redis_from_the_docs(start, tmp_path)
    try:
        wait_for_ping(server)
        policy = server.command("CONFIG", "GET", "maxmemory-policy")
        url = run_script(f"{export}\necho \"$REDIS_URL\"", tmp_path).stdout.strip()
        assert url == "redis://127.0.0.1:6379/0"
        environ = {"REDIS_URL": url.replace("6379", str(server.port))}
        resume = yaml.safe_load(config_line.split("config.yaml:", 1)[1])["resume"]
        config = make_config(resume=resume, environ=environ)
        async with proxy(config) as client:
            response, parsed = await read_stream(client, "POST", "/chat", json=chat_body())
        stored = server.command("DBSIZE")
    finally:
        server.stop()
    assert policy == b"*2"
    assert response.status_code == 200 and json.loads(parsed.events[-1].data)["reason"] == "stop"
    assert stored != b":0"  # the stream went through Redis


def test_bench_ab() -> None:
    helped = subprocess.run([sys.executable, "bench/ab.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, check=True).stdout
    assert re.findall(FLAG, block("bench-ab")) and flags_missing(block("bench-ab"), set(re.findall(FLAG, helped))) == []


def test_bench_resume_rows() -> None:
    helped = subprocess.run([sys.executable, "bench/run.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, check=True).stdout
    command = block("bench-resume-rows")
    assert command.startswith("make bench ARGS=") and flags_missing(command, set(re.findall(FLAG, helped))) == []
    [paths] = re.findall(r"--paths (\S+)", command)
    known = (ROOT / "bench" / "paths.py").read_text() + (ROOT / "bench" / "run.py").read_text()
    assert all(f'"{path}"' in known or f"'{path}'" in known for path in paths.split(",")), paths


# --- docs/security.md -------------------------------------------------------------------------------

def recipe(tmp_path: Path) -> tuple[list[str], str]:
    """The block's keys and the digest it prints, run as written."""
    done = run_script(block("client-keys-recipe") + 'echo "$PROXY_KEYS"\n', tmp_path, timeout=30)
    assert done.returncode == 0, done.stderr
    digest_line, keys = done.stdout.strip().splitlines()
    return keys.split(","), digest_line.split()[0]


def test_client_keys_recipe(tmp_path: Path) -> None:
    keys, digest = recipe(tmp_path)
    example_key = re.search(r"echo -n '([^']+)'", block("client-keys-recipe"))[1]  # type: ignore[index]
    assert len(keys) == 2 and all(re.fullmatch(r"[0-9a-f]{48}", key) for key in keys), keys
    assert digest == hashlib.sha256(example_key.encode()).hexdigest()
    assert f"sha256:{digest}" in block("client-keys-config")  # the file holds the recipe's digest


async def test_client_keys_config(tmp_path: Path) -> None:
    keys, _ = recipe(tmp_path)
    example_key = re.search(r"echo -n '([^']+)'", block("client-keys-recipe"))[1]  # type: ignore[index]
    environ = {"PROXY_KEYS": ",".join(keys), "PROXY_TOKEN_SECRET": secrets.token_hex(16)}
    config = make_config(**yaml.safe_load(block("client-keys-config")), environ=environ)
    statuses = []
    async with proxy(config) as client:
        for key in [*keys, example_key, "not-a-key-0123456789"]:
            response, _ = await read_stream(client, "POST", "/chat", json=chat_body(),
                                            headers={"authorization": f"Bearer {key}"})
            statuses.append(response.status_code)
        token = (await client.post("/token", headers={"authorization": f"Bearer {keys[0]}"})).json()["token"]
        by_token, parsed = await read_stream(client, "GET", "/stream", params={"token": token})
    assert statuses == [200, 200, 200, 401]
    assert by_token.status_code == 200 and json.loads(parsed.events[-1].data)["reason"] == "stop"


def test_forwarded_allow_ips() -> None:
    config = make_config(**yaml.safe_load(block("forwarded-allow-ips")))
    assert config.server.forwarded_allow_ips == ["10.0.0.5", "10.0.1.0/24"]


# --- docs/streams.md --------------------------------------------------------------------------------

def test_recovery_models() -> None:
    config = make_config(**yaml.safe_load(block("recovery-models")))
    shown = {m.name: (m.recovery, m.continue_with, m.fallbacks) for m in config.models}
    assert shown == {"vllm-qwen": ("continue", "continue_final_message", ["llama-local"]),
                     "llama-local": ("off", "trailing_assistant", [])}


@pytest.mark.parametrize("falls_back", [False, True])
async def test_recovery_models_continue_a_cut_answer_on_the_mock_upstream(falls_back: bool) -> None:
    # The block as written, its URLs pointed at the mock upstream and its model names at mock faults:
    # vllm-qwen's answer is cut after 3 chunks; it (or, with its retries spent, llama-local) continues it.
    models = yaml.safe_load(block("recovery-models"))["models"]
    retry = {"attempts": 1 if falls_back else 2, "backoff_initial": 0.01, "backoff_max": 0.05}
    async with mock_upstream() as up:
        for model in models:
            faults = "+drop_after=3+fault_attempts=99" if model["name"] == "vllm-qwen" and falls_back else (
                "+drop_after=3+fault_attempts=1" if model["name"] == "vllm-qwen" else "")
            model["base_url"] = f"{up.url}/v1"
            model["model"] = f"{model['model']}{faults}+continue_with={model['continue_with']}"
        async with proxy(upstream_config(models, retry=retry)) as client:
            response, parsed = await read_stream(client, "POST", "/chat", json=chat_body())
    payloads = [json.loads(event.data) for event in parsed.events]
    text = "".join(p["text"] for p in payloads[:-1])
    assert response.status_code == 200 and text == DEFAULT_REPLY_UPSTREAM, text
    want = "llama-local" if falls_back else "vllm-qwen"
    assert payloads[-1]["reason"] == "stop" and payloads[-1]["recovered"]["kind"] == "continue", payloads[-1]
    assert payloads[-1]["recovered"]["model"] == want, payloads[-1]


@pytest.mark.parametrize("name", ["continue-transcript", "restart-transcript"])
def test_continue_and_restart_transcripts(name: str) -> None:
    # Examples of a stream, not commands: each must be a stream a client could read.
    parsed = parse_stream(block(name).replace("…\n\n", "").encode())
    ids = [int(event.id) for event in parsed.events]
    payloads = [json.loads(event.data) for event in parsed.events]
    ends = [p for p in payloads if p.get("action") == "terminate"]
    assert parsed.leftover == "" and ids == sorted(set(ids))
    assert ends == [payloads[-1]] and ends[0]["recovered"]["kind"] == name.split("-")[0]
    resets = [e for e in parsed.events if e.type == "reset"]
    assert len(resets) == (name == "restart-transcript")


# --- commands in the prose (inline code) ------------------------------------------------------------

BENCH_SCRIPT = re.compile(r"^(?:\.venv/bin/)?python3? (?:bench/(?P<file>\w+\.py)|-m bench\.(?P<module>\w+))(?P<args>.*)$")
# Inline commands no test runs, and why; each is still checked below as far as it can be.
INLINE_NOT_RUNNABLE = {
    "docker stop": "no container runtime here; tests/test_container.py runs the entry point as PID 1",
    "docker compose up --build": "no container runtime here; compose.yaml is parsed and its services checked",
    "pip install py-spy": "installs from the network; the profiling recipe around it is not run",
    "pip install 'llm-sse-proxy[otel]'": "installs from the network; `make test` installs the same packages (the "
                                         "test extra), and tests/test_tracing.py runs with them",
    "py-spy record -p PID -r 200 -d 10 -f raw -o out.raw": "needs py-spy and ptrace rights on a running proxy",
}
BENCHES = "a measurement (20 s to minutes of CPU, for a quiet machine): not run by the suite; the script exists and takes the flags shown"


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.MULTILINE))


def check_inline(command: str) -> str:
    """How an inline command is checked (for the failure message); raises AssertionError when it is wrong."""
    if command.startswith("make "):
        target = command.split()[1]
        assert target in makefile_targets(), f"no make target {target!r}"
        return "make target"
    bench = BENCH_SCRIPT.match(command)
    if bench:
        path = ROOT / "bench" / (bench["file"] or f"{bench['module']}.py")
        assert path.is_file(), f"no {path.relative_to(ROOT)}"
        if re.search(FLAG, bench["args"]):  # a script that takes flags parses them: its --help only prints
            argv = [sys.executable, "-m", f"bench.{path.stem}"] if bench["module"] else [sys.executable, str(path)]
            helped = subprocess.run([*argv, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
            assert flags_missing(bench["args"], set(re.findall(FLAG, helped))) == [], f"{path.name}: {helped}"
        return BENCHES
    if re.match(r"^(?:\.venv/bin/)?llm-sse-proxy ", command):
        words = command.split()[1:]
        sub = ["mock-upstream"] if words[:1] == ["mock-upstream"] else []
        helped = subprocess.run([CLI, *sub, "--help"], capture_output=True, text=True, timeout=60, check=True).stdout
        assert flags_missing(" ".join(words), set(re.findall(FLAG, helped))) == [], helped
        return "its --help lists every flag"
    assert command in INLINE_NOT_RUNNABLE, f"an inline command no test knows: {command!r}"
    return INLINE_NOT_RUNNABLE[command]


def test_every_inline_command_in_docs_is_checked_or_listed() -> None:
    found = inline_commands()
    wrong = []
    for page, command in found:
        try:
            check_inline(command)
        except AssertionError as err:
            wrong.append((page, command, str(err)[:300]))
    assert len(found) > 10 and wrong == [], wrong
    listed = {command for _, command in found}
    assert set(INLINE_NOT_RUNNABLE) <= listed, set(INLINE_NOT_RUNNABLE) - listed  # no stale entries


def test_compose_yaml_is_what_operations_md_says() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert "redis" in services and [s for s in services.values() if s.get("build") == "."]


@pytest.mark.parametrize(("command", "ok"), [
    ("make test", True), ("make nothing", False), ("python bench/ab.py --revs HEAD --runs 3", True),
    ("python bench/ab.py --no-such-flag", False), ("python bench/missing.py", False),
    ("llm-sse-proxy --workers N", True), ("llm-sse-proxy --no-such-flag", False), ("docker run x", False),
])
def test_check_inline_can_fail(command: str, ok: bool) -> None:
    if ok:
        check_inline(command)
    else:
        with pytest.raises(AssertionError):
            check_inline(command)


JWT_ENV = {"JWT_SECRET": "a-shared-secret-of-32-characters-or-more", "PROXY_ADMIN_KEYS": "an-admin-key-0123456789abcdef"}


def test_jwt_budgets_config() -> None:
    config = parse_config(yaml.safe_load(block("jwt-budgets-config")), where="security.md", environ=JWT_ENV)
    assert config.auth.jwt is not None and config.auth.jwt.tier_claim == "plan" and config.auth.admin_key_hashes
    assert config.budgets.tiers["pro"].tokens_per_day == 2_000_000 and config.models[0].price is not None


async def _a_signed_user_streams(token: str) -> None:
    config = parse_config(yaml.safe_load(block("jwt-budgets-config")), where="security.md", environ=JWT_ENV)
    headers = {"authorization": f"Bearer {token}"}
    async with proxy(config) as client:
        response, parsed = await read_stream(client, "POST", "/chat", json=chat_body(max_tokens=5), headers=headers)
        usage = (await client.get("/usage", headers=headers)).json()
    assert response.status_code == 200 and parsed.events
    assert usage["identity"] == "user:alice" and usage["tier"] == "pro"
    assert {b["budget"]: b["limit"] for b in usage["budgets"]}["tokens_per_day"] == 2_000_000


async def test_jwt_sign_python() -> None:
    done = subprocess.run([sys.executable, "-c", block("jwt-sign-python")], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **JWT_ENV}, check=True)
    await _a_signed_user_streams(done.stdout.strip())


async def test_jwt_sign_node() -> None:
    done = subprocess.run(["node", "--input-type=module", "-e", block("jwt-sign-node")], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **JWT_ENV}, check=True)
    await _a_signed_user_streams(done.stdout.strip())


# --- docs/routing.md --------------------------------------------------------------------------------


async def test_routing_example() -> None:
    """The worked example, pointed at the mock upstream: it loads, and streams from its deployments."""
    from llm_sse_proxy.proxy.config import parse_config

    raw = yaml.safe_load(block("routing-example"))
    async with mock_upstream() as up:
        environ = {f"{name}_{part}": value for name in ("EAST", "WEST", "BACKUP")
                   for part, value in (("URL", up.url + "/v1"), ("KEY", "sk-docs-routing-key"))}
        config = parse_config(raw, where="docs/routing.md", environ=environ)
        async with proxy(config) as client:
            for _ in range(3):
                _, parsed = await read_stream(client, "POST", "/chat", json=chat_body(events=["reasoning"]))
                terminate = json.loads(parsed.events[-1].data)
                assert terminate["model"] == "chat" and terminate["deployment"] in ("east", "west")
    assert up.recorder.count("gpt-4o-mini") == 3
