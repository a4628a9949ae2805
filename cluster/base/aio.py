"""Asyncio helpers every floor uses.

* :func:`cancel_and_wait`: what every service's ``close``/``stop`` does with its background
  tasks: cancel, then await.
* :class:`Batcher`: concurrent submissions sent together, one call for all that arrived while
  the previous call was in flight.

Example::

    async def close(self) -> None:
        await cancel_and_wait(self._tasks)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["Batcher", "cancel_and_wait"]

InT = TypeVar("InT")
OutT = TypeVar("OutT")

logger = logging.getLogger(__name__)


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any] | None]) -> None:
    """Cancel every task not done yet (None entries are skipped), then wait until all ended.

    Each task's end is awaited even when another one failed; a task that had failed with an
    exception before it was cancelled is logged with its traceback, not raised, so a closing
    service always gets to release what it holds after its tasks.
    """
    pending = [task for task in tasks if task is not None]
    for task in pending:
        task.cancel()
    for outcome, task in zip(
        await asyncio.gather(*pending, return_exceptions=True), pending, strict=True
    ):
        if isinstance(outcome, Exception):
            logger.warning("background task %r had failed", task, exc_info=outcome)


class Batcher(Generic[InT, OutT]):
    """Sends concurrent submissions together: one ``send`` for all that queued up meanwhile.

    The first submission is sent at once (no timer, no added latency); those that arrive while
    a ``send`` is in flight, or within ``min_interval_s`` of the last send's start, wait and go
    together in the next one, up to ``max_batch`` each. Under load this turns N calls into one
    per round trip or interval, whichever is longer; after a quiet spell a submission goes at
    once. ``send`` answers each item in order with its result or with the exception that item
    alone failed with; an exception ``send`` raises fails every item of its batch, and the next
    batch is sent all the same. Only one ``send`` is in flight at a time. A submitter cancelled
    while waiting does not withdraw its item (it may have been sent already): only idempotent
    work belongs here.

    Args:
        send: sends a batch; returns one result or exception per item, in order.
        max_batch: the most items one ``send`` carries.
        min_interval_s: the least time between the starts of two sends.
        clock: monotonic seconds.

    Example::

        batcher = Batcher(registry.register_many, max_batch=64)
        change = await batcher.submit((registration, None))
    """

    def __init__(
        self,
        send: Callable[[list[InT]], Awaitable[Sequence[OutT | BaseException]]],
        max_batch: int = 64,
        min_interval_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self._send = send
        self._max_batch = max_batch
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._last_send: float | None = None
        self._queue: list[tuple[InT, asyncio.Future[OutT]]] = []
        self._sender: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """Submissions queued for the next ``send``."""
        return len(self._queue)

    async def submit(self, item: InT) -> OutT:
        """Send ``item`` with whatever else is waiting; its result, or raise its exception."""
        future: asyncio.Future[OutT] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_all())
        return await future

    async def _send_all(self) -> None:
        while self._queue:
            if self._last_send is not None:
                hold = self._min_interval_s - (self._clock() - self._last_send)
                if hold > 0:
                    await asyncio.sleep(hold)
            self._last_send = self._clock()
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            try:
                results = await self._send([item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(
                        f"a batch of {len(batch)} got {len(results)} results from {self._send!r}"
                    )
            except asyncio.CancelledError:
                for _, future in batch + self._queue:
                    future.cancel()
                self._queue.clear()
                raise
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # its submitter was cancelled
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
