"""Reads the other services for the hub's round through their Serve handles.

Each read is independent and bounded by ``timeout_s``: a service that is not deployed, is
restarting or answers too slowly leaves its part of the :class:`ServicesSample` None for this
round (its series are absent, not zero).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, TypeVar

from ray import serve
from ray.exceptions import RayError
from ray.serve.exceptions import RayServeException

from actors.errors.models import ErrorCounts
from actors.resources.models import LeaseList
from cluster.base.constants import APP_CORE, APP_ERRORS, APP_RESOURCES
from deployments.core.models import BreakerView, QueueView
from deployments.observability.state import ServicesSample

__all__ = ["read_services"]

logger = logging.getLogger(__name__)
_T = TypeVar("_T")


async def _read(what: str, call: Awaitable[_T], timeout_s: float) -> _T | None:
    try:
        return await asyncio.wait_for(call, timeout_s)
    except (RayServeException, RayError, TimeoutError) as exc:
        logger.debug("no %s this round: %s", what, exc)
        return None


def _handle(app: str, method: str, *args: Any) -> Awaitable[Any]:
    # get_app_handle raises RayServeException when the app is not deployed; the awaitable
    # defers that into _read, where it counts as "did not answer".
    async def call() -> Any:
        return await getattr(serve.get_app_handle(app), method).remote(*args)

    return call()


async def read_services(timeout_s: float, error_window_s: float) -> ServicesSample:
    """Leases, the request queue, breakers and recent error counts, read concurrently."""
    now = time.time()
    since = datetime.fromtimestamp(now - error_window_s, UTC)
    leases, requests, breakers, counts = await asyncio.gather(
        _read("leases", _handle(APP_RESOURCES, "list_leases"), timeout_s),
        _read("request queue", _handle(APP_CORE, "queue"), timeout_s),
        _read("breakers", _handle(APP_CORE, "breakers"), timeout_s),
        _read("recent errors", _handle(APP_ERRORS, "counts", since), timeout_s),
    )
    recent = None
    if isinstance(counts, ErrorCounts):
        recent = {agent: c.total for agent, c in counts.agents.items()}
    return ServicesSample(
        taken_at=now,
        leases=leases if isinstance(leases, LeaseList) else None,
        requests=requests if isinstance(requests, QueueView) else None,
        breakers=[b for b in breakers if isinstance(b, BreakerView)]
        if isinstance(breakers, list)
        else None,
        error_window_s=error_window_s,
        recent_errors=recent,
    )
