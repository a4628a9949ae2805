"""A local copy of CoreOrchestrator's digital twin, refreshed in the background.

The legacy ports that report host figures (SDT ``GET_METRICS``/``get_metrics``, the monitors'
``get_stats``, ``get_system_info``) answer from this copy, so a hot read costs no Ray call; the
copy is replaced every ``refresh_s`` by one call to the twin, which itself holds what each host's
probe actor measured on that host. A copy older than ``stale_after_s`` is not served: the reply
says the twin is unavailable instead of passing old figures off as current.

Example::

    cache = TwinCache(services, refresh_s=2.0)
    cache.start()                      # on the deployment's event loop
    host = cache.host("pc2")           # HostTwin, or raises TwinUnavailable
"""

from __future__ import annotations

import asyncio
import logging
import time

from ray.exceptions import RayError
from ray.serve.exceptions import RayServeException

from cluster.base.aio import cancel_and_wait
from cluster.base.constants import APP_CORE
from cluster.base.errors import ClusterError
from deployments.core.twin_models import HostTwin, TwinSnapshot
from legacy_gateway._ports import Services

__all__ = ["TwinCache", "TwinUnavailable"]

logger = logging.getLogger(__name__)


class TwinUnavailable(ClusterError):
    """No current copy of the digital twin (CoreOrchestrator not reached lately)."""


class TwinCache:
    """The last :class:`TwinSnapshot` fetched from CoreOrchestrator."""

    def __init__(self, services: Services, refresh_s: float, stale_after_s: float = 30.0) -> None:
        self._services = services
        self._refresh_s = refresh_s
        self._stale_after_s = stale_after_s
        self._snapshot: TwinSnapshot | None = None
        self._fetched_at = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="legacy-twin")

    async def stop(self) -> None:
        await cancel_and_wait([self._task])

    def snapshot(self) -> TwinSnapshot:
        """The current copy.

        Raises:
            TwinUnavailable: never fetched, or older than ``stale_after_s``.
        """
        snapshot = self._snapshot
        if snapshot is None:
            raise TwinUnavailable("the digital twin is not loaded yet; retry in a moment")
        age = time.monotonic() - self._fetched_at
        if age > self._stale_after_s:
            raise TwinUnavailable(f"the digital twin was last reached {age:.0f}s ago")
        return snapshot

    def host(self, tag: str) -> HostTwin:
        """One host of the current copy (same error as :meth:`snapshot`, or unknown host)."""
        for host in self.snapshot().hosts:
            if host.host == tag:
                return host
        raise TwinUnavailable(f"the digital twin has no host {tag!r}")

    async def refresh(self) -> None:
        core = self._services.deployment("CoreOrchestrator", APP_CORE)
        self._snapshot = await core.twin.remote()
        self._fetched_at = time.monotonic()

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self.refresh(), max(self._refresh_s, 5.0))
            except (RayError, RayServeException, TimeoutError) as exc:
                logger.info("legacy gateway: digital twin not reached: %s", exc)
            except Exception:  # loop boundary: keep refreshing, log with the traceback
                logger.exception("legacy gateway: digital twin refresh failed")
            await asyncio.sleep(self._refresh_s)
