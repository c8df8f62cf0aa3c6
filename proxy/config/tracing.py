"""`tracing:`: OpenTelemetry traces over OTLP/HTTP (issue 25), off by default.

The standard OTEL_* environment variables fill what the YAML leaves unset (the YAML wins): this
module reads them, so the SDK is given every value and reads none itself. `capture_content` puts
prompts and answers in spans: sensitive, off by default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict, Field, SecretStr

Sampler = Literal["always_on", "always_off", "traceidratio",
                  "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"]
TRACES_PATH = "/v1/traces"
DEFAULT_ENDPOINT = "http://localhost:4318" + TRACES_PATH


class TracingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    capture_content: bool = False  # prompts and answers in spans: sensitive
    record_client: bool = False  # the client's identity (a key's id, or its IP): never a key
    endpoint: str = DEFAULT_ENDPOINT  # the collector's OTLP/HTTP traces URL
    headers: dict[str, SecretStr] = {}  # sent with each export (a vendor's API key, say)
    service_name: str = "llm-sse-proxy"
    resource_attributes: dict[str, str] = {}
    sampler: Sampler = "parentbased_always_on"
    sampler_arg: float = Field(1.0, ge=0, le=1)  # the ratio of the *traceidratio samplers
    export_timeout: float = Field(10.0, gt=0)  # seconds one export may take
    schedule_delay: float = Field(5.0, gt=0)  # seconds between batches
    max_queue_size: int = Field(2048, ge=1)  # spans waiting to be exported; past it new ones are dropped
    max_export_batch_size: int = Field(512, ge=1)


def with_otel_environment(raw: Any, environ: Mapping[str, str]) -> Any:
    """The `tracing:` section with what the OTEL_* variables say filled into the keys it leaves unset."""
    if raw is not None and not isinstance(raw, dict):
        return raw  # validation names the problem
    section = dict(raw or {})
    for key, value in _from_environment(environ).items():
        section.setdefault(key, value)
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        section["enabled"] = False
    return section


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if endpoint:
        found["endpoint"] = endpoint  # as written: the signal's own URL
    elif base:
        found["endpoint"] = base.rstrip("/") + TRACES_PATH
    headers = environ.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or environ.get("OTEL_EXPORTER_OTLP_HEADERS")
    if headers:
        found["headers"] = parse_pairs(headers)
    resource = parse_pairs(environ.get("OTEL_RESOURCE_ATTRIBUTES", ""))
    if "service.name" in resource:
        found["service_name"] = resource.pop("service.name")
    if resource:
        found["resource_attributes"] = resource
    if environ.get("OTEL_SERVICE_NAME"):
        found["service_name"] = environ["OTEL_SERVICE_NAME"]
    if environ.get("OTEL_TRACES_SAMPLER"):
        found["sampler"] = environ["OTEL_TRACES_SAMPLER"].strip().lower()
    if environ.get("OTEL_TRACES_SAMPLER_ARG"):
        found["sampler_arg"] = environ["OTEL_TRACES_SAMPLER_ARG"]
    for variable, key in _MILLISECONDS.items():
        if environ.get(variable):
            found[key] = _seconds(environ[variable])
    for variable, key in _COUNTS.items():
        if environ.get(variable):
            found[key] = environ[variable]
    return found


_MILLISECONDS = {"OTEL_BSP_SCHEDULE_DELAY": "schedule_delay", "OTEL_BSP_EXPORT_TIMEOUT": "export_timeout"}
_COUNTS = {"OTEL_BSP_MAX_QUEUE_SIZE": "max_queue_size", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "max_export_batch_size"}


def _seconds(milliseconds: str) -> float | str:
    try:
        return float(milliseconds) / 1000
    except ValueError:
        return milliseconds  # validation names the field


def parse_pairs(text: str) -> dict[str, str]:
    """`k1=v1,k2=v2` as OTEL_EXPORTER_OTLP_HEADERS and OTEL_RESOURCE_ATTRIBUTES write them (values URL-encoded)."""
    pairs = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if sep and name.strip():
            pairs[unquote(name.strip())] = unquote(value.strip())
    return pairs
