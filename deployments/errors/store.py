"""The ``ERRORS`` JetStream stream's readers: durable consumers and live following.

The stream (configured by :mod:`actors.errors.stream`) is the source of truth for error
events (file storage, retention by age and size, duplicate window for ``Nats-Msg-Id``). Readers
either pull through a named durable consumer, which resumes where it stopped after a restart,
or follow live from a sequence number.

Example (the stream made first with :func:`actors.errors.stream.ensure_stream`)::

    consumer = await DurableConsumer.create(js, "observability")
    for delivery in await consumer.fetch(100, timeout_s=1.0):
        handle(delivery.stored.event)
        await delivery.ack()
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
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

    Several processes may pull from the same name; each message goes to one of them.
    """

    def __init__(self, subscription: JetStreamContext.PullSubscription) -> None:
        self._sub = subscription

    @classmethod
    async def create(
        cls,
        js: JetStreamContext,
        durable: str,
        filter_subject: str = ERRORS_SUBJECTS,
        ack_wait_s: float = 30.0,
    ) -> DurableConsumer:
        """Bind to durable consumer ``durable``, creating it (from the first event) if new."""
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=ack_wait_s,
            max_ack_pending=20_000,
        )
        sub = await js.pull_subscribe(
            filter_subject, durable=durable, stream=ERRORS_STREAM, config=config
        )
        return cls(sub)

    async def fetch(self, batch: int, timeout_s: float) -> list[Delivery]:
        """Up to ``batch`` messages; an empty list when none arrived within ``timeout_s``."""
        try:
            msgs = await self._sub.fetch(batch, timeout=timeout_s)
        except TimeoutError:  # nats.errors.TimeoutError or asyncio's, depending on where
            return []
        return [Delivery(msg, stored_event(msg)) for msg in msgs]

    async def pending(self) -> int:
        """Messages in the stream this consumer has not been delivered yet."""
        info = await self._sub.consumer_info()
        return int(info.num_pending or 0)

    async def close(self) -> None:
        """Stop pulling; the durable consumer and its position stay on the server."""
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
