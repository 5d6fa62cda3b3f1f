"""Domain errors of the library, and the HTTP error codes of the wire contract."""

from __future__ import annotations


class AigovError(Exception):
    """Base of every error aigov reports to a user as one clear line."""


class ConfigError(AigovError):
    """A configuration or usage problem (CLI exit code 2)."""


class StorageError(AigovError):
    """The database cannot be opened, read or migrated."""


class NotFoundError(AigovError):
    """A named object (key, policy) does not exist (CLI exit code 1)."""


# HTTP status -> error code, as DESIGN.md's error table fixes them.
ERROR_CODES: dict[int, str] = {
    400: "invalid_json",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}
