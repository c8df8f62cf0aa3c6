"""What the proxy says, and logs, when it answers a connection below the app (proxy/server/http_protocol.py):
the app's JSON error shape, a GET /stream prompt too long for a URL, and one log line of its own."""

from __future__ import annotations

from pathlib import Path

import httpx2

from tests.test_server_limits import connect, proxy_process, read_until_closed, status_and_error

UVICORN_TEXT = "Invalid HTTP request received."


def test_a_get_stream_prompt_over_the_head_cap_gets_json_431_pointing_at_post_chat(tmp_path: Path) -> None:
    with proxy_process(tmp_path) as running:
        with connect(running.port) as sock:  # httpx2 refuses to build a URL this long: the raw request, then
            sock.sendall(b"GET /stream?prompt=" + b"p" * 70_000 + b" HTTP/1.1\r\nhost: x\r\n\r\n")
            answer = read_until_closed(sock)
        short = httpx2.get(f"http://127.0.0.1:{running.port}/stream", params={"prompt": "p" * 50_000}, timeout=10)
    head = answer.partition(b"\r\n\r\n")[0].lower()
    assert b"content-type: application/json" in head
    assert status_and_error(answer) == (431, {"type": "headers_too_large", "message": (
        "the prompt is too long for GET /stream (the request line and headers are over 65536 bytes or 100 lines); "
        "send it in the body of POST /chat")})
    assert short.status_code == 200 and "terminate" in short.text


def test_too_many_headers_elsewhere_keep_the_plain_431_message(tmp_path: Path) -> None:
    headers = {f"x-h{i}": "v" for i in range(120)}
    with proxy_process(tmp_path) as running:
        response = httpx2.get(f"http://127.0.0.1:{running.port}/stream?prompt=hi", headers=headers, timeout=10)
    assert response.status_code == 431
    assert response.json()["error"]["message"] == "the request line and headers are over 65536 bytes or 100 lines"


def test_each_refusal_is_one_line_of_our_own_without_what_the_client_sent(tmp_path: Path) -> None:
    secretish = "s3cr3t-header-value-" * 5
    with proxy_process(tmp_path, {"head_timeout": 0.5}, log_level="info") as running:
        headers = {f"x-h{i}": secretish for i in range(120)}
        assert httpx2.get(f"http://127.0.0.1:{running.port}/healthz", headers=headers, timeout=10).status_code == 431
        with connect(running.port) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ")
            assert status_and_error(read_until_closed(sock))[0] == 408
        with connect(running.port) as sock:
            sock.sendall(b"HELLO THERE\r\n\r\n")
            assert status_and_error(read_until_closed(sock))[0] == 400
    lines = running.stderr
    assert not [line for line in lines if UVICORN_TEXT in line], lines
    assert not [line for line in lines if secretish[:12] in line or "HELLO" in line], lines
    refusals = [line for line in lines if "before its request reached the app" in line]
    assert len(refusals) == 3, lines
    for status, error_type, line in zip((431, 408, 400), ("headers_too_large", "request_timeout", "invalid_request"),
                                        refusals):
        assert f"answered {status} {error_type} to 127.0.0.1:" in line
