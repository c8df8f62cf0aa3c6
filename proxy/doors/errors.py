"""Errors before a stream, rendered in the shape of the door the request came through.

Every door raises the proxy's own exceptions (proxy/errors.py); the app maps them here, once. A door
that speaks another API's error shape lists its path prefixes and an `ErrorShape`; any other path
(the article's routes, the operator's routes, an unknown path) gets the proxy's own
`{"error": {"type", "message"}}`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from llm_sse_proxy.proxy.doors.http import request_id
from llm_sse_proxy.proxy.errors import ProxyError, RequestError

log = logging.getLogger("llm_sse_proxy")

_HTTP_TYPES = {404: "not_found", 405: "method_not_allowed"}


class ErrorShape(Protocol):
    def __call__(self, status: int, error_type: str, message: str, *,
                 param: str | None = None, code: str | None = None) -> dict[str, Any]:
        """The JSON body of one error; `param` and `code` as the RequestError has them (proxy/errors.py)."""


# What to do next, for the proxy's own routes (a door with its own routes says its own).
PROXY_HINTS = {"model_not_found": "; GET /models lists them", "invalid_api_key": ", or a ?token= from POST /token"}


def proxy_shape(status: int, error_type: str, message: str, *,
                param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"type": error_type, "message": message + PROXY_HINTS.get(code or "", "")}}


@dataclass(frozen=True, slots=True)
class DoorErrors:
    """A door's error shape, for the requests whose path starts with one of `prefixes`."""

    prefixes: tuple[str, ...]
    shape: ErrorShape


class ErrorRenderer:
    """The app's exception handlers: ProxyError, Starlette's HTTPException, and anything else (500)."""

    def __init__(self, doors: Sequence[DoorErrors]) -> None:
        self.doors = list(doors)

    def handlers(self) -> dict[Any, Any]:
        return {ProxyError: self.proxy_error, HTTPException: self.http_error, Exception: self.internal_error}

    def shape_for(self, path: str) -> ErrorShape:
        """The shape of the door with the longest prefix of `path` (`/v1/messages` is Anthropic's, the
        rest of `/v1/` OpenAI's); the proxy's own where no door claims it."""
        best, shape = 0, proxy_shape
        for door in self.doors:
            for prefix in door.prefixes:
                if path.startswith(prefix) and len(prefix) > best:
                    best, shape = len(prefix), door.shape
        return shape

    def respond(self, request: Request, status: int, error_type: str, message: str,
                headers: dict[str, str] | None = None, error: RequestError | None = None) -> Response:
        if status < 500:
            request.app.state.metrics.reject(error_type)
        headers = {**(headers or {}), "x-request-id": request_id(request)}
        shape = self.shape_for(request.url.path)
        if error is None:
            body = shape(status, error_type, message)
        else:
            body = shape(status, error_type, message, param=error.param, code=error.code)
        return JSONResponse(body, status_code=status, headers=headers)

    async def proxy_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ProxyError)
        if isinstance(exc, RequestError):
            return self.respond(request, exc.status, exc.type, exc.message, exc.headers(), exc)
        return self.respond(request, 502, exc.type, exc.message)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        error_type = _HTTP_TYPES.get(exc.status_code, "http_error")
        return self.respond(request, exc.status_code, error_type, exc.detail, exc.headers)

    async def internal_error(self, request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return self.respond(request, 500, "internal_error", "the proxy failed; see its log")
