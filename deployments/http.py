"""The one place where errors become HTTP responses, shared by every service's FastAPI app."""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayTaskError

from cluster.base.errors import AisysError, RateLimited, RevocationStale, TokenRejected

__all__ = ["install_error_handlers"]

logger = logging.getLogger(__name__)


def _aisys_error_response(exc: AisysError) -> JSONResponse:
    headers = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    elif isinstance(exc, RevocationStale):
        headers["Retry-After"] = "1"
    elif isinstance(exc, TokenRejected):
        # RFC 6750: tell the client which scheme and what went wrong.
        headers["WWW-Authenticate"] = (
            f'Bearer error="invalid_token", error_description="{exc.reason}"'
        )
    return JSONResponse(status_code=exc.http_status, content=exc.to_dict(), headers=headers)


async def _on_aisys_error(_: Request, exc: Exception) -> JSONResponse:
    # An error raised inside an actor arrives as a RayTaskError subclass of the original class;
    # its ``cause`` is the original exception with the plain message.
    cause = exc.cause if isinstance(exc, RayTaskError) else exc
    if not isinstance(cause, AisysError):
        raise exc
    return _aisys_error_response(cause)


async def _on_actor_unavailable(_: Request, exc: Exception) -> JSONResponse:
    logger.warning("state actor unavailable: %s", exc)
    body = {
        "error": "ServiceUnavailable",
        "component": "cluster",
        "detail": "cluster: a state actor is restarting or unreachable; retry shortly",
    }
    return JSONResponse(status_code=503, content=body, headers={"Retry-After": "1"})


def install_error_handlers(app: FastAPI) -> None:
    """Map :class:`AisysError` to its HTTP status and actor outages to 503."""
    app.add_exception_handler(AisysError, _on_aisys_error)
    app.add_exception_handler(ActorUnavailableError, _on_actor_unavailable)
    app.add_exception_handler(ActorDiedError, _on_actor_unavailable)
