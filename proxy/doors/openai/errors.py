"""The door's errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}` (pure).

The values are the ones OpenAI's API sends, so code written against it reads the proxy's the same way:
`type` is `invalid_request_error` for a request at fault (a bad or missing key too: OpenAI sends
`invalid_request_error` with the code `invalid_api_key`), `requests` for a rate limit (code
`rate_limit_exceeded`), `server_error` otherwise; `param` names the request field at fault; `code` is
OpenAI's code where it has one (`invalid_api_key`, `model_not_found`, `rate_limit_exceeded`), else the
proxy's own error type (README, "Errors"). The SDKs raise by status: `BadRequestError`, `AuthenticationError`,
`NotFoundError`, `RateLimitError`… and expose these fields as `.type`, `.param` and `.code`.
"""

from __future__ import annotations

from typing import Any

# Hints that fit this door: its clients list models at /v1/models and send the key as the SDK's api_key.
HINTS = {"model_not_found": "; GET /v1/models lists them", "invalid_api_key": " (the SDK's api_key)"}
# The proxy's error types that OpenAI has a code for.
_CODES = {"rate_limited": "rate_limit_exceeded"}
# The proxy's types kept as `type`: OpenAI has none that means the same (its `insufficient_quota` is the
# account's credit, not a budget the operator set per user; issue 23 names the type).
_OWN_TYPES = {"budget_exceeded"}


def error_type(status: int, own: str = "") -> str:
    """OpenAI's `type` for an error of this HTTP status (or the proxy's own `own`, where OpenAI has none)."""
    if own in _OWN_TYPES:
        return own
    if status == 429:
        return "requests"
    return "invalid_request_error" if 400 <= status < 500 else "server_error"


def openai_error(status: int, error_type_: str, message: str, *,
                 param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """The error body for `status`; `error_type_` is the proxy's own type (proxy/errors.py)."""
    code = code or _CODES.get(error_type_, error_type_)
    return {"error": {"message": message + HINTS.get(code, ""), "type": error_type(status, error_type_), "param": param,
                      "code": code}}
