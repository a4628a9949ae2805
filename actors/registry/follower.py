"""RegistryFollower: keeps a local :class:`RegistryView` current by long-polling the actor.

Readers answer lookups from the view (no Ray call per read); writers call the actor and then
:meth:`RegistryFollower.wait_for` the returned version, so a client reads its own writes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from actors.registry.models import ChangeFeed
from actors.registry.view import RegistryView

__all__ = ["RegistryFollower"]

logger = logging.getLogger(__name__)

_RETRY_DELAY_S = 0.5


class RegistryFollower:
    """Follows the registry actor's change feed from a background task.

    Args:
        registry: handle of the registry actor.
        poll_timeout_s: how long one long-poll waits on the actor.
    """

    def __init__(self, registry: Any, poll_timeout_s: float = 10.0) -> None:
        self._registry = registry
        self._poll_timeout_s = poll_timeout_s
        self.view = RegistryView()
        self.last_sync = 0.0  # monotonic time of the last successful poll
        self._advanced = asyncio.Event()
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def synced_within(self, seconds: float) -> bool:
        """True when a poll succeeded in the last ``seconds``."""
        return time.monotonic() - self.last_sync <= seconds

    async def wait_synced(self, timeout_s: float = 10.0) -> bool:
        """Wait for the first successful poll; False on timeout."""
        try:
            await asyncio.wait_for(self._synced.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def wait_for(self, version: int, timeout_s: float = 5.0) -> bool:
        """Wait until the view reached ``version``; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self.view.version < version:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            event = self._advanced
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return False
        return True

    async def _follow(self) -> None:
        while True:
            try:
                # The first poll must not block: an empty registry would hold it a full timeout.
                timeout = self._poll_timeout_s if self._synced.is_set() else 0.0
                feed: ChangeFeed = await self._registry.wait_changes.remote(
                    self.view.version, timeout
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                # Loop boundary: the actor may be restarting; keep following once it is back.
                logger.warning("registry change feed unavailable; retrying", exc_info=True)
                await asyncio.sleep(_RETRY_DELAY_S)
                continue
            self.view.apply_feed(feed)
            self.last_sync = time.monotonic()
            self._synced.set()
            self._advanced.set()
            self._advanced = asyncio.Event()
