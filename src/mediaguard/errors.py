"""Every error mediaguard raises on purpose, and the HTTP status each one maps to.

::

    MediaguardError                      500  internal
     ├── InvalidInputError               400  invalid_input       malformed request, bad digest
     │    ├── MissingInputError          400  missing_input       no url and no file
     │    └── TooManyItemsError          413  too_many_items      batch over its limit
     ├── MediaError
     │    ├── UnsupportedMediaError      415  unsupported_media   empty, not an image, corrupt
     │    └── MediaTooLargeError         413  media_too_large     bytes or pixels over the limit
     ├── FetchError
     │    ├── UrlRefusedError            400  url_refused         scheme, private address, allowlist
     │    ├── FetchTimeoutError          504  fetch_timeout       upstream too slow
     │    └── FetchFailedError           502  fetch_failed        unreachable, upstream 4xx/5xx,
     │                                                            too many redirects
     ├── AuthenticationError             401  unauthenticated     no or unknown token
     ├── PermissionDeniedError           403  forbidden           token lacks the role
     ├── NotFoundError                   404  not_found           unknown id or digest
     ├── ConflictError                   409  conflict            the name is taken
     ├── ActionError (actions/)          502  action_failed       SMTP or webhook failed
     └── NotReadyError                   503  not_ready           model or database not ready

Core code raises these and never thinks about HTTP; ``api/errors.py`` turns them into responses
with :func:`http_status`, the one place the mapping lives.
"""

from __future__ import annotations


class MediaguardError(Exception):
    """Base class. ``code`` is the stable machine-readable reason sent to clients."""

    code = "internal"
    status = 500
    # Worth another attempt later (a timeout, an upstream 5xx, a database that is down).
    transient = False

    def __init__(
        self, message: str, *, code: str | None = None, transient: bool | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if transient is not None:
            self.transient = transient

    def to_dict(self) -> dict[str, str]:
        return {"error": self.code, "detail": self.message}


class InvalidInputError(MediaguardError):
    code = "invalid_input"
    status = 400


class MissingInputError(InvalidInputError):
    code = "missing_input"
    status = 400


class TooManyItemsError(InvalidInputError):
    code = "too_many_items"
    status = 413


class MediaError(MediaguardError):
    """The bytes themselves are the problem."""


class UnsupportedMediaError(MediaError):
    code = "unsupported_media"
    status = 415


class MediaTooLargeError(MediaError):
    code = "media_too_large"
    status = 413


class FetchError(MediaguardError):
    """Fetching a URL failed or was refused."""


class UrlRefusedError(FetchError):
    code = "url_refused"
    status = 400


class FetchTimeoutError(FetchError):
    code = "fetch_timeout"
    status = 504
    transient = True


class FetchFailedError(FetchError):
    """Connection errors and upstream 5xx are transient; a refused redirect or a 404 is not."""

    code = "fetch_failed"
    status = 502
    transient = True


class AuthenticationError(MediaguardError):
    code = "unauthenticated"
    status = 401


class PermissionDeniedError(MediaguardError):
    code = "forbidden"
    status = 403


class NotFoundError(MediaguardError):
    code = "not_found"
    status = 404


class ConflictError(MediaguardError):
    code = "conflict"
    status = 409


class RateLimitedError(MediaguardError):
    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotReadyError(MediaguardError):
    code = "not_ready"
    status = 503
    transient = True


class ServiceUnavailableError(MediaguardError):
    """A dependency (the database) did not answer; nothing was stored."""

    code = "unavailable"
    status = 503
    transient = True


def http_status(error: MediaguardError) -> int:
    """The HTTP status of an error: the only mapping from the tree above to HTTP."""
    return error.status
