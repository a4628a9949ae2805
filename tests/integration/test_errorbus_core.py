"""ErrorBusCore and ErrorPublisher against a real nats-server: dedup, outage, replay, limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from actors.errors.models import ErrorEvent, ErrorQuery
from actors.errors.publisher import ErrorPublisher
from actors.errors.spool import Spool
from actors.errors.stream import ensure_stream
from cluster.base.constants import ERRORS_STREAM
from cluster.base.errors import EventTooLarge, SpoolFull
from cluster.base.nats_client import NatsClient
from cluster.base.settings import ErrorBusSettings
from cluster.ops.nats_server import NatsServer
from deployments.errors.core import ErrorBusCore
from deployments.errors.store import DurableConsumer, follow
from tests.conftest import free_port
from tests.integration._errorbus import read_stream, stream_count

pytestmark = pytest.mark.integration

SETTINGS = ErrorBusSettings(ack_timeout_s=2.0, spool_retry_s=0.2, publish_batch_size=64)


async def until(predicate: Callable[[], Awaitable[bool] | bool], timeout_s: float = 20) -> None:
    """Poll an (async) condition until it holds."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if await result if isinstance(result, Awaitable) else result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(0.05)


def test_publish_dedups_by_id_and_the_index_answers_queries(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async def main() -> None:
        core = ErrorBusCore(nats_server.client, SETTINGS, tmp_path)
        core.start()
        try:
            assert await core.publisher.wait_connected(10)
            first = ErrorEvent(agent="tts", severity="critical", message="voice died")
            other = ErrorEvent(agent="nlu.v2", severity="info", message="slow")
            result = await core.publish([first, other, first])
            assert (result.stored, result.spooled) == (3, 0)
            assert await stream_count(nats_server.client) == 2  # stored once by Nats-Msg-Id
            stored = await read_stream(nats_server.client)
            assert [s.event for s in stored] == [first, other]
            await until(lambda: len(core.index) == 2)
            page = core.query(ErrorQuery(min_severity="error"))
            assert [i.event.id for i in page.items] == [first.id]
            assert core.counts(None).agents["nlu.v2"].by_severity == {"info": 1}
            core.check()
        finally:
            await core.close()

    asyncio.run(main())


def test_nats_stopped_mid_stream_loses_no_acknowledged_event(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async def main() -> None:
        spool = Spool(tmp_path / "spool.sqlite3", 64 * 1024 * 1024)
        publisher = ErrorPublisher(nats_server.client, SETTINGS, spool, create_stream=True)
        publisher.start()
        acknowledged: list[str] = []
        spooled = 0
        try:
            assert await publisher.wait_connected(10)
            for round_ in range(60):
                if round_ == 20:
                    await asyncio.to_thread(nats_server.stop)
                if round_ == 45:
                    await asyncio.to_thread(nats_server.start)
                batch = [
                    ErrorEvent(agent=f"a{round_ % 3}", message=f"m{round_}-{i}") for i in range(5)
                ]
                result = await publisher.publish(batch)
                acknowledged += result.accepted
                spooled += result.spooled
                if 20 <= round_ < 45:
                    await until(lambda: not publisher.connected or len(spool) > 0)
            assert spooled > 0, "the outage never reached the publisher"
            await until(lambda: len(spool) == 0, timeout_s=30)
            ids = [s.event.id for s in await read_stream(nats_server.client)]
            assert sorted(ids) == sorted(acknowledged)
            assert len(ids) == 300
        finally:
            await publisher.close()

    asyncio.run(main())


def test_a_stopped_durable_consumer_replays_what_it_missed(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async def consume(durable: str, count: int) -> list[str]:
        nc = await nats_server.client.connect()
        consumer = await DurableConsumer.create(nc, durable)
        got: list[str] = []
        while len(got) < count:
            for delivery in await consumer.fetch(count - len(got), timeout_s=2):
                assert delivery.stored is not None
                got.append(delivery.stored.event.message)
                await delivery.ack()
        assert await consumer.fetch(10, timeout_s=0.3) == []
        await nc.close()  # the consumer process goes away
        return got

    async def main() -> None:
        spool = Spool(tmp_path / "spool.sqlite3", 1024 * 1024)
        publisher = ErrorPublisher(nats_server.client, SETTINGS, spool, create_stream=True)
        publisher.start()
        try:
            assert await publisher.wait_connected(10)
            await publisher.publish([ErrorEvent(message=f"early-{i}") for i in range(10)])
            assert await consume("observability", 10) == [f"early-{i}" for i in range(10)]
            await publisher.publish([ErrorEvent(message=f"missed-{i}") for i in range(20)])
            assert await consume("observability", 20) == [f"missed-{i}" for i in range(20)]
        finally:
            await publisher.close()

    asyncio.run(main())


def test_follow_resumes_after_a_sequence(nats_server: NatsServer, tmp_path: Path) -> None:
    async def main() -> None:
        spool = Spool(tmp_path / "spool.sqlite3", 1024 * 1024)
        publisher = ErrorPublisher(nats_server.client, SETTINGS, spool, create_stream=True)
        publisher.start()
        try:
            assert await publisher.wait_connected(10)
            await publisher.publish([ErrorEvent(message=f"m{i}") for i in range(5)])
            seen = []
            async for item in await follow(publisher.js, after_seq=3, idle_s=0.2):
                if item is None:
                    break
                seen.append((item.seq, item.event.message))
            assert seen == [(4, "m3"), (5, "m4")]
        finally:
            await publisher.close()

    asyncio.run(main())


def test_spool_full_and_event_too_large_are_refused(tmp_path: Path) -> None:
    async def main() -> None:
        settings = SETTINGS.model_copy(update={"max_event_bytes": 4096})
        spool = Spool(tmp_path / "spool.sqlite3", 20_000)
        # Nothing listens on this port: every event goes to the spool until it is full.
        publisher = ErrorPublisher(
            NatsClient(url=f"nats://127.0.0.1:{free_port()}"), settings, spool
        )
        publisher.start()
        try:
            with pytest.raises(EventTooLarge):
                await publisher.publish([ErrorEvent(message="x" * 5000)])
            accepted = 0
            with pytest.raises(SpoolFull) as caught:
                for _ in range(100):
                    result = await publisher.publish([ErrorEvent(message="y" * 1000)])
                    assert result.spooled == 1
                    accepted += 1
            assert 10 <= accepted < 20 and len(spool) == accepted
            assert caught.value.stored == []
        finally:
            await publisher.close()

    asyncio.run(main())


def test_ensure_stream_applies_new_retention(nats_server: NatsServer) -> None:
    async def main() -> None:
        nc = await nats_server.client.connect()
        js = nc.jetstream()
        await ensure_stream(js, SETTINGS)
        await ensure_stream(js, SETTINGS.model_copy(update={"retention_days": 1.0}))
        info = await js.stream_info(ERRORS_STREAM)
        assert info.config.max_age == 86_400
        await nc.close()

    asyncio.run(main())
