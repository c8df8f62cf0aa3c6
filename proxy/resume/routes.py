"""The resumable-stream endpoints, as small top-level functions (the app's state holds the service)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llm_sse_proxy.proxy.doors.response import SSE_HEADERS
from llm_sse_proxy.proxy.resume.streams import ResumableStreams


def _streams(request: Request) -> ResumableStreams:
    return request.app.state.runtime.resumable  # type: ignore[no-any-return]


async def read_stream(request: Request) -> Response:
    if request.method == "HEAD":
        return Response(headers=SSE_HEADERS)  # a probe: no reader to attach, nothing to stream
    return await _streams(request).resume(request, request.path_params["sid"])


async def stop_stream(request: Request) -> Response:
    return await _streams(request).stop(request, request.path_params["sid"])


ROUTES = [
    Route("/streams/{sid}", read_stream, methods=["GET"]),
    Route("/streams/{sid}/stop", stop_stream, methods=["POST"]),
]
