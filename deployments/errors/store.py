"""The ``ERRORS`` JetStream stream's readers: durable consumers and live following.

The stream (configured by :mod:`actors.errors.stream`) is the source of truth for error
events (file storage, retention by age and size, duplicate window for ``Nats-Msg-Id``). Readers
either pull through a named durable consumer, which resumes where it stopped after a restart,
or follow live from a sequence number.

Example (the stream made first with :func:`actors.errors.stream.ensure_stream`)::

    consumer = await DurableConsumer.create(nc, "observability")
    for delivery in await consumer.fetch(100, timeout_s=1.0):
        handle(delivery.stored.event)
        await delivery.ack()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
)
from pydantic import ValidationError

from actors.errors.models import ErrorEvent, StoredEvent
from cluster.base.constants import ERRORS_STREAM, ERRORS_SUBJECTS

__all__ = [
    "Delivery",
    "DurableConsumer",
    "follow",
    "stored_event",
    "stream_sequence",
]

logger = logging.getLogger(__name__)

#: Tokens of a JetStream ack subject without a domain.
_V1_ACK_TOKENS: Final = 9
_STATUS: Final = "Status"
#: Status replies that end a pull: no messages (404), request expired (408), cut short (409).
_PULL_ENDED: Final = frozenset(("404", "408", "409"))
_HEARTBEAT: Final = "100"
#: How much sooner than the client the server gives up a waiting pull.
_EXPIRES_MARGIN_S: Final = 0.05


def stored_event(msg: Msg) -> StoredEvent | None:
    """Parse a stream message; None (logged) for one that is not an ErrorEvent."""
    seq = stream_sequence(msg)
    try:
        return StoredEvent(seq=seq, event=ErrorEvent.model_validate_json(msg.data))
    except ValidationError as exc:
        logger.warning("stream message %d on %s is not an ErrorEvent: %s", seq, msg.subject, exc)
        return None


def stream_sequence(msg: Msg) -> int:
    """The stream sequence of a JetStream message, read from its ack subject.

    ``msg.metadata`` parses every field (a datetime among them) for this one number.
    """
    tokens = (msg.reply or "").split(".")
    if len(tokens) == _V1_ACK_TOKENS and tokens[0] == "$JS" and tokens[1] == "ACK":
        return int(tokens[5])  # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>...
    return msg.metadata.sequence.stream  # the domain form, or raises NotJSMessageError


@dataclass(frozen=True)
class Delivery:
    """One message of a durable consumer; ``stored`` is None when it was not an ErrorEvent."""

    msg: Msg
    stored: StoredEvent | None

    async def ack(self) -> None:
        await self.msg.ack()


class DurableConsumer:
    """A named pull consumer on ``ERRORS``: the server remembers what was acknowledged.

    Several processes may pull from the same name; each message goes to one of them. Pulls
    are JetStream's ``CONSUMER.MSG.NEXT`` requests whose messages a callback of one inbox
    subscription collects: a batch costs one wait, where nats-py's ``fetch`` waits (a task and
    a timer) for each message.
    """

    def __init__(self, nc: Client, stream: str, durable: str) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._stream = stream
        self._durable = durable
        self._next = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None
        # Messages delivered and not yet handed out (also those of a pull that timed out).
        self._arrived: list[Msg] = []
        self._want = 0
        self._done = asyncio.Event()
        self._failure: nats.js.errors.APIError | None = None

    @classmethod
    async def create(
        cls,
        nc: Client,
        durable: str,
        filter_subject: str = ERRORS_SUBJECTS,
        ack_wait_s: float = 30.0,
    ) -> DurableConsumer:
        """Bind to durable consumer ``durable``, creating it (from the first event) if new."""
        js = nc.jetstream()
        try:
            await js.consumer_info(ERRORS_STREAM, durable)
        except nats.js.errors.NotFoundError:
            config = ConsumerConfig(
                name=durable,
                durable_name=durable,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=ack_wait_s,
                max_ack_pending=20_000,
                filter_subject=filter_subject,
            )
            await js.add_consumer(ERRORS_STREAM, config=config)
        consumer = cls(nc, ERRORS_STREAM, durable)
        consumer._sub = await nc.subscribe(consumer._inbox, cb=consumer._on_msg)
        return consumer

    async def fetch(self, batch: int, timeout_s: float) -> list[Delivery]:
        """Up to ``batch`` messages; an empty list when none arrived within ``timeout_s``.

        Raises:
            nats.js.errors.APIError: the server refused the pull (e.g. the consumer is gone).
        """
        if len(self._arrived) < batch:
            # What the stream has now, at once; if it has nothing, wait for one message.
            await self._pull(batch - len(self._arrived), no_wait=True, timeout_s=timeout_s)
            if not self._arrived:
                await self._pull(1, no_wait=False, timeout_s=timeout_s)
        msgs, self._arrived = self._arrived[:batch], self._arrived[batch:]
        return [Delivery(msg, stored_event(msg)) for msg in msgs]

    async def _pull(self, batch: int, *, no_wait: bool, timeout_s: float) -> None:
        request: dict[str, object] = {"batch": batch}
        if no_wait:
            request["no_wait"] = True
        else:  # the server ends the request a little before the client stops waiting
            request["expires"] = max(int((timeout_s - _EXPIRES_MARGIN_S) * 1e9), 1_000_000)
        self._want = len(self._arrived) + batch
        self._done.clear()
        await self._nc.publish(self._next, json.dumps(request).encode(), reply=self._inbox)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._done.wait(), timeout_s)
        self._want = 0
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    async def _on_msg(self, msg: Msg) -> None:
        status = msg.headers.get(_STATUS) if msg.headers else None
        if not status:
            self._arrived.append(msg)
            if len(self._arrived) >= self._want:
                self._done.set()
        elif status in _PULL_ENDED:  # no (more) messages, the request expired, or was cut
            self._done.set()
        elif status != _HEARTBEAT:
            self._failure = nats.js.errors.APIError.from_msg(msg)
            self._done.set()

    async def pending(self) -> int:
        """Messages in the stream this consumer has not been delivered yet."""
        info = await self._js.consumer_info(self._stream, self._durable)
        return int(info.num_pending or 0)

    async def close(self) -> None:
        """Stop pulling; the durable consumer and its position stay on the server."""
        if self._sub is not None:
            await self._sub.unsubscribe()


async def follow(
    js: JetStreamContext,
    subject: str = ERRORS_SUBJECTS,
    after_seq: int | None = None,
    idle_s: float = 15.0,
) -> AsyncIterator[StoredEvent | None]:
    """Subscribe now, then iterate events as they are stored: new ones, or after ``after_seq``.

    The iterator yields None after ``idle_s`` without an event (so a caller can send a
    keep-alive). An ordered (ephemeral) consumer: nothing is left on the server afterwards.
    Subscribing happens before this returns, so a failure surfaces here, not mid-iteration.
    """
    if after_seq is None:
        sub = await js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW)
    else:
        sub = await js.subscribe(
            subject,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            config=ConsumerConfig(opt_start_seq=after_seq + 1),
        )
    return _iterate(sub, idle_s)


async def _iterate(
    sub: JetStreamContext.PushSubscription, idle_s: float
) -> AsyncIterator[StoredEvent | None]:
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=idle_s)
            except TimeoutError:
                yield None
                continue
            stored = stored_event(msg)
            if stored is not None:
                yield stored
    finally:
        with contextlib.suppress(nats.errors.ConnectionClosedError):
            await sub.unsubscribe()
