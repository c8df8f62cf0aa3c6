"""config.yaml: read once at start, validated, with errors that name the file and the field.

This is the only module that reads the environment: `${VAR}` in any string takes its value.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from llm_sse_proxy.adapters import REGISTRY
from llm_sse_proxy.proxy.config.budgets import BudgetsConfig, JwtConfig, Price, reference_only
from llm_sse_proxy.proxy.config.errors import close_match, describe, known_keys, unknown_key, yaml_hint
from llm_sse_proxy.proxy.config.routing import BreakerConfig, BreakerOverride, DeploymentConfig, Strategy, as_mock, routed  # noqa: F401
from llm_sse_proxy.proxy.config.ui_stream import UIStreamConfig
from llm_sse_proxy.proxy.config.tracing import TracingConfig, with_otel_environment

log = logging.getLogger("llm_sse_proxy.config")


class ConfigError(Exception):
    """A bad config file; the message names the file and the field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    cors_origins: list[str] = ["*"]
    ping_interval: float = Field(15.0, gt=0)
    max_body_bytes: int = Field(1_048_576, gt=0)
    shutdown_grace: float = Field(5.0, ge=0)
    drain_delay: float = Field(0.0, ge=0, le=300)  # after SIGTERM: /readyz says 503, new streams still served, then the grace
    send_timeout: float = Field(30.0, gt=0)  # a client that reads nothing for this long is cut off
    debug_endpoints: bool = False  # GET /debug/runtime: task and fd counts, for the soak test only
    # Below the app (proxy/server/serve.py): what a connection may cost before it is a request.
    max_header_bytes: int = Field(65_536, ge=1024, le=1_048_576)  # request line + headers; over it: 431
    max_headers: int = Field(100, ge=10, le=10_000)  # header lines; over it: 431
    head_timeout: float = Field(10.0, gt=0)  # from connect (or a request's first byte) to its last header
    body_timeout: float = Field(30.0, gt=0)  # from the last header to the body's last byte
    keep_alive_timeout: float = Field(5.0, gt=0)  # an idle connection between requests is closed after this
    max_connections: int | None = Field(None, ge=1)  # open connections; None: limits.max_streams + 1024
    forwarded_allow_ips: list[str] = []  # proxies whose X-Forwarded-For/-Proto are believed; none by default

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _addresses_or_networks(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            if entry != "*":
                ipaddress.ip_network(entry, strict=False)  # its ValueError names the bad entry
        return entries


class AuthConfig(_Section):
    """Client keys, as SHA-256 hex digests (a `${VAR}` of comma-separated keys is hashed at load)."""

    key_hashes: frozenset[str] = frozenset()
    token_secret: SecretStr | None = Field(None, min_length=32)  # HMAC key for stream tokens; random per process if unset
    token_ttl: float = Field(60.0, gt=0, le=3600)
    jwt: JwtConfig | None = None  # end users' JWTs (issue 23, proxy/admission/jwt_auth.py)
    admin_key_hashes: frozenset[str] = frozenset()  # `admin_keys`, as `keys`: may read and reset any usage


class LimitsConfig(_Section):
    max_messages: int = Field(200, ge=1)
    max_chars: int = Field(200_000, ge=1)  # all message contents together
    requests_per_minute: float = Field(120.0, gt=0)  # per key, or per IP without keys
    burst: int = Field(30, ge=1)
    streams_per_client: int = Field(20, ge=1)
    max_streams: int = Field(1000, ge=1)  # open streams in the whole process


class MetricsConfig(_Section):
    enabled: bool = True


class LoggingConfig(_Section):
    access_log: bool = True
    log_prompts: bool = False  # put the last user message in the access log line
    format: Literal["text", "json"] = "text"  # json: every line on stderr a JSON object (proxy/telemetry/log_format.py)


class RetryConfig(_Section):
    attempts: int = Field(3, ge=1, le=20)
    backoff_initial: float = Field(0.5, ge=0)
    backoff_max: float = Field(8.0, ge=0)
    retry_after_max: float = Field(30.0, ge=0)
    cooldown_max: float = Field(60.0, ge=0)  # an upstream's Retry-After holds its model off for all requests, up to this; 0: never


class TimeoutsConfig(_Section):
    connect: float = Field(5.0, gt=0)
    first_token: float = Field(30.0, gt=0)
    idle: float = Field(30.0, gt=0)
    total: float = Field(600.0, gt=0)
    hedge_after: float | None = Field(None, gt=0)  # a silent first try gets the next candidate beside it (docs/routing.md)


class FaultsConfig(_Section):
    """What the relay does with the upstream faults that are not plain errors (issue 12)."""

    on_malformed_chunk: Literal["skip", "error"] = "skip"  # skip: counted, and the stream goes on
    max_malformed_in_a_row: int = Field(3, ge=1)  # then the stream ends as an error all the same
    first_token_timeout: Literal["next_model", "retry"] = "next_model"  # a silent model is rarely cured by asking again
    content_policy: Literal["final", "fallback"] = "final"  # final: the rejection is the answer
    max_recoveries: int = Field(1, ge=0, le=10)  # mid-stream recoveries per request


class ResumeConfig(_Section):
    """Resumable streams (issue 10): each event has `id: <stream id>:<seq>`, and generation outlives
    the connection by `grace` seconds so a client can come back with Last-Event-ID. `redis_url` also
    moves the rate buckets, stream slots and used stream tokens into Redis (proxy/state/redis_limits.py)."""

    enabled: bool = True  # false: today's stream, cancelled within 1 s of a disconnect
    store: Literal["memory", "redis"] = "memory"
    redis_url: SecretStr | None = None  # redis://[:password@]host:port/db; a SecretStr, as it may hold a password
    # Seconds generation goes on with no reader, before it is cancelled. 10: a browser's EventSource is back in
    # about 1 s (the `retry: 1000` the proxy sends; bench/eventsource_reconnect.py), so this covers a blip with
    # several failed reconnects, and bills at most 10 s that nobody may read (it was 30; issue 26 item 10).
    grace: float = Field(10.0, gt=0)
    retention: float = Field(300.0, ge=0)  # seconds a finished stream can still be replayed
    max_events_per_stream: int = Field(20_000, ge=2)  # past the caps, the oldest events are dropped
    max_bytes_per_stream: int = Field(2 * 1024 * 1024, ge=1024)
    memory_budget: int = Field(256 * 1024 * 1024, ge=1024)  # all streams' events; past it new streams get 503
    owner_lease: float = Field(10.0, ge=0.3, le=300)  # redis: a dead replica's streams end with owner_lost after this
    redis_connections: int = Field(64, ge=4, le=10_000)  # redis: the one pool of each process (worker), every feature's
    max_readers_per_stream: int = Field(8, ge=1, le=10_000)  # per process; each reader after the first also takes a client slot

    @model_validator(mode="after")
    def _redis_needs_a_url(self) -> ResumeConfig:
        if self.store == "redis" and self.redis_url is None:
            raise ValueError("store: redis needs redis_url (for example ${REDIS_URL})")
        return self


class ModelConfig(_Section):
    name: str = Field(min_length=1)
    adapter: str | None = None  # None when the model lists `deployments:` (each has its own)
    fallbacks: list[str] = []
    max_tokens_cap: int | None = Field(None, ge=1)  # requests above it are clamped to it
    reasoning: Literal["stream", "drop"] = "stream"  # drop: its reasoning never reaches a client
    recovery: Literal["off", "continue", "restart"] = "off"  # when this model's stream dies mid-answer (issue 12)
    continue_with: Literal["none", "trailing_assistant", "prefix_flag", "continue_final_message"] = "none"
    price: Price | None = None  # per million tokens, for spend budgets (issue 23)
    options: Any = None  # the adapter's own options model, validated by its spec
    strategy: Strategy = "weighted"  # how a request picks among the deployments (docs/routing.md)
    deployments: list[DeploymentConfig] = []
    breaker: BreakerOverride | None = None  # this model's changes to the top-level `breaker:`

    def upstreams(self) -> list[DeploymentConfig]:
        """Its deployments: a model without `deployments:` is one, made of its own adapter."""
        return self.deployments or [DeploymentConfig(adapter=self.adapter or "", options=self.options)]

    @field_validator("recovery", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        return "off" if value is False else value  # YAML 1.1 reads a bare `off` as false


class Config(_Section):
    server: ServerConfig = ServerConfig()
    default_model: str
    default_prompt: str = "Tell me about Server-Sent Events."
    models: list[ModelConfig] = Field(min_length=1)
    retry: RetryConfig = RetryConfig()
    timeouts: TimeoutsConfig = TimeoutsConfig()
    auth: AuthConfig = AuthConfig()
    limits: LimitsConfig = LimitsConfig()
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()
    resume: ResumeConfig = ResumeConfig()
    faults: FaultsConfig = FaultsConfig()
    breaker: BreakerConfig = BreakerConfig()
    budgets: BudgetsConfig = BudgetsConfig()
    ui_stream: UIStreamConfig = UIStreamConfig()
    tracing: TracingConfig = TracingConfig()  # issue 25: OpenTelemetry traces (proxy/config/tracing.py)

    def model(self, name: str) -> ModelConfig | None:
        return next((m for m in self.models if m.name == name), None)


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# The shell's forms: ${VAR}, ${VAR:-default} (unset or empty), ${VAR-default} (unset). Keys and
# secrets take the plain form only, so no default can put one in the file.
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}")
_MODEL_KEYS = {"name", "adapter", "fallbacks", "max_tokens_cap", "reasoning", "recovery", "continue_with",
               "strategy", "breaker", "price"}
_SHA256_HEX = re.compile(r"^sha256:[0-9a-f]{64}$")


def load_config(
    path: str | os.PathLike[str],
    *,
    environ: Mapping[str, str] | None = None,
    mock: bool = False,
) -> Config:
    """Read, substitute and validate a config file. `mock` points every model at the mock."""
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
        raw = yaml.safe_load(text)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {_yaml_problem(exc, text)}") from None
    return parse_config(raw, where=where, environ=os.environ if environ is None else environ, mock=mock)


def parse_config(raw: Any, *, where: str, environ: Mapping[str, str], mock: bool = False) -> Config:
    """Validate an already-parsed YAML tree; `where` names it in errors."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: the top level must be a mapping")
    for key in raw:
        if key not in Config.model_fields:
            raise ConfigError(f"{where}: {key}: {unknown_key(str(key), Config.model_fields)}")
    models = raw.get("models")
    if not isinstance(models, list) or not models:
        raise ConfigError(f"{where}: models: a non-empty list of models is required")
    if mock:
        models = [_as_mock(m) for m in models]
    parsed = [_parse_model(m, f"models[{i}]", where, environ) for i, m in enumerate(models)]
    rest = _substitute({k: v for k, v in raw.items() if k not in ("models", "auth")}, "", where, environ)
    rest["tracing"] = with_otel_environment(rest.get("tracing"), environ)
    if "auth" in raw:
        rest["auth"] = _parse_auth(raw["auth"], where, environ)
    try:
        config = Config.model_validate({**rest, "models": parsed})
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_first_problem(exc, Config)}") from None
    _check_references(config, where)
    return config


def _parse_model(raw: Any, loc: str, where: str, environ: Mapping[str, str]) -> ModelConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: {loc}: each model must be a mapping")
    if isinstance(raw.get("name"), str):
        loc = f"{loc} ({raw['name']})"
    written, raw = raw, _substitute(raw, loc, where, environ)
    if "deployments" in raw:
        return _parse_routed_model(raw, written, loc, where)
    spec = REGISTRY.get(raw.get("adapter"))  # type: ignore[arg-type]
    if spec is None:
        raise ConfigError(f"{where}: {_adapter_problem(raw, loc)}")
    _warn_of_written_secrets(written, spec.options, f"{where}: {loc}")
    try:
        options = spec.options.model_validate({k: v for k, v in raw.items() if k not in _MODEL_KEYS})
        return ModelConfig.model_validate({**{k: raw[k] for k in _MODEL_KEYS if k in raw}, "options": options})
    except ValidationError as exc:
        known = {*_MODEL_KEYS, *spec.options.model_fields}
        raise ConfigError(f"{where}: {loc}.{describe(exc.errors()[0], known)}") from None


def _parse_routed_model(raw: dict[str, Any], written: dict[str, Any], loc: str, where: str) -> ModelConfig:
    def warn(index: int, options: type[BaseModel], place: str) -> None:
        _warn_of_written_secrets(written["deployments"][index], options, f"{where}: {place}")

    try:
        deployments = routed(raw, loc, warn)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    try:
        return ModelConfig.model_validate({**{k: raw[k] for k in _MODEL_KEYS if k in raw}, "deployments": deployments})
    except ValidationError as exc:
        raise ConfigError(f"{where}: {loc}.{describe(exc.errors()[0], {*_MODEL_KEYS, 'deployments'})}") from None


def _adapter_problem(raw: dict[str, Any], loc: str) -> str:
    known = ", ".join(sorted(REGISTRY))
    if "adapter" in raw:
        return f"{loc}.adapter: unknown adapter {raw['adapter']!r} (known: {known})"
    misspelled = close_match("adapter", [str(key) for key in raw])  # `adaptor:` and the like
    if misspelled is not None:
        return f"{loc}.{misspelled}: unknown key; did you mean 'adapter'?"
    return f"{loc}.adapter: required (one of: {known})"


def _warn_of_written_secrets(written: dict[str, Any], options: type[BaseModel], place: str) -> None:
    """An upstream key written in the file works, but lands in a repository: say so, as the loader
    refuses a client key there. Never echo the value."""
    for name, field in options.model_fields.items():
        value = written.get(name)
        if field.annotation is SecretStr and isinstance(value, str) and value and "${" not in value:
            log.warning("%s.%s: written in the file itself; export it and write ${VAR} instead", place, name)


def _parse_auth(raw: Any, where: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """`keys` entries are `${VAR}` references (comma-separated keys) or `sha256:<hex>` digests.

    A key written in the file itself is refused, so none lands in a repository by accident.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: auth: must be a mapping")
    keys = raw.get("keys", [])
    if not isinstance(keys, list):
        raise ConfigError(f"{where}: auth.keys: must be a list")
    hashes: set[str] = set()
    for i, entry in enumerate(keys):
        hashes |= _key_hashes(entry, f"auth.keys[{i}]", where, environ)
    secret = raw.get("token_secret")
    if secret is not None and not (isinstance(secret, str) and _VAR.fullmatch(secret.strip())):
        raise ConfigError(f"{where}: auth.token_secret: write a ${{VAR}} reference, not the secret itself")
    admins = raw.get("admin_keys", [])
    if not isinstance(admins, list):
        raise ConfigError(f"{where}: auth.admin_keys: must be a list")
    admin_hashes = {h for i, e in enumerate(admins) for h in _key_hashes(e, f"auth.admin_keys[{i}]", where, environ)}
    reference_only(raw.get("jwt"), "auth.jwt.secret", where, ConfigError)
    rest = _substitute({k: v for k, v in raw.items() if k not in ("keys", "admin_keys")}, "auth", where, environ)
    return {**rest, "key_hashes": frozenset(hashes), "admin_key_hashes": frozenset(admin_hashes)}


def _key_hashes(entry: Any, loc: str, where: str, environ: Mapping[str, str]) -> set[str]:
    if isinstance(entry, str) and _SHA256_HEX.match(entry.strip().lower()):
        return {entry.strip().lower().removeprefix("sha256:")}
    if not isinstance(entry, str) or not _VAR.fullmatch(entry.strip()):
        # Never echo the entry: it may be a key.
        raise ConfigError(f"{where}: {loc}: write a ${{VAR}} reference or a sha256:<64 hex> digest, not a key")
    keys = [k.strip() for k in _substitute(entry.strip(), loc, where, environ).split(",") if k.strip()]
    if not keys:
        raise ConfigError(f"{where}: {loc}: {entry.strip()} holds no keys")
    if any(len(k) < 16 for k in keys):
        raise ConfigError(f"{where}: {loc}: every key must be at least 16 characters long")
    if not all(k.isascii() and k.isprintable() and " " not in k for k in keys):
        # A header carries bytes; a non-ASCII key would arrive as other characters and never match.
        raise ConfigError(f"{where}: {loc}: every key must be printable ASCII without spaces")
    return {hashlib.sha256(k.encode()).hexdigest() for k in keys}


def _as_mock(model: Any) -> Any:
    if not isinstance(model, dict):
        return model
    if "deployments" in model:
        return {k: model[k] for k in _MODEL_KEYS if k in model} | {"deployments": as_mock(model["deployments"])}
    return {k: model[k] for k in _MODEL_KEYS - {"adapter"} if k in model} | {"adapter": "mock"}


def _substitute(value: Any, loc: str, where: str, environ: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        if "${" in _REFERENCE.sub("", value):
            raise ConfigError(f"{where}: {loc.lstrip('.')}: write ${{VAR}}, ${{VAR:-default}} or ${{VAR-default}}; "
                              "no other ${...} form is read")

        def lookup(match: re.Match[str]) -> str:
            name, operator, default = match.groups()
            if operator == ":-" and not environ.get(name):
                return default
            if operator == "-" and name not in environ:
                return default
            if name not in environ:
                raise ConfigError(f"{where}: {loc.lstrip('.')}: environment variable {name} is not set")
            return environ[name]
        return _REFERENCE.sub(lookup, value)
    if isinstance(value, dict):
        return {k: _substitute(v, f"{loc}.{k}", where, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, f"{loc}[{i}]", where, environ) for i, v in enumerate(value)]
    return value


def _check_references(config: Config, where: str) -> None:
    names = [m.name for m in config.models]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{where}: models: duplicate name {duplicates[0]!r}")
    if config.default_model not in names:
        raise ConfigError(f"{where}: default_model: {config.default_model!r} is not one of the models")
    for i, model in enumerate(config.models):
        for fallback in model.fallbacks:
            if fallback not in names or fallback == model.name:
                raise ConfigError(f"{where}: models[{i}] ({model.name}).fallbacks: unknown model {fallback!r}")


def _first_problem(exc: ValidationError, model: type[BaseModel]) -> str:
    error = exc.errors()[0]
    return describe(error, known_keys(model, error["loc"], {"key_hashes": "keys", "admin_key_hashes": "admin_keys"}))


def _yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "parse error"
    return f"line {mark.line + 1}: {problem}{yaml_hint(text, mark.line)}" if mark is not None else str(problem)
