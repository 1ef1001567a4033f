"""Domain errors of intake. Each carries an HTTP status, a stable problem type and title,
and an audit `reason` code; none ever carries a value taken from a request body.
`problem()` is the RFC 9457 problem document both entrypoints answer with (HTTP and AMQP)."""
from __future__ import annotations

from typing import Any

PROBLEM_BASE = "/problems/"  # as shared.http's problem documents


class IntakeError(Exception):
    status, slug, title = 400, "bad-request", "Bad request"
    reason = "bad_request"

    def __init__(self, detail: str | None = None, *, reason: str | None = None,
                 actor: str | None = None, **extensions: Any) -> None:
        super().__init__(detail or self.reason)
        self.detail = detail
        self.reason = reason or type(self).reason
        self.actor = actor  # who was refused, when known (e.g. the keyid of a bad signature)
        self.extensions = extensions
        self.headers: dict[str, str] = {}

    def problem(self) -> dict[str, Any]:
        """The problem document: type, title, status, detail (if any), reason, extensions."""
        doc: dict[str, Any] = {"type": PROBLEM_BASE + self.slug, "title": self.title, "status": self.status}
        if self.detail:
            doc["detail"] = self.detail
        return doc | {"reason": self.reason, **self.extensions}


class MalformedJson(IntakeError):
    reason = "malformed_json"


class Unauthenticated(IntakeError):
    status, slug, title = 401, "unauthenticated", "Missing or invalid request signature"
    reason = "unauthenticated"


class Forbidden(IntakeError):
    status, slug, title = 403, "forbidden", "Not allowed for this client"
    reason = "forbidden"


class NotFound(IntakeError):
    status, slug, title = 404, "not-found", "Not found"
    reason = "not_found"


class Conflict(IntakeError):
    status, slug, title = 409, "conflict", "Conflict"
    reason = "conflict"


class Gone(IntakeError):
    status, slug, title = 410, "gone", "Gone"
    reason = "shredded"


class TooLarge(IntakeError):
    status, slug, title = 413, "payload-too-large", "Request body too large"
    reason = "body_too_large"


class UnsupportedMediaType(IntakeError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"
    reason = "unsupported_media_type"


class SchemaInvalid(IntakeError):
    status, slug, title = 422, "validation-failed", "The request body failed validation"
    reason = "schema_invalid"

    def __init__(self, errors: list[dict[str, Any]], detail: str | None = None, **kw: Any) -> None:
        super().__init__(detail or "The request body failed validation; see errors", errors=errors, **kw)
        self.fields = [e["loc"] for e in errors]


class RateLimited(IntakeError):
    status, slug, title = 429, "rate-limited", "Too many requests"
    reason = "rate_limited"

    def __init__(self, retry_after: int, **kw: Any) -> None:
        super().__init__("Too many requests for this client", **kw)
        self.headers = {"Retry-After": str(retry_after)}
