"""The UI message stream door's pure halves, as tables: the relay's events out as UI chunks
(proxy/doors/ui_stream/chunks.py), and `DefaultChatTransport`'s body in as a chat request
(proxy/doors/ui_stream/messages.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from llm_sse_proxy.proxy.deltas import ImagePart, Message, TextPart, ToolCall
from llm_sse_proxy.proxy.doors.ui_stream.chunks import EVENTS, UIStreamEncoder
from llm_sse_proxy.proxy.doors.ui_stream.messages import parse_ui_chat
from llm_sse_proxy.proxy.errors import BadRequest

USAGE = {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8, "reasoning_tokens": 2}
FINISHED = {"action": "terminate", "reason": "stop", "model": "m", "usage": USAGE}
START = [{"type": "start", "messageId": "m1"}, {"type": "start-step"}]
FINISH = [{"type": "finish-step"},
          {"type": "finish", "finishReason": "stop", "messageMetadata": {
              "model": "m", "usage": {"inputTokens": 3, "outputTokens": 5, "totalTokens": 8, "reasoningTokens": 2}}}]


def encode(events: list[tuple[dict[str, Any], str | None]]) -> tuple[list[dict[str, Any]], bool]:
    """The chunks the events make, and whether the stream ended with `[DONE]`."""
    encoder = UIStreamEncoder("m1")
    raw = b"".join(encoder.frame(payload, event) for payload, event in events).decode()
    blocks = [block for block in raw.split("\n\n") if block]
    assert all(block.startswith("data: ") and "\n" not in block for block in blocks), raw
    done = blocks[-1] == "data: [DONE]"
    return [json.loads(block[6:]) for block in blocks[:-1 if done else None]], done


def text(piece: str) -> tuple[dict[str, Any], None]:
    return {"text": piece}, None


CASES = [
    ("text", [text("Hel"), text("lo"), (FINISHED, None)],
     [*START, {"type": "text-start", "id": "text-1"}, {"type": "text-delta", "id": "text-1", "delta": "Hel"},
      {"type": "text-delta", "id": "text-1", "delta": "lo"}, {"type": "text-end", "id": "text-1"}, *FINISH]),
    ("reasoning, then text: one part each, in order",
     [({"text": "hm"}, "reasoning"), ({"text": "m"}, "reasoning"), text("A"), (FINISHED, None)],
     [*START, {"type": "reasoning-start", "id": "reasoning-1"},
      {"type": "reasoning-delta", "id": "reasoning-1", "delta": "hm"},
      {"type": "reasoning-delta", "id": "reasoning-1", "delta": "m"}, {"type": "reasoning-end", "id": "reasoning-1"},
      {"type": "text-start", "id": "text-2"}, {"type": "text-delta", "id": "text-2", "delta": "A"},
      {"type": "text-end", "id": "text-2"}, *FINISH]),
    ("a tool call: start, pieces, the parsed input",
     [({"index": 0, "id": "c", "name": "f", "arguments": '{"a"'}, "tool_call_delta"),
      ({"index": 0, "arguments": ":1}"}, "tool_call_delta"),
      ({"index": 0, "id": "c", "name": "f", "arguments": '{"a":1}'}, "tool_call"),
      ({**FINISHED, "reason": "tool_calls"}, None)],
     [*START, {"type": "tool-input-start", "toolCallId": "c", "toolName": "f"},
      {"type": "tool-input-delta", "toolCallId": "c", "inputTextDelta": '{"a"'},
      {"type": "tool-input-delta", "toolCallId": "c", "inputTextDelta": ":1}"},
      {"type": "tool-input-available", "toolCallId": "c", "toolName": "f", "input": {"a": 1}},
      FINISH[0], {**FINISH[1], "finishReason": "tool-calls"}]),
    ("a call without an id or a name on its first piece: named as the relay names it",
     [({"index": 1, "arguments": "{}"}, "tool_call_delta"),
      ({"index": 1, "id": "call_1", "name": "g", "arguments": "{}"}, "tool_call")],
     [*START, {"type": "tool-input-start", "toolCallId": "call_1", "toolName": "g"},
      {"type": "tool-input-available", "toolCallId": "call_1", "toolName": "g", "input": {}}]),
    ("a refusal is text the user reads; the reason is content-filter",
     [({"text": "No."}, "refusal"), ({**FINISHED, "reason": "refusal"}, None)],
     [*START, {"type": "text-start", "id": "text-1"}, {"type": "text-delta", "id": "text-1", "delta": "No."},
      {"type": "text-end", "id": "text-1"}, FINISH[0], {**FINISH[1], "finishReason": "content-filter"}]),
    ("an error mid-answer: the part closed, the other doors' message",
     [text("A"), ({"action": "terminate", "reason": "error", "model": "m",
                   "error": {"type": "truncated", "message": "the upstream ended without finishing the answer"}}, None)],
     [*START, {"type": "text-start", "id": "text-1"}, {"type": "text-delta", "id": "text-1", "delta": "A"},
      {"type": "text-end", "id": "text-1"},
      {"type": "error", "errorText": "the upstream ended without finishing the answer"}]),
    ("an error before anything: the message still starts",
     [({"action": "terminate", "reason": "error", "error": {"type": "upstream_unavailable", "message": "down"}}, None)],
     [*START, {"type": "error", "errorText": "down"}]),
    ("shutdown", [text("A"), ({"action": "terminate", "reason": "shutdown"}, None)],
     [*START, {"type": "text-start", "id": "text-1"}, {"type": "text-delta", "id": "text-1", "delta": "A"},
      {"type": "text-end", "id": "text-1"},
      {"type": "error", "errorText": "the proxy is shutting down; send the request again"}]),
    ("a stop: abort with its cause", [text("A"), ({"action": "terminate", "reason": "cancelled", "code": "stopped"}, None)],
     [*START, {"type": "text-start", "id": "text-1"}, {"type": "text-delta", "id": "text-1", "delta": "A"},
      {"type": "text-end", "id": "text-1"}, {"type": "abort", "reason": "stopped"}]),
    ("a reset restarts the message under a new id; the terminate says it recovered",
     [text("Hal"), ({"action": "reset", "reason": "truncated", "model": "m"}, "reset"), text("Hello"),
      ({**FINISHED, "recovered": {"kind": "restart", "after_chars": 3, "model": "m"}}, None)],
     [*START, {"type": "text-start", "id": "text-1"}, {"type": "text-delta", "id": "text-1", "delta": "Hal"},
      {"type": "text-end", "id": "text-1"}, {"type": "finish-step"}, {"type": "start", "messageId": "m1~1"},
      {"type": "start-step"}, {"type": "text-start", "id": "text-2"},
      {"type": "text-delta", "id": "text-2", "delta": "Hello"}, {"type": "text-end", "id": "text-2"}, FINISH[0],
      {**FINISH[1], "messageMetadata": {**FINISH[1]["messageMetadata"],
                                        "recovered": {"kind": "restart", "after_chars": 3, "model": "m"}}}]),
]


@pytest.mark.parametrize(("events", "chunks"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_events_become_ui_chunks(events: list[tuple[dict[str, Any], str | None]], chunks: list[dict[str, Any]]) -> None:
    got, done = encode(events)
    assert got == chunks
    assert done == (events[-1][0].get("action") == "terminate")


def test_text_with_newlines_and_line_separators_stays_on_one_data_line() -> None:
    got, _ = encode([text("a\nb\r\u2028c\u2029"), (FINISHED, None)])
    assert got[3]["delta"] == "a\nb\r\u2028c\u2029"


def body(messages: list[dict[str, Any]], **extra: Any) -> bytes:
    return json.dumps({"id": "chat-1", "messages": messages, "trigger": "submit-message", "messageId": None,
                       **extra}).encode()


def user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"id": "u", "role": "user", "parts": list(parts)}


def test_a_useChat_body_becomes_the_chat_request_with_every_event_asked_for() -> None:
    assistant = {"id": "a", "role": "assistant", "parts": [
        {"type": "step-start"}, {"type": "reasoning", "text": "not resent", "state": "done"},
        {"type": "text", "text": "Let me look.", "state": "done"},
        {"type": "tool-weather", "toolCallId": "c1", "state": "output-available", "input": {"city": "Oslo"},
         "output": {"celsius": -3}},
        {"type": "dynamic-tool", "toolName": "clock", "toolCallId": "c2", "state": "output-error", "input": {},
         "errorText": "no clock"},
        {"type": "tool-weather", "toolCallId": "c3", "state": "input-streaming", "input": {"ci": 1}},
        {"type": "step-start"}, {"type": "text", "text": "It is cold.", "state": "done"},
        {"type": "source-url", "sourceId": "s", "url": "https://example.com"}, {"type": "data-note", "data": 1}]}
    chat = parse_ui_chat(body([
        {"id": "s", "role": "system", "parts": [{"type": "text", "text": "Be brief."}]},
        user({"type": "text", "text": "Weather?"}, {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,AA=="}),
        assistant, user({"type": "text", "text": "Thanks"})], model="m2"))
    assert chat.chat_id == "chat-1" and chat.parsed.model == "m2" and chat.parsed.events == EVENTS
    assert list(chat.parsed.request.messages) == [
        Message("system", "Be brief."),
        Message("user", (TextPart("Weather?"), ImagePart("data:image/png;base64,AA=="))),
        Message("assistant", "Let me look.", tool_calls=(ToolCall("c1", "weather", '{"city": "Oslo"}'),
                                                         ToolCall("c2", "clock", "{}"))),
        Message("tool", '{"celsius": -3}', tool_call_id="c1"),
        Message("tool", "no clock", tool_call_id="c2"),
        Message("assistant", "It is cold."),
        Message("user", "Thanks"),
    ]


REFUSED = [
    (b"[1]", "the body must be a JSON object"),
    (body([user({"type": "text", "text": "hi"})], temperature=1), "temperature: this door takes no such field"),
    (json.dumps({"messages": [user({"type": "text", "text": "hi"})]}).encode(), "id: the chat id must be"),
    (body([]), "messages: must be a non-empty list"),
    (body([user({"type": "text", "text": "hi"})], trigger="resume-stream"), "trigger: must be one of"),
    (body([{"role": "user", "content": "hi"}]), "messages.0: a UI message is an object with `role` and `parts`"),
    (body([{"role": "tool", "parts": []}]), "messages.0.role: must be system, user or assistant"),
    (body([user({"type": "file", "mediaType": "application/pdf", "url": "data:,x"})]),
     "messages.0.parts.0.mediaType: only image files"),
    (body([user({"type": "text", "text": 3})]), "messages.0.parts.0.text: must be a string"),
    (body([user({"type": "tool-x"})]), "messages.0.parts.0.type: 'tool-x' cannot be sent"),
    (body([{"role": "assistant", "parts": [{"type": "tool-x", "state": "output-available"}]}]),
     "messages.0.parts.0: a tool part needs its toolCallId"),
    (body([{"role": "assistant", "parts": [{"type": "reasoning", "text": "only this"}]}]),
     "messages: none of them has anything to send"),
    (body([user({"type": "text", "text": "hi"})], model=""), "model:"),
    (body([user({"type": "text", "text": "\ud800"})]), "lone UTF-16 surrogate"),
]


@pytest.mark.parametrize(("raw", "message"), REFUSED)
def test_a_bad_body_is_a_400_that_names_the_field(raw: bytes, message: str) -> None:
    with pytest.raises(BadRequest) as refused:
        parse_ui_chat(raw)
    assert message in refused.value.message


def test_the_readme_shows_the_page_the_browser_test_runs() -> None:
    """README's useChat block: page.jsx's imports and everything after its settings, word for word."""
    root = Path(__file__).parent.parent
    page = (root / "tests" / "ui_chat" / "page.jsx").read_text()
    (block,) = re.findall(r"```jsx\n(.*?)```", (root / "README.md").read_text(), re.S)
    imports = page[page.index("import { useChat }"):page.index("// The test's settings")].rstrip()
    assert block.startswith(imports + "\n")
    assert block.endswith(page[page.index("const transport"):])


def test_the_bench_client_reads_the_doors_text_back() -> None:
    """bench/load_client.py's `--format ui` decoding, on the encoder's own bytes."""
    from bench.load_client import decode_text

    encoder = UIStreamEncoder("m1")
    raw = b"".join(encoder.frame(*event) for event in [text("a\n"), ({"text": "r"}, "reasoning"), text("é"), (FINISHED, None)])
    assert decode_text(raw, False, ui=True) == "a\né"
