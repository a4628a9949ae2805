"""Where the status page's data comes from in a running system: the other applications' Serve
handles (the same methods their routes answer with), and the ``ERRORS`` stream for live events.

Each call is bounded by a timeout; a service that is down or slow becomes a
:class:`ClusterError`, which the snapshot shows as unknown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Final

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from ray import serve
from ray.exceptions import RayError
from ray.serve.exceptions import RayServeException

from actors.errors.models import StoredEvent
from cluster.base.constants import APP_CORE, APP_ERRORS, APP_RESOURCES, ERRORS_SUBJECTS
from cluster.base.errors import ClusterError
from cluster.base.nats_client import NatsClient
from deployments.errors.store import follow
from deployments.observability.alert_models import Alert
from deployments.observability.status import SnapshotCache, StatusSources, TicketBook
from deployments.observability.status_routes import StatusPage

if TYPE_CHECKING:
    from deployments.observability.app import ObservabilityAppArgs

__all__ = ["TICKET_TTL_S", "ErrorFollower", "make_status_page", "serve_sources"]

#: How long a stream ticket lives unredeemed: long enough for a slow page, short for a leak.
TICKET_TTL_S: Final = 30.0

logger = logging.getLogger(__name__)

_CONNECT_S: Final = 5.0
_UNAVAILABLE = (nats.errors.Error, nats.js.errors.Error, TimeoutError, OSError)


async def _call(app: str, method: str, timeout_s: float, *args: Any, **kwargs: Any) -> Any:
    try:
        handle = serve.get_app_handle(app)
        return await asyncio.wait_for(getattr(handle, method).remote(*args, **kwargs), timeout_s)
    except (RayServeException, RayError, TimeoutError) as exc:
        raise ClusterError(f"{app} did not answer: {type(exc).__name__}: {exc}") from exc


def serve_sources(timeout_s: float, alerts: Callable[[], list[Alert]]) -> StatusSources:
    """The sources of a running system; ``alerts`` is the hub's own alert list."""

    async def local_alerts() -> list[Alert]:
        return alerts()

    return StatusSources(
        twin=lambda: _call(APP_CORE, "twin", timeout_s),
        gpus=lambda: _call(APP_RESOURCES, "gpus", timeout_s, False),
        leases=lambda: _call(APP_RESOURCES, "list_leases", timeout_s),
        errors=lambda limit: _call(APP_ERRORS, "query", timeout_s, limit=limit),
        queue=lambda: _call(APP_CORE, "queue", timeout_s),
        breakers=lambda: _call(APP_CORE, "breakers", timeout_s),
        alerts=local_alerts,
    )


class ErrorFollower:
    """Follows the ``ERRORS`` stream over one NATS connection per replica, opened on first use."""

    def __init__(self, broker: NatsClient, idle_s: float) -> None:
        self._broker = broker
        self._idle_s = idle_s
        self._nc: Client | None = None
        self._lock = asyncio.Lock()

    async def __call__(self, after_seq: int | None) -> AsyncIterator[StoredEvent | None]:
        """Events stored after ``after_seq`` (None: from now on).

        Raises:
            ClusterError: NATS does not answer.
        """
        try:
            async with self._lock:
                if self._nc is None or self._nc.is_closed:
                    self._nc = await asyncio.wait_for(
                        self._broker.connect(
                            max_reconnect_attempts=-1, reconnect_time_wait=0.5, connect_timeout=2
                        ),
                        _CONNECT_S,
                    )
            return await follow(self._nc.jetstream(), ERRORS_SUBJECTS, after_seq, self._idle_s)
        except _UNAVAILABLE as exc:
            raise ClusterError(f"observability: cannot follow the ERRORS stream: {exc}") from exc


def make_status_page(args: ObservabilityAppArgs, alerts: Callable[[], list[Alert]]) -> StatusPage:
    """The status page of a hub replica: snapshots at most one sampling period old, stream
    tickets valid for :data:`TICKET_TTL_S`, streams that end 10 s (or a quarter) before Serve's
    ``request_timeout_s``."""
    settings = args.settings
    sources = serve_sources(settings.host_timeout_s, alerts)
    timeout = args.request_timeout_s
    return StatusPage(
        cache=SnapshotCache(sources, settings.sample_interval_s, time.time),
        tickets=TicketBook(TICKET_TTL_S, time.time),
        follow=ErrorFollower(args.nats, args.errors.sse_keepalive_s),
        refresh_s=settings.sample_interval_s,
        lifetime_s=max(timeout / 4, timeout - 10.0) if timeout and timeout > 0 else 30.0,
    )
