"""ErrorBusCore: the plain-Python service behind ``/errors`` (no Ray, no HTTP).

It owns a :class:`ErrorPublisher` (with its on-disk spool), the SQLite query index and the task
that feeds the index from the durable consumer ``errors-index``. The Serve deployment in
:mod:`deployments.errors.app` only adapts HTTP to it; tests drive it directly.

Example::

    core = ErrorBusCore(nats_client(settings), settings.errors, Path("data/errors"))
    core.start()
    await core.publish([event])
    page = core.query(ErrorQuery(agent="tts"))
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Final

import nats.errors
import nats.js.errors

from actors.errors.models import (
    ErrorCounts,
    ErrorEvent,
    ErrorPage,
    ErrorQuery,
    PublishResult,
    StoredEvent,
)
from actors.errors.publisher import ErrorPublisher
from actors.errors.spool import Spool
from cluster.base.aio import cancel_and_wait
from cluster.base.constants import ERRORS_INDEX_DURABLE, ERRORS_STREAM
from cluster.base.errors import ClusterError, DatabaseWriteFailed
from cluster.base.nats_client import NatsClient
from cluster.base.settings import ErrorBusSettings
from cluster.base.tally import ImportTally
from deployments.errors.index import ErrorIndex
from deployments.errors.store import DurableConsumer, follow

__all__ = ["ErrorBusCore", "SPOOL_FILE"]

logger = logging.getLogger(__name__)

SPOOL_FILE: Final = "spool.sqlite3"
INDEX_FILE: Final = "index.sqlite3"
#: How often the index drops what the stream's retention has removed.
_PRUNE_EVERY_S: Final = 60.0
#: How long a new follower waits for a replica that is still connecting to NATS.
_FOLLOW_CONNECT_S: Final = 5.0
#: The pause after an index batch that was not full (how far behind the stream the index may
#: fall; queries read the index).
_INDEX_LINGER_S: Final = 0.1
_UNAVAILABLE = (nats.errors.Error, nats.js.errors.Error, asyncio.TimeoutError, OSError)


class ErrorBusCore:
    """Publish, index, query and follow error events.

    Args:
        broker: the NATS URL and aisys's credentials.
        settings: the ``errors`` section.
        errors_dir: where the spool and index files live.
    """

    def __init__(self, broker: NatsClient, settings: ErrorBusSettings, errors_dir: Path) -> None:
        self.settings = settings
        self.spool = Spool(errors_dir / SPOOL_FILE, settings.spool_max_mb * 1024 * 1024)
        self.index = ErrorIndex(errors_dir / INDEX_FILE)
        self.publisher = ErrorPublisher(broker, settings, self.spool, create_stream=True)
        self._indexer: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the publisher and the indexer tasks (needs a running event loop)."""
        self.publisher.start()
        self._indexer = asyncio.create_task(self._index_forever(), name="errors-indexer")

    async def close(self) -> None:
        await cancel_and_wait([self._indexer])
        await self.publisher.close()
        self.index.close()
        self.spool.close()

    def check(self) -> None:
        """Raise when a background task has died; an outage of NATS is not a failure here.

        Raises:
            ClusterError: the publisher's or the indexer's task is no longer running.
        """
        if not self.publisher.running:
            raise ClusterError("errors: the NATS publisher task has stopped")
        if self._indexer is None or self._indexer.done():
            raise ClusterError("errors: the index task has stopped")

    async def publish(self, events: Sequence[ErrorEvent]) -> PublishResult:
        """See :meth:`ErrorPublisher.publish`."""
        return await self.publisher.publish(events)

    async def import_events(self, events: Sequence[ErrorEvent]) -> ImportTally:
        """Publish the legacy events ErrorBus has never taken; skip the others.

        The ids are checked against the index and its record of earlier imports, which outlive
        JetStream's duplicate window and the stream's retention; each publish still carries
        ``Nats-Msg-Id``, which covers a retry inside the window.
        """
        tally = ImportTally()
        known = self.index.known_ids([event.id for event in events])
        fresh: list[ErrorEvent] = []
        for event in events:
            if event.id in known:
                tally.skip("already present", event.id)
                continue
            known.add(event.id)
            fresh.append(event)
        if fresh:
            result = await self.publish(fresh)
            self.index.remember_imported([event.id for event in fresh], time.time())
            tally.add("events", result.stored)
            if result.spooled:
                tally.add("events spooled until NATS is back", result.spooled)
        return tally

    def query(self, query: ErrorQuery) -> ErrorPage:
        return self.index.query(query)

    def counts(self, since: datetime | None) -> ErrorCounts:
        return self.index.counts(since)

    async def follow(
        self, subject: str, after_seq: int | None, idle_s: float
    ) -> AsyncIterator[StoredEvent | None]:
        """Subscribe to live events on ``subject`` (see :func:`deployments.errors.store.follow`).

        Raises:
            ClusterError: NATS is not reachable now.
        """
        if (
            not await self.publisher.wait_connected(_FOLLOW_CONNECT_S)
            or not self.publisher.connected
        ):
            raise ClusterError("errors: NATS is not reachable; live tailing needs it")
        try:
            return await follow(self.publisher.js, subject, after_seq, idle_s)
        except _UNAVAILABLE as exc:
            raise ClusterError(f"errors: cannot follow the stream: {exc}") from exc

    async def _index_forever(self) -> None:
        consumer: DurableConsumer | None = None
        last_prune = 0.0
        while True:
            await self.publisher.wait_connected()
            try:
                if consumer is None:
                    consumer = await DurableConsumer.create(self.publisher.nc, ERRORS_INDEX_DURABLE)
                await self._index_batch(consumer)
                if time.monotonic() - last_prune > _PRUNE_EVERY_S:
                    info = await self.publisher.js.stream_info(ERRORS_STREAM)
                    pruned = self.index.prune_before(info.state.first_seq)
                    last_prune = time.monotonic()
                    if pruned:
                        logger.info("pruned %d index rows past the stream's retention", pruned)
            except _UNAVAILABLE as exc:
                logger.warning("error index paused, NATS unavailable: %s", exc)
                consumer = None
                await asyncio.sleep(self.settings.spool_retry_s)
            except DatabaseWriteFailed as exc:
                # Rolled back and not acknowledged: the batch is delivered again once it fits.
                logger.error("error index paused: %s", exc)
                await asyncio.sleep(self.settings.spool_retry_s)

    async def _index_batch(self, consumer: DurableConsumer) -> None:
        size = self.settings.index_batch_size
        deliveries = await consumer.fetch(size, timeout_s=1.0)
        if not deliveries:
            # Also after a pull the server ended at once (e.g. too many unacknowledged).
            await asyncio.sleep(_INDEX_LINGER_S)
            return
        # In a thread: SQLite releases the GIL while it writes, and the replica's event loop
        # (HTTP requests, publishes) goes on meanwhile.
        items = [d.stored for d in deliveries if d.stored is not None]
        await asyncio.to_thread(self.index.add, items)
        for delivery in deliveries:  # in turn: an ack is a publish, no task of its own each
            await delivery.ack()
        if len(deliveries) < size:
            # The stream is not far ahead: let a fuller batch gather, so that under load the
            # index costs one fetch and one transaction per many events, not per few.
            await asyncio.sleep(_INDEX_LINGER_S)
