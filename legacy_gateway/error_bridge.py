"""The legacy error bus on port 7150, bridged to ErrorBus (``docs/legacy-protocol.md`` 3.3, 4.14).

The legacy agents *connect* a PUB socket to 7150, so the bridge **binds** a SUB there and
subscribes to everything. Each message, in whichever of the legacy framings, is normalised to an
:class:`ErrorEvent` (unreadable ones become ``malformed_error_report`` events) and published
through the :class:`ErrorPublisher`. Every event stored in the stream, from any source, is also
re-published as ``[b"ERROR:", json]`` with the fields the legacy Error_Management_System reads,
on an XPUB socket (a PUB that hears its subscribers): while no legacy subscriber wants that
topic, the bridge does not follow the stream at all, so an unheard re-publish costs nothing.

Example::

    bridge = ErrorBridge(publisher, settings.errors.bridge, max_event_bytes=256 * 1024)
    bridge.start()
    ...
    await bridge.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any, Final, Literal

import nats.errors
import zmq
import zmq.asyncio
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from actors.errors.models import ErrorEvent
from actors.errors.publisher import ErrorPublisher
from cluster.base.aio import cancel_and_wait
from cluster.base.constants import ERRORS_SUBJECTS
from cluster.base.errors import ErrorBusError
from cluster.base.settings import ErrorBridgeSettings
from deployments.errors.normalize import MALFORMED_TYPE, malformed_error_report, normalize_frames

__all__ = ["BridgeStats", "ErrorBridge", "LegacyErrorFrame"]

logger = logging.getLogger(__name__)

#: Topic frame of re-published events (what Error_Management_System subscribes to).
REPUBLISH_TOPIC: Final = b"ERROR:"
#: NATS messages the re-publishing subscription may hold.
_QUEUE_SIZE: Final = 10_000
_BATCH: Final = 500
#: Tasks publishing batches from the queue at once: one batch goes out while another waits for
#: the stream's acks. (A batch that makes at most 4 of ``errors.publish_batch_size`` is written
#: to NATS without a pause, so with the default sizes events are stored in the order they came.)
_FORWARDERS: Final = 2
#: Messages read from the SUB socket per wake-up of the receiving task at most.
_DRAIN: Final = 256
#: Seconds before switching re-publishing on or off again after NATS refused it.
_RETRY_S: Final = 1.0


class LegacyErrorFrame(BaseModel):
    """Second frame of a re-published event: the fields Error_Management_System reads."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    error_id: str
    source: str
    error_type: str
    message: str
    severity: str
    timestamp: str
    details: dict[str, JsonValue]

    @classmethod
    def from_event(cls, event: ErrorEvent) -> LegacyErrorFrame:
        return cls(
            error_id=event.id,
            source=event.agent,
            error_type=event.error_type,
            message=event.message,
            severity=event.severity,
            timestamp=event.time.isoformat(),
            details=event.details,
        )


class BridgeStats(BaseModel):
    """Counters of the bridge since it started."""

    received: int = 0
    malformed: int = 0
    published: int = 0
    spooled: int = 0
    lost: int = 0
    republished: int = 0
    subscribed_topics: int = Field(
        default=0, description="Distinct topics the re-publishing socket's subscribers hold."
    )
    republishing: bool = Field(
        default=False, description="Whether a legacy subscriber wants the re-published events."
    )
    oversized: int = Field(
        default=0, description="Messages over errors.bridge.max_message_bytes, dropped unread."
    )


class ErrorBridge:
    """Bind the legacy SUB and the re-publishing XPUB, and move events between them and NATS.

    Args:
        publisher: a started publisher; the bridge does not own it.
        settings: bind address, ports, receive high-water mark, message size and queue depth.
        max_event_bytes: legacy messages over this size are recorded as malformed.
    """

    def __init__(
        self, publisher: ErrorPublisher, settings: ErrorBridgeSettings, max_event_bytes: int
    ) -> None:
        self._publisher = publisher
        self._settings = settings
        self._max_bytes = max_event_bytes
        self._ctx = zmq.asyncio.Context()
        self._sub = self._ctx.socket(zmq.SUB)
        self._pub = self._ctx.socket(zmq.XPUB)
        self._pub_now: zmq.Socket[bytes] = zmq.Socket.shadow(self._pub.underlying)
        self._queue: asyncio.Queue[ErrorEvent] = asyncio.Queue(settings.queue_depth)
        self._tasks: list[asyncio.Task[None]] = []
        self._republish_sub: Subscription | None = None
        # Topics the XPUB's subscribers hold (it passes each up once, and its last removal).
        self._topics: set[bytes] = set()
        self._changed = asyncio.Event()
        self.stats = BridgeStats()

    @property
    def running(self) -> bool:
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    def start(self) -> None:
        """Bind both sockets and start receiving; re-publishing starts once NATS is connected
        and a legacy subscriber wants it.

        Needs a running event loop.

        Raises:
            zmq.ZMQError: a port is taken.
        """
        bind = self._settings.bind
        for sock in (self._sub, self._pub):
            sock.setsockopt(zmq.LINGER, 0)
        self._sub.setsockopt(zmq.RCVHWM, self._settings.receive_hwm)
        # A frame over 16 x the limit is never buffered: libzmq drops that publisher's
        # connection (and what it sent next). Below that a message over the limit is read,
        # counted as oversized and dropped, and the publisher's later messages still arrive.
        self._sub.setsockopt(zmq.MAXMSGSIZE, 16 * self._settings.max_message_bytes)
        self._sub.setsockopt(zmq.SUBSCRIBE, b"")
        self._sub.bind(f"tcp://{bind}:{self._settings.sub_port}")
        self._pub.bind(f"tcp://{bind}:{self._settings.pub_port}")
        self._tasks = [
            asyncio.create_task(self._receive(), name="error-bridge-receive"),
            *(
                asyncio.create_task(self._forward(), name=f"error-bridge-forward-{n}")
                for n in range(_FORWARDERS)
            ),
            asyncio.create_task(self._hear_subscribers(), name="error-bridge-subscribers"),
            asyncio.create_task(self._steer_republish(), name="error-bridge-republish"),
        ]

    async def close(self) -> None:
        await cancel_and_wait(self._tasks)
        if self._republish_sub is not None:
            with contextlib.suppress(Exception):  # the connection may already be closed
                await self._republish_sub.unsubscribe()
        self._sub.close(linger=0)
        self._pub.close(linger=0)
        self._ctx.term()

    async def _receive(self) -> None:
        sub = self._sub
        # The same socket without the asyncio wrapper: what is queued already is read in one
        # go, without a future and a trip through the event loop per message.
        queued: zmq.Socket[bytes] = zmq.Socket.shadow(sub.underlying)
        while True:
            frames: list[zmq.Frame] | None = await sub.recv_multipart(copy=False)
            taken = 0
            while frames is not None:
                event = self._read(frames)
                frames = None  # an oversized message is let go before the next is read
                taken += 1
                if event is not None:
                    await self._queue.put(event)  # waits while the queue is full
                if taken < _DRAIN:
                    with contextlib.suppress(zmq.Again):
                        frames = queued.recv_multipart(zmq.NOBLOCK, copy=False)

    def _read(self, frames: list[zmq.Frame]) -> ErrorEvent | None:
        """The event of one legacy message; None for one over the size limit (dropped)."""
        peer = _peer_address(frames[0])
        total = sum(len(f) for f in frames)
        if total > self._settings.max_message_bytes:
            # Many frames each under ZMQ_MAXMSGSIZE: dropped before anything copies them.
            self.stats.oversized += 1
            if _is_power_of_ten(self.stats.oversized):  # a flood logs a few lines only
                logger.warning(
                    "dropped %d legacy error messages over %d bytes (the latest: %d bytes "
                    "from %s; errors.bridge.max_message_bytes)",
                    self.stats.oversized,
                    self._settings.max_message_bytes,
                    total,
                    peer or "?",
                )
            return None
        raw = [f.bytes for f in frames]
        received_at = datetime.now(UTC)
        try:
            event = normalize_frames(
                raw, received_at=received_at, peer=peer, max_bytes=self._max_bytes
            )
        except Exception as exc:  # loop boundary: one odd message must not end the bridge
            logger.exception("legacy error frame from %s could not be read", peer or "?")
            reason = f"unreadable: {type(exc).__name__}: {exc}"[:500]
            event = malformed_error_report(raw, reason, received_at=received_at, peer=peer)
        self.stats.received += 1
        if event.error_type == MALFORMED_TYPE:
            self.stats.malformed += 1
        return event

    async def _forward(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < _BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                result = await self._publisher.publish(batch)
            except ErrorBusError as exc:
                # Legacy publishers are fire-and-forget: nobody to tell but the log.
                self.stats.lost += len(batch)
                logger.error("dropped %d legacy error events: %s", len(batch), exc)
                continue
            self.stats.published += result.stored
            self.stats.spooled += result.spooled

    async def _hear_subscribers(self) -> None:
        """Track the XPUB's subscriptions: ``\\x01topic`` adds one, ``\\x00topic`` removes it
        (libzmq also sends that when the last subscriber of a topic disconnects)."""
        while True:
            message = await self._pub.recv()
            if not message or message[0] not in (0, 1):
                continue  # not a subscription message; nothing else arrives on an XPUB
            topic = bytes(message[1:])
            if message[0] == 1:
                self._topics.add(topic)
            else:
                self._topics.discard(topic)
            self.stats.subscribed_topics = len(self._topics)
            self._changed.set()

    async def _steer_republish(self) -> None:
        """Follow the stream while a subscriber wants the events, and only then."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            # ZeroMQ matches a subscription as a prefix of the message's first frame.
            wanted = any(REPUBLISH_TOPIC.startswith(t) for t in self._topics)
            try:
                if wanted and self._republish_sub is None:
                    await self._publisher.wait_connected()
                    self._republish_sub = await self._publisher.nc.subscribe(
                        ERRORS_SUBJECTS, cb=self._republish, pending_msgs_limit=_QUEUE_SIZE
                    )
                elif not wanted and self._republish_sub is not None:
                    sub, self._republish_sub = self._republish_sub, None
                    await sub.unsubscribe()
            except nats.errors.Error as exc:  # the connection dropped in between: try again
                logger.warning("error bridge: re-publishing not switched yet: %s", exc)
                self._changed.set()
                await asyncio.sleep(_RETRY_S)
            self.stats.republishing = self._republish_sub is not None

    async def _republish(self, msg: Msg) -> None:
        try:
            event = ErrorEvent.model_validate_json(msg.data)
        except ValidationError as exc:
            logger.warning("not re-publishing a message on %s: %s", msg.subject, exc)
            return
        frame = LegacyErrorFrame.from_event(event).model_dump_json().encode()
        # An XPUB never blocks (past a subscriber's high-water mark it drops), so no future.
        self._pub_now.send_multipart([REPUBLISH_TOPIC, frame])
        self.stats.republished += 1


def _is_power_of_ten(n: int) -> bool:
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n == 1


def _peer_address(frame: Any) -> str:
    try:
        return str(frame.get("Peer-Address"))
    except zmq.ZMQError:
        return ""
