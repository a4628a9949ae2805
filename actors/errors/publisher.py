"""The ErrorBus client: publish :class:`ErrorEvent` s to JetStream, spooling to disk during outages.

Events go out concurrently, ``publish_batch_size`` at a time, and their stream acks are awaited
together: each is a plain NATS publish whose reply subject is a token under one wildcard
subscription of the publisher's (:class:`_AckInbox`), so a batch waits on one event, with no
per-event request task, timer or ``PubAck`` object (nats-py's ``js.publish`` costs about 2.5x
the client CPU per event). Each carries ``Nats-Msg-Id: <event id>``, so a retry (after a lost
ack, or when the spool drains) is stored once. While NATS is unreachable, events go to the on-disk
:class:`~actors.errors.spool.Spool`; a background task drains it once NATS is back. An event
is acknowledged to the caller only once it is in the stream or in the spool.

Example::

    publisher = ErrorPublisher(nats_client(settings), settings.errors, spool)
    publisher.start()
    result = await publisher.publish([ErrorEvent(agent="tts", message="no voice")])
    await publisher.close()
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
from collections.abc import Sequence
from typing import Final

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from actors.errors.models import ErrorEvent, PublishResult
from actors.errors.spool import Spool, SpooledEvent
from actors.errors.stream import ensure_stream
from cluster.base.aio import cancel_and_wait
from cluster.base.errors import EventTooLarge
from cluster.base.nats_client import NatsClient
from cluster.base.settings import ErrorBusSettings

__all__ = ["ErrorPublisher"]

logger = logging.getLogger(__name__)

# What a publish raises when NATS is down, slow or restarting: the event goes to the spool.
_UNAVAILABLE = (nats.errors.Error, nats.js.errors.Error, asyncio.TimeoutError, OSError)
#: Batches of ``publish_batch_size`` whose acks are awaited at once: the next batch goes out
#: while the stream still stores the last, so a round trip to the stream does not idle the
#: publisher.
_WINDOW: Final = 4
#: Header of a NATS status reply (503: no stream took the subject).
_STATUS: Final = "Status"


class _Batch:
    """Acks of one batch of publishes, filled in by :class:`_AckInbox` as they arrive."""

    __slots__ = ("acks", "done", "missing")

    def __init__(self, size: int) -> None:
        self.acks: list[bool] = [False] * size
        self.missing = size
        self.done = asyncio.Event()


@dataclasses.dataclass
class _Sent:
    """A batch published (``cut_off``: the connection failed part-way through it)."""

    chunk: Sequence[SpooledEvent]
    batch: _Batch
    replies: list[str]
    cut_off: bool = False


class _AckInbox:
    """Reply subjects ``<inbox>.<n>`` for stream acks, and the batches waiting for them."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._next = 0
        self._waiting: dict[str, tuple[_Batch, int]] = {}

    def reply(self, batch: _Batch, index: int) -> str:
        self._next += 1
        subject = f"{self.prefix}.{self._next}"
        self._waiting[subject] = (batch, index)
        return subject

    def forget(self, subjects: Sequence[str]) -> None:
        for subject in subjects:
            self._waiting.pop(subject, None)

    async def on_reply(self, msg: Msg) -> None:
        entry = self._waiting.pop(msg.subject, None)
        if entry is None:  # a late ack of a batch that timed out (its events are spooled)
            return
        batch, index = entry
        batch.acks[index] = _is_ack(msg)
        batch.missing -= 1
        if batch.missing == 0:
            batch.done.set()


def _is_ack(msg: Msg) -> bool:
    """True for a stream's PubAck (stored, or a duplicate of a stored event)."""
    data = msg.data
    if not data or (msg.headers and _STATUS in msg.headers):
        return False  # a status reply: no responders (503) or the like
    if b'"error"' not in data:  # a PubAck is {"stream": ..., "seq": ...[, "duplicate": true]}
        return True
    try:
        reply = json.loads(data)
    except ValueError:
        return False
    if isinstance(reply, dict) and "error" in reply:
        logger.debug("the stream refused an event: %s", reply["error"])
        return False
    return True


class ErrorPublisher:
    """Publishes error events to the ``ERRORS`` stream; see the module docstring.

    Args:
        broker: the NATS URL and aisys's credentials.
        settings: batch size, ack timeout, event size limit, spool retry period, stream config.
        spool: where events wait while NATS is unreachable.
        create_stream: create or update the stream on every (re)connect (ErrorBus itself and
            the legacy bridge do; other clients leave the stream to them).
    """

    def __init__(
        self,
        broker: NatsClient,
        settings: ErrorBusSettings,
        spool: Spool,
        *,
        create_stream: bool = False,
    ) -> None:
        self._broker = broker
        self._url = broker.display_url
        self._settings = settings
        self._spool = spool
        self._create_stream = create_stream
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._inbox: _AckInbox | None = None
        self._ready = asyncio.Event()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected and self._ready.is_set()

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context (for consumers sharing this connection).

        Raises:
            RuntimeError: :meth:`wait_connected` has not returned yet.
        """
        if self._js is None:
            raise RuntimeError("errors: the publisher has not connected to NATS yet")
        return self._js

    @property
    def nc(self) -> Client:
        if self._nc is None or self._js is None:
            raise RuntimeError("errors: the publisher has not connected to NATS yet")
        return self._nc

    @property
    def running(self) -> bool:
        """False once a background task has died (a bug; ``check_health`` reports it)."""
        # The first task ends once connected; only a failure of it counts.
        return bool(self._tasks) and not any(
            t.done() and (t is not self._tasks[0] or t.cancelled() or t.exception() is not None)
            for t in self._tasks
        )

    def start(self) -> None:
        """Start connecting (in the background, retrying forever) and the spool drain.

        Needs a running event loop (a Serve replica has one in ``__init__``).
        """
        self._tasks = [
            asyncio.create_task(self._connect(), name="errors-connect"),
            asyncio.create_task(self._drain_spool(), name="errors-spool-drain"),
        ]

    async def wait_connected(self, timeout_s: float | None = None) -> bool:
        """Wait until connected (and the stream set up); False on timeout."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def publish(self, events: Sequence[ErrorEvent]) -> PublishResult:
        """Store ``events`` in the stream, or spool those NATS did not take.

        Raises:
            EventTooLarge: an event is over ``max_event_bytes`` (none of them was sent).
            SpoolFull: NATS did not take some events and the spool has no room for them.
        """
        items = [_encode(event, self._settings.max_event_bytes) for event in events]
        stored = await self._send(items) if self.connected else []
        done = set(stored)
        rest = [item for item in items if item[1] not in done]
        if rest:
            self._spool.put(rest, stored=stored)
            self._wake.set()
        return PublishResult(
            accepted=[event.id for event in events], stored=len(stored), spooled=len(rest)
        )

    async def close(self) -> None:
        await cancel_and_wait(self._tasks)
        if self._nc is not None:
            await self._nc.close()

    async def _send(self, items: Sequence[SpooledEvent]) -> list[str]:
        """Publish in batches, up to :data:`_WINDOW` of them awaiting their acks at once;
        return the ids acknowledged. Stops sending at the first failure."""
        stored: list[str] = []
        size = self._settings.publish_batch_size
        in_flight: collections.deque[_Sent] = collections.deque()
        failed = False
        for start in range(0, len(items), size):
            if len(in_flight) == _WINDOW and not await self._settle(in_flight.popleft(), stored):
                failed = True
                break
            sent = await self._publish_batch(items[start : start + size])
            in_flight.append(sent)
            if sent.cut_off:
                failed = True
                break
        while in_flight:
            # After a failure the batches still out had as long as it did to be acknowledged.
            if not await self._settle(in_flight.popleft(), stored, wait=not failed):
                failed = True
        if failed:
            logger.warning("NATS did not acknowledge every event; the rest go to the spool")
        return stored

    async def _publish_batch(self, chunk: Sequence[SpooledEvent]) -> _Sent:
        nc, inbox = self.nc, self._inbox
        assert inbox is not None  # set with self._nc
        sent = _Sent(chunk, _Batch(len(chunk)), [])
        try:
            for index, (subject, event_id, payload) in enumerate(chunk):
                reply = inbox.reply(sent.batch, index)
                sent.replies.append(reply)
                await nc.publish(subject, payload, reply=reply, headers={"Nats-Msg-Id": event_id})
        except _UNAVAILABLE:
            # The connection went: what was not acked yet is spooled (and, if the stream did
            # store it, the spool's retry is a duplicate of the same Nats-Msg-Id).
            sent.cut_off = True
        return sent

    async def _settle(self, sent: _Sent, stored: list[str], *, wait: bool = True) -> bool:
        """Add the acknowledged ids of ``sent`` to ``stored``; True when all of them were."""
        if sent.batch.missing > 0 and wait and not sent.cut_off:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sent.batch.done.wait(), self._settings.ack_timeout_s)
        assert self._inbox is not None
        self._inbox.forget(sent.replies)
        complete = not sent.cut_off
        for (_, event_id, _), acked in zip(sent.chunk, sent.batch.acks, strict=True):
            if acked:
                stored.append(event_id)
            else:
                complete = False
        return complete

    async def _connect(self) -> None:
        async def reconnected() -> None:
            logger.info("reconnected to NATS at %s", self._url)
            await self._setup()

        async def disconnected() -> None:
            logger.warning("disconnected from NATS at %s; spooling to %s", self._url, self._spool)

        async def on_error(exc: Exception) -> None:
            logger.debug("NATS client error: %s", exc)

        # max_reconnect_attempts=-1 also retries the first connect until a server answers;
        # pending_size=0 makes a publish during an outage fail at once, so it is spooled.
        self._nc = await self._broker.connect(
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=2,
            pending_size=0,
            reconnected_cb=reconnected,
            disconnected_cb=disconnected,
            error_cb=on_error,
        )
        inbox = _AckInbox(self._nc.new_inbox())
        # Subscribed once: nats-py renews the subscription on every reconnect.
        await self._nc.subscribe(f"{inbox.prefix}.*", cb=inbox.on_reply)
        self._inbox = inbox
        self._js = self._nc.jetstream(timeout=self._settings.ack_timeout_s)
        await self._setup()

    async def _setup(self) -> None:
        if self._create_stream:
            try:
                await ensure_stream(self.js, self._settings)
            except _UNAVAILABLE as exc:
                logger.warning("could not set up the ERRORS stream yet: %s", exc)
                return
        self._ready.set()
        self._wake.set()

    async def _drain_spool(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.spool_retry_s)
            self._wake.clear()
            if not self.connected:
                if self._create_stream and self._nc is not None and self._nc.is_connected:
                    await self._setup()  # the stream could not be set up at (re)connect
                continue
            while batch := self._spool.peek(self._settings.publish_batch_size):
                stored = await self._send(batch)
                self._spool.remove(stored)
                if stored:
                    logger.info("flushed %d spooled events to the stream", len(stored))
                if len(stored) < len(batch):
                    break


def _encode(event: ErrorEvent, limit: int) -> SpooledEvent:
    payload = event.model_dump_json().encode()
    if len(payload) > limit:
        raise EventTooLarge(event.id, len(payload), limit)
    return event.subject(), event.id, payload
