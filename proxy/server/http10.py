"""A close-delimited body for HTTP/1.0 clients (issue 16).

Chunked transfer coding is HTTP/1.1 only (RFC 9112 §7.1): a 1.0 client reads the chunk sizes as part
of the body. uvicorn's httptools protocol chunks every response without a content-length, whatever the
request's version; its h11 protocol gets this right. Since ASGI has no say in the framing, this tells
the httptools request cycle (the object `send` is bound to) that the body has a length: "until the
connection closes". uvicorn closes an HTTP/1.0 connection after the response, which ends the body.
"""

from __future__ import annotations

from starlette.types import Message, Send

_UNTIL_CLOSE = 1 << 62  # a length no body reaches; set to the last piece's size when it comes
_NO_BODY = (204, 304)


def close_delimited(send: Send) -> Send:
    """`send` for an HTTP/1.0 request: responses without a length are not chunked."""
    cycle = getattr(send, "__self__", None)
    if not (hasattr(cycle, "chunked_encoding") and hasattr(cycle, "expected_content_length")):
        return send  # not uvicorn's httptools cycle (h11 already frames 1.0 responses by the close)
    delimiting = False

    async def send_close_delimited(message: Message) -> None:
        nonlocal delimiting
        if message["type"] == "http.response.start" and _unframed(message) and cycle.chunked_encoding is None:
            delimiting = True
            cycle.chunked_encoding, cycle.expected_content_length = False, _UNTIL_CLOSE
        elif delimiting and message["type"] == "http.response.body" and not message.get("more_body", False):
            cycle.expected_content_length = len(message.get("body", b""))  # uvicorn checks the length at the end
        await send(message)

    return send_close_delimited


def _unframed(start: Message) -> bool:
    names = {name.lower() for name, _ in start.get("headers", ())}
    return start["status"] not in _NO_BODY and b"content-length" not in names and b"transfer-encoding" not in names
