"""OpenAI-style errors: one exception carrying the HTTP status and the body every OpenAI client understands,
{"error": {"message", "type", "param", "code"}}."""
from __future__ import annotations

from typing import Any

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
          413: "invalid_request_error", 429: "rate_limit_error", 500: "server_error", 503: "server_error"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": _TYPES.get(self.status, "invalid_request_error"),
                          "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def from_input_error(e: Exception, param: str | None = None) -> ApiError:
    """A RequestError / ChatInputError / ConstraintError (each names what is wrong) as a 400."""
    field = getattr(e, "field", None)
    if field == "prompt":
        return ApiError(400, str(e), param=param or "messages", code="context_length_exceeded"
                        if "do not fit" in str(e) else None)
    return ApiError(400, str(e), param=field or param)
