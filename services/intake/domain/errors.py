"""Domain errors of intake. Each carries an HTTP status, a stable problem slug and an
audit `reason` code; none ever carries a value taken from a request body."""
from __future__ import annotations

from typing import Any


class IntakeError(Exception):
    status = 400
    slug: str | None = None
    reason = "bad_request"

    def __init__(self, detail: str | None = None, *, reason: str | None = None,
                 actor: str | None = None, **extensions: Any) -> None:
        super().__init__(detail or self.reason)
        self.detail = detail
        self.reason = reason or type(self).reason
        self.actor = actor  # who was refused, when known (e.g. the keyid of a bad signature)
        self.extensions = extensions
        self.headers: dict[str, str] = {}


class MalformedJson(IntakeError):
    status, reason = 400, "malformed_json"


class Unauthenticated(IntakeError):
    status, reason = 401, "unauthenticated"


class Forbidden(IntakeError):
    status, reason = 403, "forbidden"


class NotFound(IntakeError):
    status, reason = 404, "not_found"


class Conflict(IntakeError):
    status, reason = 409, "conflict"


class Gone(IntakeError):
    status, reason = 410, "shredded"


class TooLarge(IntakeError):
    status, reason = 413, "body_too_large"


class UnsupportedMediaType(IntakeError):
    status, reason = 415, "unsupported_media_type"


class SchemaInvalid(IntakeError):
    status, reason = 422, "schema_invalid"

    def __init__(self, errors: list[dict[str, Any]], detail: str | None = None, **kw: Any) -> None:
        super().__init__(detail or "The request body failed validation; see errors", errors=errors, **kw)
        self.fields = [e["loc"] for e in errors]


class RateLimited(IntakeError):
    status, reason = 429, "rate_limited"

    def __init__(self, retry_after: int, **kw: Any) -> None:
        super().__init__("Too many requests for this client", **kw)
        self.headers = {"Retry-After": str(retry_after)}
