"""The config of deployments, strategies, breakers and hedging (issue 22): what loads, and what is refused
with the file and the field named."""

from __future__ import annotations

import pytest

from llm_sse_proxy.proxy.config import BreakerConfig, ConfigError
from llm_sse_proxy.proxy.server.summary import startup_summary
from tests.conftest import make_config

ISSUE_EXAMPLE = {
    "name": "chat", "strategy": "latency", "fallbacks": ["backup"],
    "deployments": [
        {"name": "east", "adapter": "openai", "base_url": "https://east.example/v1", "api_key": "${KEY}",
         "model": "gpt", "weight": 3, "rpm": 600, "tpm": 90000},
        {"name": "west", "adapter": "openai", "base_url": "https://west.example/v1", "api_key": "${KEY}", "model": "gpt"},
    ],
}
BACKUP = {"name": "backup", "adapter": "mock"}


def test_the_issue_example_loads_with_its_defaults() -> None:
    config = make_config([ISSUE_EXAMPLE, BACKUP], environ={"KEY": "sk-routing-test-key"},
                         breaker={"failures": 5, "window": 30, "open_for": 30}, timeouts={"hedge_after": 10})
    chat = config.models[0]
    east, west = chat.upstreams()
    assert chat.strategy == "latency" and chat.adapter is None and config.timeouts.hedge_after == 10
    assert (east.name, east.weight, east.rpm, east.tpm) == ("east", 3, 600, 90000)
    assert (west.name, west.weight, west.rpm, west.tpm) == ("west", 1, None, None)
    assert east.options.base_url == "https://east.example/v1" and east.options.api_key.get_secret_value() == "sk-routing-test-key"
    assert "chat (2 deployments: openai)" in startup_summary(config, config_file="x", mock=False, host="127.0.0.1",
                                                            port=1)[1]


def test_a_model_without_deployments_is_one_made_of_its_own_adapter() -> None:
    config = make_config([{"name": "m", "adapter": "mock", "reply": "hi"}])
    (only,) = config.models[0].upstreams()
    assert (only.name, only.adapter, only.weight, only.options.reply) == (None, "mock", 1, "hi")
    assert config.models[0].strategy == "weighted" and config.timeouts.hedge_after is None
    assert config.breaker == BreakerConfig(failures=5, window=30, open_for=30)


def test_a_model_breaker_changes_only_the_keys_it_gives() -> None:
    config = make_config([{**BACKUP, "breaker": {"failures": 2}}], breaker={"open_for": 9})
    assert config.models[0].breaker.over(config.breaker) == BreakerConfig(failures=2, window=30, open_for=9)


@pytest.mark.parametrize(("model", "problem"), [
    ({"name": "x", "adapter": "mock", "deployments": [{"adapter": "mock"}]},
     "models[0] (x).adapter: a model with deployments takes this key in each deployment"),
    ({"name": "x", "deployments": []}, "models[0] (x).deployments: a non-empty list of deployments"),
    ({"name": "x", "deployments": [{"adapter": "mock", "name": "a"}, {"adapter": "mock", "name": "a"}]},
     "models[0] (x).deployments: duplicate name 'a'"),
    ({"name": "x", "deployments": [{"adapter": "mock"}, {"adapter": "mock", "name": "0"}]},
     "models[0] (x).deployments: duplicate name '0'"),  # the first one's label is its index
    ({"name": "x", "deployments": [{"adaptor": "mock"}]},
     "models[0] (x).deployments[0].adaptor: unknown key; did you mean 'adapter'?"),
    ({"name": "x", "deployments": [{"adapter": "mock", "wieght": 2}]},
     "models[0] (x).deployments[0].wieght: unknown key; did you mean 'weight'?"),
    ({"name": "x", "deployments": [{"adapter": "mock", "weight": 0}]},
     "models[0] (x).deployments[0].weight: must be more than 0"),
    ({"name": "x", "deployments": [{"adapter": "mock", "rpm": 0}]},
     "models[0] (x).deployments[0].rpm: must be at least 1"),
    ({"name": "x", "deployments": [{"adapter": "openai", "model": "m"}]},
     "models[0] (x).deployments[0].base_url: required"),
    ({"name": "x", "strategy": "fastest", "deployments": [{"adapter": "mock"}]},
     "models[0] (x).strategy: must be one of 'weighted', 'least_busy', 'latency' or 'ordered'"),
    ({"name": "x", "adapter": "mock", "breaker": {"failures": -1}}, "models[0] (x).breaker.failures: must be at least 0"),
])
def test_a_bad_deployment_is_refused_with_its_field_named(model: dict, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_config([model])
    assert str(caught.value) == f"test-config: {problem}"


def test_hedge_after_must_be_positive() -> None:
    with pytest.raises(ConfigError, match=r"timeouts.hedge_after: must be more than 0"):
        make_config(timeouts={"hedge_after": 0})


def test_mock_points_every_deployment_at_the_mock_keeping_names_weights_and_quotas() -> None:
    from llm_sse_proxy.proxy.config import parse_config
    raw = {"default_model": "chat", "models": [ISSUE_EXAMPLE, BACKUP]}
    config = parse_config(raw, where="x", environ={}, mock=True)
    east, west = config.models[0].upstreams()
    assert (east.adapter, east.name, east.weight, east.rpm, west.adapter) == ("mock", "east", 3, 600, "mock")
