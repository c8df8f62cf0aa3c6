"""The paths under test: how to start each server, and what a client sends to it.

Every path is asked for the same streams (the model name tells the mock their shape, see
mock_upstream.py), so the figures compare.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import procs

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
VENV_PYTHON = Path(sys.executable)
LITELLM_VENV = BENCH / ".litellm-venv"
LITELLM_VERSION = "1.106.2"
LITELLM_KEY = "sk-bench-local-not-a-secret"
# The upstream shapes of the CPU phase (bench/interleave.py): mock_upstream.py's zero-delay burst, its paced
# streams, and mock_aiohttp.py's write per event, asked for with a model name that starts with PER_WRITE_PREFIX.
BURST, PACED, PER_WRITE = "burst", "paced", "per-write"
PACED_MS = 20  # 50 chunks/s: a model's typical pace
PER_WRITE_PREFIX = "w-"
MODELS = ("n100-i0", "n1-i0", "n100-i20", "n50-i20", "n120-i1000", "n30-i10000", "n400-i50")
PER_WRITE_MODELS = (f"{PER_WRITE_PREFIX}n100-i0",)  # asked of mock_aiohttp.py (the per-write shape)
ALL_SHAPES = frozenset({BURST, PACED, PER_WRITE})
# Where each adapter finds its dialect on the bench mock (the mock tells them apart by the request path).
ADAPTER_PATHS = {"openai": "/v1", "anthropic": "", "gemini": "/v1beta", "ollama": ""}
# The proxy with a native adapter: `llm-sse-proxy-<adapter>`, the same streams in that dialect's wire bytes.
NATIVE = tuple(f"llm-sse-proxy-{adapter}" for adapter in ADAPTER_PATHS if adapter != "openai")
# The proxy with resumable streams off, and on with the Redis store (the default path keeps them on, in memory).
RESUME = ("llm-sse-proxy-resume-off", "llm-sse-proxy-redis")
UI = "llm-sse-proxy-ui"  # the proxy through its UI message stream door (`useChat`'s /api/chat)
TRACING = "llm-sse-proxy-tracing"  # tracing on, every span exported to a loopback OTLP receiver (issue 25)
MESSAGES = "llm-sse-proxy-messages"  # the proxy through its Anthropic Messages door (/v1/messages)
CPU_ONLY = (*NATIVE, "llm-sse-proxy-v1", *RESUME, UI, MESSAGES, TRACING)  # variants of the proxy measured in the CPU phase only


@dataclass
class PathSpec:
    name: str
    port: int
    endpoint: str
    schema: bool  # the proxy's SSE schema, else OpenAI's chunks
    headers: list[str] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)  # empty: nothing to start (direct)
    env: dict[str, str] = field(default_factory=dict)
    ui: bool = False  # the UI message stream door: its body in, its chunks out
    messages: bool = False  # the Anthropic Messages door: its body in, its events out
    shapes: frozenset[str] = ALL_SHAPES  # the upstream shapes it can be asked for (interleave.Level.shape)
    model_prefix: str = ""  # what the path wants before the bench's model name (TensorZero: `tensorzero::model_name::`)
    port_file: Path | None = None  # a server that picks its own port writes it here (TensorZero's embedded gateway)
    per_write_headers: list[str] | None = None  # headers for the per-write shape's models, if not `headers` (Portkey)

    def headers_for(self, model: str) -> list[str]:
        per_write = model.startswith(PER_WRITE_PREFIX) and self.per_write_headers is not None
        return self.per_write_headers if per_write else self.headers  # type: ignore[return-value]

    def resolve_port(self, timeout: float) -> bool:
        """For a server that picks its own port: wait (bounded) for it to write the port, and use it."""
        deadline = time.monotonic() + timeout
        while self.port_file is not None and time.monotonic() < deadline:
            if self.port_file.exists() and (text := self.port_file.read_text().strip()):
                self.port = int(text)
                return True
            time.sleep(0.05)
        return self.port_file is None

    @property
    def format(self) -> str:
        """The load client's `--format`."""
        return "ui" if self.ui else "anthropic" if self.messages else "schema" if self.schema else "openai"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.endpoint}"

    def body(self, model: str) -> str:
        if self.ui:
            return json.dumps({"id": "bench-chat", "model": model,
                               "messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": "hi"}]}]})
        chat = {"model": self.model_prefix + model, "messages": [{"role": "user", "content": "hi"}]}
        if self.messages:
            return json.dumps({**chat, "max_tokens": 4096, "stream": True})
        return json.dumps(chat if self.schema else {**chat, "stream": True})

    def request(self, model: str) -> bytes:
        body = self.body(model).encode()
        lines = [f"POST {self.endpoint} HTTP/1.1", f"Host: 127.0.0.1:{self.port}", "Content-Type: application/json",
                 f"Content-Length: {len(body)}", "Connection: close", *self.headers_for(model)]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def shapes(per_write_port: int | None) -> frozenset[str]:
    return ALL_SHAPES if per_write_port else ALL_SHAPES - {PER_WRITE}


def upstream_models(mock_port: int, per_write_port: int | None, path: str = "/v1") -> list[tuple[str, str, str]]:
    """(name the client asks for, model the mock is asked for, base URL) for every model of the bench."""
    found = [(m, m, f"http://127.0.0.1:{mock_port}{path}") for m in MODELS]
    if per_write_port:
        found += [(m, m.removeprefix(PER_WRITE_PREFIX), f"http://127.0.0.1:{per_write_port}/v1") for m in PER_WRITE_MODELS]
    return found


def direct(mock_port: int) -> PathSpec:
    return PathSpec("direct", mock_port, "/v1/chat/completions", schema=False, shapes=shapes(None))


def floor(mock_port: int, per_write_port: int | None = None) -> PathSpec:
    argv = [str(VENV_PYTHON), str(BENCH / "floor.py"), "--upstream", f"http://127.0.0.1:{mock_port}/v1"]
    if per_write_port:
        argv += ["--per-write-upstream", f"http://127.0.0.1:{per_write_port}/v1"]
    port = procs.free_port()
    return PathSpec("floor", port, "/chat", schema=True, argv=[*argv, "--port", str(port)], shapes=shapes(per_write_port))


def proxy(mock_port: int, workdir: Path, workers: int = 1, name: str = "llm-sse-proxy",
          extra: dict | None = None, adapter: str = "openai", per_write_port: int | None = None) -> PathSpec:
    port = procs.free_port()
    config = workdir / f"{name}.yaml"
    per_write_port = per_write_port if adapter == "openai" else None  # mock_aiohttp.py speaks OpenAI's dialect only
    models = [{"name": name_, "adapter": adapter, "base_url": base_url, "api_key": "bench", "model": model}
              for name_, model, base_url in upstream_models(mock_port, per_write_port, ADAPTER_PATHS[adapter])]
    # The bench is one client on one address: lift the per-client limits (they are for the open internet).
    limits = {"requests_per_minute": 1e9, "burst": 1_000_000, "streams_per_client": 100_000, "max_streams": 100_000}
    config.write_text(json.dumps({"server": {"host": "127.0.0.1", "port": port}, "default_model": MODELS[0],
                                  "models": models, "limits": limits, **(extra or {})}, indent=1))  # JSON is YAML
    # The package's own entry, not the venv's script: bench/ab.py runs each tree's CLI, wherever it lives.
    argv = [str(VENV_PYTHON), "-m", "llm_sse_proxy.proxy", "--config", str(config), "--log-level", "warning"]
    if workers > 1:
        argv += ["--workers", str(workers)]
    return PathSpec(name, port, "/chat", schema=True, argv=argv, shapes=shapes(per_write_port))


def proxy_openai(mock_port: int, workdir: Path, name: str = "llm-sse-proxy-v1", per_write_port: int | None = None) -> PathSpec:
    """The same proxy and config, asked through its OpenAI-compatible door (issue 15): OpenAI's chunks out."""
    spec = proxy(mock_port, workdir, name=name, per_write_port=per_write_port)
    spec.name, spec.endpoint, spec.schema = name, "/v1/chat/completions", False
    return spec


def proxy_messages(mock_port: int, workdir: Path) -> PathSpec:
    """The same proxy and config, asked through its Anthropic Messages door: Anthropic's events out."""
    spec = proxy(mock_port, workdir, name=MESSAGES)
    spec.endpoint, spec.schema, spec.messages = "/v1/messages", False, True
    return spec


def proxy_ui(mock_port: int, workdir: Path) -> PathSpec:
    """The same proxy and config, asked through its UI message stream door (issue 24): UI chunks out."""
    spec = proxy(mock_port, workdir, name=UI)
    spec.endpoint, spec.schema, spec.ui = "/api/chat", False, True
    return spec


def resume_off(mock_port: int, workdir: Path, per_write_port: int | None = None) -> PathSpec:
    return proxy(mock_port, workdir, name="llm-sse-proxy-resume-off", extra={"resume": {"enabled": False}},
                 per_write_port=per_write_port)


def tracing(mock_port: int, workdir: Path, endpoint: str) -> PathSpec:
    """The default proxy with tracing on, exporting every span over OTLP/HTTP to `endpoint` (a loopback receiver
    that decodes them, in run.py's process); a queue deep enough that spans are exported, not dropped."""
    config = {"enabled": True, "endpoint": endpoint, "max_queue_size": 100_000, "schedule_delay": 0.5}
    return proxy(mock_port, workdir, name=TRACING, extra={"tracing": config})


def proxy_redis(mock_port: int, workdir: Path, redis_url: str, name: str = "llm-sse-proxy-redis",
                workers: int = 1, limits: dict | None = None, per_write_port: int | None = None) -> PathSpec:
    """Resume on the Redis store; with `resume.redis_url` the rate buckets and stream slots move to Redis too.
    A short retention: the CPU phase finishes thousands of streams, and what it measures is the write path."""
    resume = {"enabled": True, "store": "redis", "redis_url": redis_url, "retention": 10}
    return proxy(mock_port, workdir, name=name, workers=workers,
                 extra={"resume": resume, **({"limits": limits} if limits else {})}, per_write_port=per_write_port)


def granian(mock_port: int, workdir: Path, per_write_port: int | None = None) -> PathSpec:
    """The same proxy app and config under granian (Rust, ASGI) instead of uvicorn, one worker, one
    runtime thread, uvloop: the server layer alone changes (bench/granian_app.py)."""
    config = proxy(mock_port, workdir, name="llm-sse-proxy-granian-config", per_write_port=per_write_port)
    port = procs.free_port()
    argv = [str(VENV_PYTHON.parent / "granian"), "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--runtime-mode", "st", "--runtime-threads", "1", "--loop", "uvloop", "--no-ws",
            "--log-level", "warning", "granian_app:app"]
    env = {"LLMSSE_CONFIG": str(workdir / f"{config.name}.yaml"), "PYTHONPATH": f"{BENCH}{os.pathsep}{ROOT}"}
    return PathSpec("llm-sse-proxy-granian", port, "/chat", schema=True, argv=argv, env=env, shapes=config.shapes)


def litellm(mock_port: int, workdir: Path, per_write_port: int | None = None) -> PathSpec:
    port = procs.free_port()
    config = workdir / "litellm.yaml"
    model_list = [{"model_name": name, "litellm_params": {"model": f"openai/{model}", "api_base": base_url, "api_key": "bench"}}
                  for name, model, base_url in upstream_models(mock_port, per_write_port)]
    config.write_text(json.dumps({"model_list": model_list,
                                  "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"}}, indent=1))
    argv = [str(LITELLM_VENV / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
            "--num_workers", "1"]
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_MASTER_KEY": LITELLM_KEY, "LITELLM_LOG": "ERROR"}
    return PathSpec("litellm", port, "/v1/chat/completions", schema=False,
                    headers=[f"Authorization: Bearer {LITELLM_KEY}"], argv=argv, env=env, shapes=shapes(per_write_port))


def install_litellm(log: Path) -> str | None:
    """Install the pinned LiteLLM proxy into its own venv once; return why not when it fails."""
    binary = LITELLM_VENV / "bin" / "litellm"
    if binary.exists():
        return None
    with open(log, "ab") as out:
        steps = [[sys.executable, "-m", "venv", str(LITELLM_VENV)],
                 [str(LITELLM_VENV / "bin" / "pip"), "install", "--quiet", f"litellm[proxy]=={LITELLM_VERSION}",
                  "httptools"]]  # httptools: uvicorn's parser, so LiteLLM runs on what the proxy runs on
        for argv in steps:
            try:
                subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=True, timeout=600,
                               env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
            except (subprocess.SubprocessError, OSError) as exc:
                return f"pip install litellm[proxy]=={LITELLM_VERSION} failed ({type(exc).__name__}; see {log})"
    return None
