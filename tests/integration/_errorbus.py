"""Helpers shared by the ErrorBus integration tests: read the whole ERRORS stream back."""

from __future__ import annotations

from nats.js.api import DeliverPolicy

from actors.errors.models import StoredEvent
from cluster.base.constants import ERRORS_STREAM, ERRORS_SUBJECTS
from cluster.base.nats_client import NatsClient
from deployments.errors.store import stored_event


async def stream_count(broker: NatsClient) -> int:
    nc = await broker.connect()
    try:
        info = await nc.jetstream().stream_info(ERRORS_STREAM)
        return int(info.state.messages)
    finally:
        await nc.close()


async def read_stream(broker: NatsClient) -> list[StoredEvent]:
    """Every event in the stream, in order, through an ordered consumer."""
    nc = await broker.connect()
    try:
        js = nc.jetstream()
        total = int((await js.stream_info(ERRORS_STREAM)).state.messages)
        sub = await js.subscribe(
            ERRORS_SUBJECTS, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )
        events: list[StoredEvent] = []
        while len(events) < total:
            msg = await sub.next_msg(timeout=10)
            item = stored_event(msg)
            assert item is not None, msg.data[:200]
            events.append(item)
        await sub.unsubscribe()
        return events
    finally:
        await nc.close()
