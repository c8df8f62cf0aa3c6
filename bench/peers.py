"""make bench's peers (issue 27): TensorZero's Rust gateway and the Portkey gateway (Node), on the bench's mocks.

- TensorZero: the `tensorzero` wheel (the `[bench]` extra), its embedded HTTP gateway on 127.0.0.1
  (bench/tensorzero_gateway.py), one `openai` provider per bench model with `api_base` at the mock; asked
  through its OpenAI-compatible endpoint, `tensorzero::model_name::<model>`.
- Portkey: `@portkey-ai/gateway` from bench/portkey/package-lock.json (`@hono/node-server` pinned to 1.13.8:
  newer releases break its streams), installed with `npm ci --ignore-scripts` into bench/portkey/node_modules.
  It listens on every interface and has no host option, so it runs only in the bench's private network
  namespace (bench/netns.py); the runner leaves it out, with a note, anywhere else.

`closes_upstream` checks whether a path closes its upstream when its client leaves mid-stream: the mock
counts the paced streams it is sending (`GET /_streams`).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

import procs
from paths import BENCH, VENV_PYTHON, PathSpec, shapes, upstream_models

TENSORZERO = "tensorzero"
PORTKEY = "portkey"
PORTKEY_DIR = BENCH / "portkey"
PORTKEY_SERVER = PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
LEAVE_MODEL = "n400-i50"  # 20 s of paced chunks: the wait below ends long before the stream would
LEAVE_WAIT_S = 8.0


def tensorzero(mock_port: int, workdir: Path, per_write_port: int | None = None) -> PathSpec:
    config, port_file = workdir / "tensorzero.toml", workdir / "tensorzero.port"
    port_file.unlink(missing_ok=True)
    lines = ["[gateway]", "observability.enabled = false", ""]
    for name, model, base_url in upstream_models(mock_port, per_write_port):
        lines += [f'[models."{name}"]', 'routing = ["mock"]', "", f'[models."{name}".providers.mock]', 'type = "openai"',
                  f'model_name = "{model}"', f'api_base = "{base_url}/"', 'api_key_location = "none"', ""]
    config.write_text("\n".join(lines))
    argv = [str(VENV_PYTHON), str(BENCH / "tensorzero_gateway.py"), "--config", str(config), "--port-file", str(port_file)]
    return PathSpec(TENSORZERO, 0, "/openai/v1/chat/completions", schema=False, argv=argv, shapes=shapes(per_write_port),
                    model_prefix="tensorzero::model_name::", port_file=port_file)


def tensorzero_problem() -> str | None:
    if find_spec(TENSORZERO) is None:
        return "the tensorzero wheel is not installed (pip install -e '.[bench]')"
    return None


def portkey(mock_port: int, per_write_port: int | None = None) -> PathSpec:
    port = procs.free_port()
    argv = [shutil.which("node") or "node", str(PORTKEY_SERVER), f"--port={port}", "--headless"]

    def headers(upstream: int) -> list[str]:
        return ["x-portkey-provider: openai", f"x-portkey-custom-host: http://127.0.0.1:{upstream}/v1",
                "Authorization: Bearer bench"]

    return PathSpec(PORTKEY, port, "/v1/chat/completions", schema=False, headers=headers(mock_port), argv=argv,
                    shapes=shapes(per_write_port), per_write_headers=headers(per_write_port) if per_write_port else None)


def install_portkey(log: Path) -> str | None:
    """`npm ci` the lockfile once (before the bench enters its namespace, which has no network)."""
    if PORTKEY_SERVER.exists():
        return None
    if shutil.which("npm") is None or shutil.which("node") is None:
        return "node and npm are needed for the Portkey gateway"
    with open(log, "ab") as out:
        try:
            subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=PORTKEY_DIR, stdout=out,
                           stderr=subprocess.STDOUT, check=True, timeout=600)
        except (subprocess.SubprocessError, OSError) as exc:
            return f"npm ci in bench/portkey failed ({type(exc).__name__}; see {log})"
    return None


def streams_in_flight(mock_port: int) -> int:
    with socket.create_connection(("127.0.0.1", mock_port), timeout=2) as sock:
        sock.sendall(b"GET /_streams HTTP/1.1\r\nHost: mock\r\nConnection: close\r\n\r\n")
        data = b""
        while part := sock.recv(4096):
            data += part
    return int(data.partition(b"\r\n\r\n")[2])


def closes_upstream(spec: PathSpec, mock_port: int) -> dict:
    """Open a paced stream through `spec`, leave after its first event, and watch the mock for up to
    LEAVE_WAIT_S: {"closed": bool, "after_s": seconds or None}. Run with nothing else streaming."""
    before = streams_in_flight(mock_port)
    sock = socket.create_connection(("127.0.0.1", spec.port), timeout=10)
    try:
        sock.sendall(spec.request(LEAVE_MODEL))
        data, deadline = b"", time.monotonic() + 10
        while b"data: " not in data.partition(b"\r\n\r\n")[2] and time.monotonic() < deadline:
            if not (part := sock.recv(65536)):
                break
            data += part
        if streams_in_flight(mock_port) <= before:
            return {"closed": None, "after_s": None, "error": f"no stream in flight: {data[:80]!r}"}
    finally:
        sock.close()
    left = time.monotonic()
    while time.monotonic() - left < LEAVE_WAIT_S:
        if streams_in_flight(mock_port) <= before:
            return {"closed": True, "after_s": round(time.monotonic() - left, 3)}
        time.sleep(0.05)
    return {"closed": False, "after_s": None, "waited_s": LEAVE_WAIT_S}


if __name__ == "__main__":  # `python bench/peers.py`: install Portkey's lockfile, say what is missing
    print(json.dumps({"tensorzero": tensorzero_problem(), "portkey": install_portkey(Path("/dev/null"))}))
    sys.exit(0)
