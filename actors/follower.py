"""FeedFollower: keeps a local copy of an actor's state current by long-polling its change feed.

A state actor exposes ``wait_changes(since, timeout_s) -> feed`` that returns at once when the
state moved past ``since`` and otherwise waits. Readers keep a local copy (no Ray call per
read); writers call the actor and then :meth:`FeedFollower.wait_for` the version it returned,
so a client reads its own writes.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from ray.exceptions import RayActorError

from cluster.base.aio import cancel_and_wait

__all__ = ["FeedFollower"]

logger = logging.getLogger(__name__)

FeedT = TypeVar("FeedT")

_RETRY_DELAY_S = 0.5


class FeedFollower(abc.ABC, Generic[FeedT]):
    """Follows ``actor.wait_changes`` from a background task.

    Args:
        actor: handle of the state actor.
        poll_timeout_s: how long one long-poll waits on the actor.
        clock: monotonic seconds (a fake one in tests).
        min_interval_s: the least time from one poll to the next. A poll waits on the actor
            while nothing changes, so this only holds back a follower whose polls come back at
            once, one after another (a burst of writes): it then gets them in fewer, larger
            feeds, each change seen at most this much later, instead of a round trip (and the
            actor's and its own CPU) per change.
    """

    def __init__(
        self,
        actor: Any,
        poll_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        min_interval_s: float = 0.0,
    ) -> None:
        self._actor = actor
        self._poll_timeout_s = poll_timeout_s
        self._clock = clock
        self._min_interval_s = min_interval_s
        self.last_sync = 0.0  # monotonic time of the last successful poll
        # When the last successful poll was sent: the actor's answer reflects its state at
        # that moment or later, so the local copy was known to be current then.
        self.confirmed_at: float | None = None
        # Since when the actor cannot be reached at all (its node is gone or it is
        # restarting), as Ray reports it; None while polls succeed or merely wait.
        self.unreachable_since: float | None = None
        self._advanced = asyncio.Event()
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    @abc.abstractmethod
    def version(self) -> int:
        """The version of the local copy."""

    @abc.abstractmethod
    def apply(self, feed: FeedT) -> None:
        """Apply one feed returned by the actor to the local copy."""

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._follow())

    async def stop(self) -> None:
        await cancel_and_wait([self._task])

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def synced_within(self, seconds: float) -> bool:
        """True when a poll succeeded in the last ``seconds``."""
        return self._clock() - self.last_sync <= seconds

    def age(self) -> float | None:
        """Seconds since the local copy was last known to be current; None before the first."""
        if self.confirmed_at is None:
            return None
        return self._clock() - self.confirmed_at

    def poll(self, since: int, timeout_s: float) -> Awaitable[FeedT]:
        """One long-poll of the actor (overridden to tell the actor who is asking)."""
        result: Awaitable[FeedT] = self._actor.wait_changes.remote(since, timeout_s)
        return result

    async def wait_synced(self, timeout_s: float = 10.0) -> bool:
        """Wait for the first successful poll; False on timeout."""
        if self._synced.is_set():  # the hot path of every read: no wait_for task
            return True
        try:
            await asyncio.wait_for(self._synced.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def wait_for(self, version: int, timeout_s: float = 5.0) -> bool:
        """Wait until the local copy reached ``version``; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self.version < version:
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
            # The first poll must not block: an unchanged state would hold it a full timeout.
            timeout = self._poll_timeout_s if self._synced.is_set() else 0.0
            sent = self._clock()
            try:
                feed: FeedT = await self.poll(self.version, timeout)
            except asyncio.CancelledError:
                raise
            except RayActorError:
                # Its node is gone, or it is restarting: keep following once it is back.
                if self.unreachable_since is None:
                    self.unreachable_since = self._clock()
                    logger.warning("change feed's actor unreachable; retrying", exc_info=True)
                await asyncio.sleep(_RETRY_DELAY_S)
                continue
            except Exception:
                # Loop boundary: whatever else failed, keep following.
                logger.warning("change feed unavailable; retrying", exc_info=True)
                await asyncio.sleep(_RETRY_DELAY_S)
                continue
            self.unreachable_since = None
            self.apply(feed)
            self.confirmed_at = sent
            self.last_sync = self._clock()
            self._synced.set()
            self._advanced.set()
            self._advanced = asyncio.Event()
            hold = self._min_interval_s - (self._clock() - sent)
            if hold > 0:
                await asyncio.sleep(hold)
