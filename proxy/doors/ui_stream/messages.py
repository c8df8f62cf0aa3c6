"""The body `DefaultChatTransport` sends, turned into the proxy's chat request. Pure, no I/O.

The body is `{id, messages, trigger, messageId}` plus the transport's `body` fields; of those this door
takes `model` (the proxy's model to ask) and refuses any other with a 400 that names it. UIMessages
become the chat-completions messages every door shares, which are then validated as `POST /chat`'s are
(proxy/doors/validation.py), so a message is refused for the same reasons there and here:
- text parts are the content; reasoning parts are never sent back (the upstream made them);
- file parts of a user message with an `image/*` media type become image parts (a data: or https URL);
  other files are refused, as no adapter takes them;
- tool parts (`tool-<name>`, `dynamic-tool`) with an outcome become the assistant's tool call and a tool
  message after it (the output as JSON text, or the error text); a call without an outcome is left out;
- `step-start` splits an assistant message where the SDK does: each step's text and calls, then their results;
- source and data parts are the app's own and are not sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from llm_sse_proxy.proxy.doors.ui_stream.chunks import EVENTS
from llm_sse_proxy.proxy.doors.validation import ParsedChat, parse_chat_body
from llm_sse_proxy.proxy.errors import BadRequest

FIELDS = ("id", "messages", "trigger", "messageId", "model")
TRIGGERS = ("submit-message", "regenerate-message")
_SKIPPED = frozenset({"reasoning", "step-start", "source-url", "source-document"})
_OUTCOMES = frozenset({"output-available", "output-error", "output-denied"})
MAX_CHAT_ID = 200


@dataclass(frozen=True, slots=True)
class UIChat:
    chat_id: str
    message_id: str | None  # the message to regenerate, when the client names one
    parsed: ParsedChat


def parse_ui_chat(body: bytes) -> UIChat:
    """Validate a UI chat body; raise BadRequest with a message that names the field."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = sorted(set(data).difference(FIELDS))
    if unknown:
        raise BadRequest(f"{unknown[0]}: this door takes no such field (it takes {', '.join(FIELDS)})")
    chat_id, messages = data.get("id"), data.get("messages")
    if not isinstance(chat_id, str) or not 0 < len(chat_id) <= MAX_CHAT_ID:
        raise BadRequest(f"id: the chat id must be a string of 1 to {MAX_CHAT_ID} characters")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: must be a non-empty list of UI messages")
    if data.get("trigger", "submit-message") not in TRIGGERS:
        raise BadRequest(f"trigger: must be one of {', '.join(TRIGGERS)}")
    message_id = data.get("messageId")
    if message_id is not None and not isinstance(message_id, str):
        raise BadRequest("messageId: must be a string")
    chat: dict[str, Any] = {"messages": [m for i, ui in enumerate(messages) for m in _message(ui, f"messages.{i}")]}
    if data.get("model") is not None:
        chat["model"] = data["model"]
    if not chat["messages"]:
        raise BadRequest("messages: none of them has anything to send")
    # ASCII escapes: a lone surrogate stays an escape, which the shared validation refuses by name.
    parsed = parse_chat_body(json.dumps(chat, ensure_ascii=True).encode())
    return UIChat(chat_id, message_id, replace(parsed, events=EVENTS))


def _message(ui: Any, place: str) -> list[dict[str, Any]]:
    if not isinstance(ui, dict) or not isinstance(ui.get("parts"), list):
        raise BadRequest(f"{place}: a UI message is an object with `role` and `parts`")
    role, parts = ui.get("role"), ui["parts"]
    for i, part in enumerate(parts):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise BadRequest(f"{place}.parts.{i}: a part is an object with a `type`")
    if role == "assistant":
        return _assistant(parts, place)
    if role in ("user", "system"):
        return [{"role": role, "content": _content(parts, place, images=role == "user")}]
    raise BadRequest(f"{place}.role: must be system, user or assistant")


def _content(parts: list[dict[str, Any]], place: str, *, images: bool) -> str | list[dict[str, Any]]:
    content: list[dict[str, Any]] = []
    for i, part in enumerate(parts):
        kind = part["type"]
        if kind == "text":
            content.append({"type": "text", "text": _text(part, f"{place}.parts.{i}")})
        elif kind == "file":
            if not images:
                raise BadRequest(f"{place}.parts.{i}: file parts are taken in user messages only")
            content.append(_image(part, f"{place}.parts.{i}"))
        elif kind not in _SKIPPED and not kind.startswith("data-"):
            raise BadRequest(f"{place}.parts.{i}.type: {kind!r} cannot be sent in this message")
    if all(part["type"] == "text" for part in content):
        return "".join(part["text"] for part in content)
    return content


def _assistant(parts: list[dict[str, Any]], place: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for i, part in enumerate([*parts, {"type": "step-start"}]):
        kind, where = part["type"], f"{place}.parts.{i}"
        if kind == "text":
            text.append(_text(part, where))
        elif kind == "step-start":
            if text or calls:
                out.append({"role": "assistant", "content": "".join(text) or None, **({"tool_calls": calls} if calls else {})})
            out += results
            text, calls, results = [], [], []
        elif kind == "dynamic-tool" or kind.startswith("tool-"):
            if part.get("state") in _OUTCOMES:
                call, result = _tool(part, where)
                calls.append(call)
                results.append(result)
        elif kind not in _SKIPPED and kind != "file" and not kind.startswith("data-"):
            raise BadRequest(f"{where}.type: {kind!r} is not a part of a UI message")
    return out


def _tool(part: dict[str, Any], place: str) -> tuple[dict[str, Any], dict[str, Any]]:
    name = part.get("toolName") if part["type"] == "dynamic-tool" else part["type"][len("tool-"):]
    call_id = part.get("toolCallId")
    if not isinstance(name, str) or not isinstance(call_id, str) or not call_id:
        raise BadRequest(f"{place}: a tool part needs its toolCallId and tool name")
    arguments = json.dumps(part.get("input") if part.get("input") is not None else {})
    if part["state"] == "output-available":
        output = part.get("output")
        result = output if isinstance(output, str) else json.dumps(output)
    elif part["state"] == "output-error":
        result = str(part.get("errorText") or "the tool failed")
    else:
        result = "the user denied this tool call"
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    return call, {"role": "tool", "tool_call_id": call_id, "content": result}


def _text(part: dict[str, Any], place: str) -> str:
    text = part.get("text")
    if not isinstance(text, str):
        raise BadRequest(f"{place}.text: must be a string")
    return text


def _image(part: dict[str, Any], place: str) -> dict[str, Any]:
    media, url = part.get("mediaType"), part.get("url")
    if not isinstance(media, str) or not media.startswith("image/"):
        raise BadRequest(f"{place}.mediaType: only image files can be sent (got {str(media)[:40]!r})")
    if not isinstance(url, str) or not url:
        raise BadRequest(f"{place}.url: must be the file's URL (https: or data:)")
    return {"type": "image_url", "image_url": {"url": url}}
