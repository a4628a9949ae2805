"""The SDK's one error hierarchy.

Every error the SDK raises on purpose derives from :class:`SdkError`. An HTTP answer that is not
a success becomes an :class:`ApiError` subclass chosen by its status; the server's error body
(``{"error": "LeaseUnavailable", "component": "resources", "detail": "..."}``) is kept in
``code``, ``component`` and ``detail``, so callers can tell two 409s apart by ``code``::

    SdkError
    ├── TransportError            the server could not be reached, or did not answer in time
    │   └── Timeout               connect, read or write timed out
    ├── ApiError                  the server answered with an error status
    │   ├── BadRequest        400
    │   ├── Unauthorized      401 missing, expired, revoked or foreign token; wrong secret
    │   ├── Forbidden         403 the token lacks the scope the route needs
    │   ├── NotFound          404 no such agent, request, lease, ...
    │   ├── Conflict          409 e.g. LeaseUnavailable, QuotaExceeded, RequestCancelled
    │   ├── PayloadTooLarge   413
    │   ├── InvalidRequest    422 the body or a parameter is not acceptable (``detail`` says why)
    │   ├── RateLimited       429 ``retry_after_s`` from Retry-After
    │   └── ServerError       5xx
    │       └── Unavailable   503 a state actor restarting, no route, ...; ``retry_after_s``
    ├── RequestFailed             a coordinated request ended failed or cancelled (``status``)
    ├── WaitTimedOut              a request or a queued lease did not finish within the deadline
    └── LeaseLost                 a held lease ended (expired, released elsewhere) or cannot renew
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from aisys_sdk.models import RequestStatus

__all__ = [
    "ApiError",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "LeaseLost",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "RequestFailed",
    "SdkError",
    "ServerError",
    "Timeout",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "WaitTimedOut",
    "error_from_response",
]


class SdkError(Exception):
    """Base class of every error the SDK raises on purpose."""


class TransportError(SdkError):
    """The server could not be reached (refused, reset, TLS failure, DNS)."""

    def __init__(self, method: str, url: str, reason: str) -> None:
        super().__init__(method, url, reason)
        self.method = method
        self.url = url
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.method} {self.url}: {self.reason}"


class Timeout(TransportError):
    """Connecting, sending or waiting for the answer took longer than the client's timeout."""


class ApiError(SdkError):
    """The server answered with an error status.

    Attributes:
        status: the HTTP status.
        code: the server's error class (``AgentNotFound``, ``LeaseUnavailable``, ...), or
            ``HTTP <status>`` when the body named none.
        component: the service part that raised it (``registry``, ``resources``, ...), or "".
        detail: the server's message (for a 422 the validation errors, joined).
    """

    def __init__(
        self, status: int, code: str, component: str, detail: str, method: str, url: str
    ) -> None:
        super().__init__(status, code, component, detail, method, url)
        self.status = status
        self.code = code
        self.component = component
        self.detail = detail
        self.method = method
        self.url = url

    def __str__(self) -> str:
        return f"{self.method} {self.url} -> {self.status} {self.code}: {self.detail}"


class BadRequest(ApiError):
    """400."""


class Unauthorized(ApiError):
    """401: the token is missing, malformed, expired or revoked, or the secret is wrong."""


class Forbidden(ApiError):
    """403: the token is valid but lacks the scope the route needs."""


class NotFound(ApiError):
    """404: no such agent, request, lease or route."""


class Conflict(ApiError):
    """409: the request contradicts the server's state (a lease that can never fit, ...)."""


class PayloadTooLarge(ApiError):
    """413."""


class InvalidRequest(ApiError):
    """422: the body or a parameter is not acceptable; ``detail`` names the field."""


class _RetryAfter(ApiError):
    def __init__(
        self,
        status: int,
        code: str,
        component: str,
        detail: str,
        method: str,
        url: str,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(status, code, component, detail, method, url)
        self.args = (status, code, component, detail, method, url, retry_after_s)
        self.retry_after_s = retry_after_s


class RateLimited(_RetryAfter):
    """429: too many requests or failed logins; wait ``retry_after_s``."""


class ServerError(ApiError):
    """5xx."""


class Unavailable(ServerError, _RetryAfter):
    """503: a part of the system is restarting or unreachable; retry after ``retry_after_s``."""


class RequestFailed(SdkError):
    """A coordinated request ended ``failed`` or ``cancelled``; ``status`` holds why."""

    def __init__(self, status: RequestStatus) -> None:
        super().__init__(status)
        self.status = status

    def __str__(self) -> str:
        why = self.status.error or {}
        reason = why.get("detail") or why.get("error") or "no reason given"
        return f"request {self.status.request_id} {self.status.state}: {reason}"


class WaitTimedOut(SdkError):
    """A wait (for a request's result, or for a queued lease) passed its deadline."""

    def __init__(self, what: str, waited_s: float) -> None:
        super().__init__(what, waited_s)
        self.what = what
        self.waited_s = waited_s

    def __str__(self) -> str:
        return f"{self.what} did not finish within {self.waited_s:g}s"


class LeaseLost(SdkError):
    """A lease held in a ``with`` block ended on the server, or could not be renewed."""

    def __init__(self, lease_id: str, reason: str) -> None:
        super().__init__(lease_id, reason)
        self.lease_id = lease_id
        self.reason = reason

    def __str__(self) -> str:
        return f"lease {self.lease_id}: {self.reason}"


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidRequest,
}


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) else None


def _detail(body: Any) -> str:
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):  # FastAPI's validation errors
        parts = []
        for item in detail:
            if isinstance(item, dict):
                where = ".".join(str(p) for p in item.get("loc", []))
                parts.append(f"{where}: {item.get('msg', '')}")
        return "; ".join(parts) or str(detail)
    return str(detail) if detail is not None else ""


def error_from_response(response: httpx.Response) -> ApiError:
    """The :class:`ApiError` for a non-success answer, with the server's error body."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    status = response.status_code
    code = body.get("error") if isinstance(body, dict) else None
    component = body.get("component") if isinstance(body, dict) else None
    detail = _detail(body) or response.text[:500] or response.reason_phrase
    args = (
        status,
        str(code) if code else f"HTTP {status}",
        str(component or ""),
        detail,
        response.request.method,
        str(response.request.url),
    )
    if status == 429:
        return RateLimited(*args, retry_after_s=_retry_after(response))
    if status == 503:
        return Unavailable(*args, retry_after_s=_retry_after(response))
    if status >= 500:
        return ServerError(*args)
    return _BY_STATUS.get(status, ApiError)(*args)
