"""The bench mock's native dialects: Anthropic, Gemini and Ollama wire bytes for an `n<chunks>-i<ms>` shape.

Each is the same answer as the OpenAI stream in mock_upstream.py (the same content pieces, then the
dialect's end), in the shapes of wire-formats.md §2-4 and the test mock (mock_upstream/anthropic.py,
gemini.py, ollama.py): one HTTP chunk per event or line. `events(dialect, n, model)` returns one entry per
content piece, then one entry holding the end and the chunked body's terminator; whatever comes before
the first piece (Anthropic's message_start, content_block_start and ping) is sent with it, so the pacing
of content matches the OpenAI path's.
"""

from __future__ import annotations

import json
from collections.abc import Callable

SSE = b"text/event-stream"
NDJSON = b"application/x-ndjson"
END = b"0\r\n\r\n"


def http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _sse(obj: dict, event: str | None = None) -> bytes:
    named = b"event: %s\n" % event.encode() if event else b""
    return http_chunk(named + b"data: " + _json(obj) + b"\n\n")


def anthropic(pieces: list[str], model: str) -> list[bytes]:
    usage = {"input_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 1}
    message = {"id": "msg_bench", "type": "message", "role": "assistant", "content": [], "model": model,
               "stop_reason": None, "stop_sequence": None, "usage": usage}
    head = (_sse({"type": "message_start", "message": message}, "message_start")
            + _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                   "content_block_start")
            + _sse({"type": "ping"}, "ping"))
    body = [_sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
                 "content_block_delta") for p in pieces]
    tail = (_sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
            + _sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": len(pieces)}}, "message_delta")
            + _sse({"type": "message_stop"}, "message_stop"))
    return _join(head, body, tail)


def gemini(pieces: list[str], model: str) -> list[bytes]:
    def chunk(parts: list[dict], count: int, finish: str | None = None) -> bytes:
        candidate: dict = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        usage = {"promptTokenCount": 5, "candidatesTokenCount": count, "totalTokenCount": count + 5}
        return _sse({"candidates": [candidate], "usageMetadata": usage, "modelVersion": model,
                     "responseId": "bench-response"})

    body = [chunk([{"text": p}], i + 1) for i, p in enumerate(pieces)]
    # Gemini has no end marker but the finish reason, on the last chunk (here one with no text).
    return _join(b"", body, chunk([{"text": ""}], len(pieces), "STOP"))


def ollama(pieces: list[str], model: str) -> list[bytes]:
    def line(obj: dict) -> bytes:
        return http_chunk(_json(obj) + b"\n")

    created = "2026-01-01T00:00:00.000000Z"
    body = [line({"model": model, "created_at": created, "message": {"role": "assistant", "content": p},
                  "done": False}) for p in pieces]
    final = {"model": model, "created_at": created, "message": {"role": "assistant", "content": ""}, "done": True,
             "done_reason": "stop", "total_duration": 1000, "load_duration": 10, "prompt_eval_count": 5,
             "prompt_eval_duration": 100, "eval_count": len(pieces), "eval_duration": 800}
    return _join(b"", body, line(final))


def _join(head: bytes, body: list[bytes], tail: bytes) -> list[bytes]:
    if body:
        body[0] = head + body[0]
    else:
        tail = head + tail
    return body + [tail + END]


# The request path tells the dialects apart: /v1/messages, /v1beta/models/<model>:streamGenerateContent, /api/chat.
DIALECTS: dict[bytes, tuple[bytes, Callable[[list[str], str], list[bytes]]]] = {
    b"/v1/messages": (SSE, anthropic),
    b"/v1beta/models/": (SSE, gemini),
    b"/api/chat": (NDJSON, ollama),
}


def dialect_of(path: bytes) -> bytes | None:
    """The DIALECTS key for a request path, or None for OpenAI's chat completions."""
    return next((prefix for prefix in DIALECTS if path.startswith(prefix)), None)
