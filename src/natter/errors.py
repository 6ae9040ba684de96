"""One error hierarchy for natter. Each edge translates it: the gateway into
``error {code}`` frames and HTTP problem bodies, the operator into kopf errors."""

from __future__ import annotations


class NatterError(Exception):
    """Base class; ``code`` is the WebSocket protocol's error code."""

    code = "bad_request"
    http_status = 400

    def __init__(self, message: str, *, ref: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.ref = ref


class BadRequest(NatterError):
    code = "bad_request"
    http_status = 400


class UnknownRoom(NatterError):
    code = "unknown_room"
    http_status = 404


class Forbidden(NatterError):
    code = "forbidden"
    http_status = 403


class RateLimited(NatterError):
    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, *, retry_after: float, ref: str | None = None) -> None:
        super().__init__(message, ref=ref)
        self.retry_after = retry_after


class TooLarge(NatterError):
    code = "too_large"
    http_status = 413


class Unavailable(NatterError):
    """NATS or JetStream cannot answer now; the caller may retry."""

    code = "unavailable"
    http_status = 503


class InvalidSpec(NatterError):
    """A ChatRoom spec that can never be applied as written."""

    code = "bad_request"
    http_status = 422


class SpecConflict(NatterError):
    """A spec change JetStream cannot apply to the existing stream in place."""

    code = "bad_request"
    http_status = 409
