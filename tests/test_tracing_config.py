"""`tracing:` and the standard OTEL_* variables (proxy/config/tracing.py): the YAML wins, the variables fill
what it leaves unset, and the SDK is given every value (it reads none itself)."""

from __future__ import annotations

from typing import Any

import pytest

from llm_sse_proxy.proxy.config import ConfigError
from llm_sse_proxy.proxy.config.tracing import DEFAULT_ENDPOINT, parse_pairs
from tests.conftest import make_config


def tracing(environ: dict[str, str], **section: Any) -> Any:
    return make_config(environ=environ, tracing=section).tracing


@pytest.mark.parametrize("environ, section, expected", [
    ({}, {}, {"enabled": False, "endpoint": DEFAULT_ENDPOINT, "service_name": "llm-sse-proxy"}),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}, {}, {"endpoint": "http://collector:4318/v1/traces"}),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:9/x"}, {},
     {"endpoint": "http://b:9/x"}),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318"}, {"endpoint": "http://yaml:4318/v1/traces"},
     {"endpoint": "http://yaml:4318/v1/traces"}),
    ({"OTEL_SERVICE_NAME": "gateway", "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,service.name=x"}, {},
     {"service_name": "gateway", "resource_attributes": {"deployment.environment": "prod"}}),
    ({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"}, {},
     {"sampler": "parentbased_traceidratio", "sampler_arg": 0.25}),
    ({"OTEL_BSP_SCHEDULE_DELAY": "250", "OTEL_BSP_MAX_QUEUE_SIZE": "64"}, {}, {"schedule_delay": 0.25, "max_queue_size": 64}),
    ({"OTEL_SDK_DISABLED": "true"}, {"enabled": True}, {"enabled": False}),
])
def test_the_yaml_wins_and_the_variables_fill_the_rest(environ: dict[str, str], section: dict[str, Any],
                                                       expected: dict[str, Any]) -> None:
    resolved = tracing(environ, **section)
    assert {key: getattr(resolved, key) for key in expected} == expected


def test_headers_are_secrets_from_either_variable() -> None:
    resolved = tracing({"OTEL_EXPORTER_OTLP_HEADERS": "api-key=s3cr%3Dt,x-team=llm"})
    assert {k: v.get_secret_value() for k, v in resolved.headers.items()} == {"api-key": "s3cr=t", "x-team": "llm"}
    assert "s3cr" not in repr(resolved)


@pytest.mark.parametrize("text, pairs", [
    ("", {}), ("a=1", {"a": "1"}), (" a = 1 , b=2=3 ", {"a": "1", "b": "2=3"}), ("novalue,=x,k=", {"k": ""}),
])
def test_parse_pairs(text: str, pairs: dict[str, str]) -> None:
    assert parse_pairs(text) == pairs


@pytest.mark.parametrize("environ, section, problem", [
    ({"OTEL_TRACES_SAMPLER": "jaeger_remote"}, {}, "tracing.sampler"),
    ({"OTEL_BSP_SCHEDULE_DELAY": "soon"}, {}, "tracing.schedule_delay"),
    ({}, {"enabled": "maybe"}, "tracing.enabled"),
    ({}, {"endpoints": "http://x"}, "tracing.endpoints"),
])
def test_bad_values_name_the_field(environ: dict[str, str], section: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem.replace(".", r"\.")):
        tracing(environ, **section)
