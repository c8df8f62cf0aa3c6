"""The fault rules of issue 12 beside recovery: content-policy rejections, context length, and a client that
leaves during a recovery attempt."""

from __future__ import annotations

import logging

import anyio
import orjson
import pytest

from llm_sse_proxy.adapters.openai_chunks import parse_chunk
from llm_sse_proxy.proxy.errors import ContentPolicyRejected, UpstreamUnavailable
from tests.conftest import RESUME_OFF, proxy
from tests.test_disconnect import wait_for_log
from tests.test_recovery import converse
from tests.upstream_fixtures import mock_upstream, upstream_config

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("code", ["content_policy_violation", "content_filter"])
async def test_a_content_policy_rejection_is_the_answer(code: str) -> None:
    async with mock_upstream() as up:
        primary = up.model("primary", f"p+fail=9:400+error_type={code}", fallbacks=["backup"])
        async with proxy(upstream_config([primary, up.model("backup", "b")])) as client:
            text, terminate, _, _ = await converse(client)
    assert text == "" and terminate["reason"] == "error" and terminate["error"]["type"] == "content_policy"
    assert up.recorder.count() == 1  # not retried, not sent to the fallback


async def test_a_content_policy_rejection_may_go_to_the_fallback_when_configured() -> None:
    async with mock_upstream() as up:
        primary = up.model("primary", "p+fail=9:400+error_type=content_policy_violation", fallbacks=["backup"])
        config = upstream_config([primary, up.model("backup", "b")], faults={"content_policy": "fallback"})
        async with proxy(config) as client:
            text, terminate, _, _ = await converse(client)
    assert terminate["reason"] == "stop" and terminate["model"] == "backup" and text.startswith("Hello!")
    assert up.recorder.count() == 2


@pytest.mark.parametrize(("error", "kind"), [
    ({"message": "Blocked.", "code": "content_filter"}, ContentPolicyRejected),
    ({"message": "Blocked.", "type": "content_policy_violation"}, ContentPolicyRejected),
    ({"message": "Overloaded.", "type": "server_error"}, UpstreamUnavailable),
])
def test_an_in_band_error_is_classified(error: dict, kind: type) -> None:
    with pytest.raises(kind):
        parse_chunk(orjson.dumps({"error": error}).decode())


async def test_context_length_exceeded_goes_to_the_next_model_without_a_retry() -> None:
    async with mock_upstream() as up:
        primary = up.model("small", "s+fail=9:400+error_type=context_length_exceeded", fallbacks=["large"])
        async with proxy(upstream_config([primary, up.model("large", "l")])) as client:
            text, terminate, _, _ = await converse(client)
    assert terminate["reason"] == "stop" and terminate["model"] == "large" and text.startswith("Hello!")
    assert [a.model for a in up.recorder.attempts] == ["s+fail=9:400+error_type=context_length_exceeded", "l"]


async def test_leaving_during_a_recovery_attempt_closes_it_within_a_second(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="llm_sse_proxy")
    timeouts = {"connect": 2, "first_token": 5, "idle": 0.3, "total": 30}
    async with mock_upstream() as up:
        model = up.model("gpt", "gpt+stall_after=3+fault_attempts=2", recovery="continue",
                         continue_with="trailing_assistant")
        async with proxy(upstream_config([model], timeouts=timeouts, **RESUME_OFF)) as client:
            async with client.stream("POST", "/chat", json={"messages": [{"role": "user", "content": "hi"}]}):
                with anyio.fail_after(5):
                    while up.recorder.count() < 2 or up.recorder.attempts[1].chunks_sent < 3:
                        await anyio.sleep(0.01)  # the recovery attempt is under way, and stalls
            left = anyio.current_time()
            closed = await up.recorder.wait_closed(1, timeout=2.0)
            await wait_for_log(caplog, '"reason":"cancelled"')
    assert closed - left < 1.0
    assert up.recorder.attempts[1].body["messages"][-1]["role"] == "assistant"
