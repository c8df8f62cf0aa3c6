"""The project's exceptions. Library errors are translated into these where they enter.

ProxyError
├── RequestError            4xx before the stream starts
│   ├── BadRequest          400
│   ├── Unauthorized        401
│   ├── Forbidden           403: known, and not allowed (issue 23: another identity's usage)
│   ├── NotFound            404
│   ├── MethodNotAllowed    405
│   ├── RequestTimeout      408: the body never arrived in full (timed out, or the client left)
│   ├── PayloadTooLarge     413
│   ├── UnsupportedMediaType 415
│   ├── TooManyRequests     429 + Retry-After: this client is over its rate or stream limit
│   │   └── BudgetExceeded  429 + Retry-After: its token, request or spend budget is spent (issue 23)
│   └── Overloaded          503 + Retry-After: the proxy as a whole is full, shedding load
└── UpstreamError           inside the stream: terminate with reason "error"
    ├── UpstreamUnavailable retryable (connect errors, 408/409/429/5xx)
    ├── UpstreamTimeout     retryable before the first token
    │   └── NoFirstToken    the first delta did not come in time: the next model is asked (issue 12)
    ├── UpstreamRejected    not retryable (400/401/403/404/422, quota)
    │   └── ContentPolicyRejected  the provider's content policy refused it: the answer, not a fault
    ├── UpstreamMalformed   the upstream sent data that is not its format
    ├── InvalidToolCall     the model wrote a tool call a client cannot act on (arguments not JSON)
    └── UpstreamTruncated   the upstream ended without its end marker (retryable)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llm_sse_proxy.proxy.deltas import Usage


class ProxyError(Exception):
    type = "proxy_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RequestError(ProxyError):
    """`param`: the request field at fault, if one is. `code`: why, in a word a program can match; each door
    adds its own hint for a code (proxy/doors/errors.py), so the message itself names no door's routes."""

    status = 400
    type = "invalid_request"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code

    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(RequestError):
    pass


class Unauthorized(RequestError):
    status = 401
    type = "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"www-authenticate": "Bearer"}


class NotFound(RequestError):
    status = 404
    type = "not_found"


class MethodNotAllowed(RequestError):
    status = 405
    type = "method_not_allowed"

    def __init__(self, message: str, *, allow: str) -> None:
        super().__init__(message)
        self.allow = allow

    def headers(self) -> dict[str, str]:
        return {"allow": self.allow}


class RequestTimeout(RequestError):
    status = 408
    type = "request_timeout"


class PayloadTooLarge(RequestError):
    status = 413
    type = "payload_too_large"


class UpstreamError(ProxyError):
    type = "upstream_error"
    status: int | None = None  # the upstream's HTTP status, when it answered with an error status
    retryable = False
    usage: "Usage | None" = None  # what the failed attempt had used, when its upstream said (it is billed)


class UpstreamUnavailable(UpstreamError):
    type = "upstream_unavailable"
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamTimeout(UpstreamError):
    type = "timeout"
    retryable = True


class NoFirstToken(UpstreamTimeout):
    pass


class UpstreamRejected(UpstreamError):
    type = "upstream_rejected"


class ContentPolicyRejected(UpstreamRejected):
    type = "content_policy"


class UpstreamMalformed(UpstreamError):
    type = "malformed_upstream_data"


class InvalidToolCall(UpstreamError):
    type = "invalid_tool_call"


class UpstreamTruncated(UpstreamError):
    type = "truncated"
    retryable = True  # only ever retried before the first token, when nothing was lost


class UnsupportedMediaType(RequestError):
    status = 415
    type = "unsupported_media_type"


class TooManyRequests(RequestError):
    status = 429
    type = "rate_limited"

    def __init__(self, message: str, *, retry_after: int = 1, type_: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after
        if type_ is not None:
            self.type = type_

    def headers(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after)}


class Overloaded(TooManyRequests):
    status = 503
    type = "overloaded"


class BudgetExceeded(TooManyRequests):
    """429: the identity's budget (issue 23) has nothing left in this window; Retry-After is when it ends."""

    type = "budget_exceeded"

    def __init__(self, budget: str, limit: float, retry_after: int) -> None:
        super().__init__(f"the budget {budget} ({limit:g}) is spent; it frees in {retry_after} s", retry_after=retry_after)
        self.budget = budget


class Forbidden(RequestError):
    """403: who asks is known, and may not do this (another identity's usage, issue 23)."""

    status = 403
    type = "forbidden"
