"""The log shipper against a real nats-server: every appended line arrives exactly once, in order.

Across a clean stop and restart, a rename rotation while running and another while stopped, and a
crash between the stream's acks and the position commit (simulated by putting back the position
database as it was before the commit): the ``LOGS`` stream ends up with each line once.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import nats
import nats.js.errors
import pytest
from nats.js.api import DeliverPolicy

from actors.logship.models import LogRecord
from actors.logship.publish import LogStream
from actors.logship.shipper import LogShipper
from actors.logship.store import PositionStore
from cluster.base.constants import LOGS_STREAM, LOGS_SUBJECTS
from cluster.base.nats_client import NatsClient
from cluster.base.settings import LogShippingSettings
from cluster.ops.nats_server import NatsServer, nats_binary
from tests.conftest import free_port

pytestmark = pytest.mark.integration


def line(i: int) -> str:
    kinds = ["ok", "redis: Connection refused", "request timeout", "CUDA out of memory"]
    return f"{i:04d} {kinds[i % 4]}"


def append(path: Path, numbers: range) -> None:
    with path.open("a") as f:
        f.writelines(line(i) + "\n" for i in numbers)


async def stored(broker: NatsClient) -> int:
    """Messages in ``LOGS``; 0 before the shipper created it."""
    nc = await broker.connect()
    try:
        return int((await nc.jetstream().stream_info(LOGS_STREAM)).state.messages)
    except nats.js.errors.NotFoundError:
        return 0
    finally:
        await nc.close()


async def read_stream(broker: NatsClient) -> list[LogRecord]:
    """Every record of ``LOGS`` in stream order."""
    nc = await broker.connect()
    try:
        js = nc.jetstream()
        total = int((await js.stream_info(LOGS_STREAM)).state.messages)
        sub = await js.subscribe(
            LOGS_SUBJECTS, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )
        records: list[LogRecord] = []
        while len(records) < total:
            msg = await sub.next_msg(timeout=10)
            assert msg.subject == "logs.pc2.app"
            records.append(LogRecord.model_validate_json(msg.data))
        await sub.unsubscribe()
        return records
    finally:
        await nc.close()


class Run:
    """One shipper lifetime: its own position store and NATS connection, like an actor's."""

    def __init__(self, broker: NatsClient, settings: LogShippingSettings, data: Path) -> None:
        self.store = PositionStore(data / "positions.sqlite3")
        self.shipper = LogShipper(
            "pc2", settings, data / "ray", self.store, LogStream(broker, settings)
        )
        self.task: asyncio.Task[None] | None = None

    async def ship_until_stored(
        self, broker: NatsClient, count: int, timeout_s: float = 30
    ) -> None:
        if self.task is None:  # a second call waits on the same shipper, never starts another
            self.task = asyncio.create_task(self.shipper.run())
        deadline = time.monotonic() + timeout_s
        while await stored(broker) < count:
            assert not self.task.done(), self.task
            assert time.monotonic() < deadline, f"{await stored(broker)} of {count} lines stored"
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.shipper.close()
        self.store.close()  # checkpoints the WAL into the database file


def test_every_line_arrives_exactly_once_across_restarts_rotations_and_a_crash(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    broker = nats_server.client
    logs = tmp_path / "logs"
    logs.mkdir()
    data = tmp_path / "data"
    data.mkdir()
    app = logs / "app.log"
    settings = LogShippingSettings(
        sources={"app": [str(logs / "*.log")]},
        poll_interval_s=0.05,
        rotate_wait_s=0.2,
        batch_size=7,
    )

    async def main() -> None:
        # Lines already there, then lines appended while it runs, with a rename rotation.
        append(app, range(20))
        run = Run(broker, settings, data)
        await run.ship_until_stored(broker, 20)
        append(app, range(20, 25))
        app.rename(logs / "app.log.1")
        append(logs / "app.log.1", range(25, 27))  # the writer had not reopened yet
        append(app, range(27, 35))
        await run.ship_until_stored(broker, 35)
        await run.stop()

        # Stopped: more lines, and a rotation nobody watched.
        append(app, range(35, 40))
        app.rename(logs / "app.log.2")
        append(app, range(40, 45))
        run = Run(broker, settings, data)
        await run.ship_until_stored(broker, 45)
        await run.stop()

        # A crash after the acks, before the commit: the positions go back to before the batch.
        before = data / "before-crash.sqlite3"
        shutil.copy(data / "positions.sqlite3", before)
        append(app, range(45, 60))
        run = Run(broker, settings, data)
        await run.ship_until_stored(broker, 60)
        await run.stop()
        shutil.copy(before, data / "positions.sqlite3")
        append(app, range(60, 66))
        run = Run(broker, settings, data)
        await run.ship_until_stored(broker, 66)
        stats = run.shipper.stats()
        await run.stop()

        (source,) = stats.sources
        assert source.duplicates == 15  # republished, stored once by Nats-Msg-Id
        assert sum(source.lines.values()) == 6
        records = await read_stream(broker)
        assert [r.line for r in records] == [line(i) for i in range(66)]
        by_line = {r.line: r for r in records}
        assert by_line[line(1)].error_type == "connection_error"
        assert by_line[line(1)].severity == "error"
        assert (by_line[line(2)].error_type, by_line[line(2)].severity) == (
            "timeout_error",
            "warning",
        )
        assert by_line[line(3)].error_type == "resource_error"
        assert by_line[line(0)].error_type is None
        assert {r.host for r in records} == {"pc2"}
        assert len({r.msg_id() for r in records}) == 66

    asyncio.run(main())


def test_the_shipper_waits_for_nats_and_ships_once_it_is_there(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    append(logs / "a.log", range(3))
    server = NatsServer(
        binary=nats_binary(), port=free_port(), store_dir=tmp_path / "nats", password="logship"
    )
    settings = LogShippingSettings(sources={"app": [str(logs / "*.log")]}, poll_interval_s=0.05)

    async def main() -> None:
        run = Run(server.client, settings, tmp_path)
        task = asyncio.create_task(run.shipper.run())
        await asyncio.sleep(0)  # the first connect attempt is under way, and fails
        assert not run.shipper.stats().connected
        server.start()
        try:
            run.task = task
            deadline = time.monotonic() + 60
            while not run.shipper.stats().connected or await stored(server.client) < 3:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
            await run.stop()
        finally:
            server.stop()

    asyncio.run(main())
