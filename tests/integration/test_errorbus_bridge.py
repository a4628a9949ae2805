"""The legacy error-bus bridge with real ZeroMQ sockets and a real nats-server."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import zmq

from actors.errors.publisher import ErrorPublisher
from actors.errors.spool import Spool
from cluster.base.constants import ERRORS_SUBJECTS
from cluster.base.nats_client import NatsClient
from cluster.base.settings import ErrorBridgeSettings, ErrorBusSettings
from cluster.ops.nats_server import NatsServer
from deployments.errors.normalize import MALFORMED_TYPE
from legacy_gateway.error_bridge import ErrorBridge, LegacyErrorFrame
from tests.conftest import free_port, wait_for_condition
from tests.integration._errorbus import read_stream

pytestmark = pytest.mark.integration

PUBLISHERS = 8
PER_PUBLISHER = 1250


def framed(kind: int, marker: str) -> list[bytes]:
    """One legacy message in framing E1..E6 (kind 0..5) whose message or details carry marker."""
    body: dict[str, object]
    if kind == 0:  # E1 ErrorPublisher
        body = {
            "message_type": "error_report",
            "source": "SystemDigitalTwin",
            "timestamp": "2025-07-15T11:00:00.1",
            "error_data": {
                "error_id": marker,
                "error_type": "setup",
                "severity": "high",
                "details": marker,
            },
        }
        return [b"ERROR:" + json.dumps(body).encode()]
    if kind == 1:  # E2 hand-rolled
        body = {
            "timestamp": time.time(),
            "agent": "MemoryClient",
            "error_type": "conn",
            "message": marker,
            "severity": "ERROR",
        }
        return [f"ERROR:{json.dumps(body)}".encode()]
    if kind == 2:  # E3 two frames
        body = {
            "error_type": "task",
            "message": marker,
            "severity": "ErrorSeverity.WARNING",
            "context": {"task_id": "t"},
        }
        return [b"ERROR:", json.dumps(body).encode()]
    if kind == 3:  # E4 topic without colon
        body = {
            "timestamp": "2025-07-15T11:00:00",
            "agent": "AuthenticationAgent",
            "type": "LOGIN_ERROR",
            "message": marker,
            "severity": "ERROR",
        }
        return [b"ERROR", json.dumps(body).encode()]
    if kind == 4:  # E5 template
        body = {
            "timestamp": time.time(),
            "agent": "unknown",
            "error_type": "proc",
            "message": marker,
            "severity": "CRITICAL",
            "details": {"stack_trace": "tb"},
        }
        return [b"ERROR:" + json.dumps(body).encode()]
    body = {
        "source": "ResourceManager",
        "source_machine": "PC2",  # E6
        "error_data": {"error_type": "gpu", "severity": "critical", "details": marker},
    }
    return [b"PC2_ERROR:RESOURCE:" + json.dumps(body).encode()]


EXPECTED = {  # kind -> (agent, error_type, severity)
    0: ("SystemDigitalTwin", "setup", "error"),
    1: ("MemoryClient", "conn", "error"),
    2: ("unknown", "task", "warning"),
    3: ("AuthenticationAgent", "LOGIN_ERROR", "error"),
    4: ("unknown", "proc", "critical"),
    5: ("ResourceManager", "gpu", "critical"),
}


@contextmanager
def legacy_pub(port: int) -> Iterator[zmq.Socket[bytes]]:
    """A legacy publisher: PUB *connected* to the bridge, as every legacy agent does it."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    # A PUB drops what exceeds its send high-water mark (1000 by default) when it sends faster
    # than its I/O thread writes; these tests burst far above any real agent's rate.
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.connect(f"tcp://127.0.0.1:{port}")
    try:
        yield sock
    finally:
        sock.close(linger=0)
        ctx.term()


class Bridge:
    """A publisher and bridge running in their own event loop thread, plus a NATS watcher."""

    def __init__(self, broker: NatsClient, tmp: Path) -> None:
        self.settings = ErrorBusSettings(
            spool_retry_s=0.2,
            bridge=ErrorBridgeSettings(
                bind="127.0.0.1", sub_port=free_port(), pub_port=free_port()
            ),
        )
        self.broker = broker
        self.tmp = tmp
        self.seen: set[str] = set()  # messages seen on NATS (core subscription)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Bridge:
        self.thread.start()
        self.call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def call(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        spool = Spool(self.tmp / "spool.sqlite3", 64 * 1024 * 1024)
        self.publisher = ErrorPublisher(self.broker, self.settings, spool, create_stream=True)
        self.publisher.start()
        assert await self.publisher.wait_connected(10)
        self.bridge = ErrorBridge(
            self.publisher, self.settings.bridge, self.settings.max_event_bytes
        )
        self.bridge.start()
        self.nc = await self.broker.connect()

        async def watch(msg) -> None:
            self.seen.add(json.loads(msg.data)["message"])

        await self.nc.subscribe(ERRORS_SUBJECTS, cb=watch)
        await self.nc.flush()

    async def _stop(self) -> None:
        await self.nc.close()
        await self.bridge.close()
        await self.publisher.close()

    def wait_joined(self, sock: zmq.Socket[bytes], probe: str) -> None:
        """Beat the ZeroMQ slow joiner: send probes until one is seen on NATS."""
        deadline = time.monotonic() + 20
        while probe not in self.seen:
            assert time.monotonic() < deadline, "bridge never received a probe"
            sock.send_string("ERROR:" + json.dumps({"agent": "probe", "message": probe}))
            wait = time.monotonic() + 0.2
            while probe not in self.seen and time.monotonic() < wait:
                time.sleep(0.01)


def test_ten_thousand_events_from_eight_publishers_in_all_framings_arrive_once(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    with Bridge(nats_server.client, tmp_path) as bridge:
        port = bridge.settings.bridge.sub_port

        def publisher(n: int) -> None:
            with legacy_pub(port) as sock:
                bridge.wait_joined(sock, f"probe-{n}")
                for i in range(PER_PUBLISHER):
                    kind = (n + i) % 6
                    sock.send_multipart(framed(kind, f"load-{n}-{i}-k{kind}"))
                # Keep the socket open until everything it sent has arrived.
                deadline = time.monotonic() + 60
                while (
                    f"load-{n}-{PER_PUBLISHER - 1}-k{(n + PER_PUBLISHER - 1) % 6}"
                    not in bridge.seen
                ):
                    assert time.monotonic() < deadline
                    time.sleep(0.02)

        threads = [threading.Thread(target=publisher, args=(n,)) for n in range(PUBLISHERS)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        logging.getLogger(__name__).info(
            "%d events through the bridge in %.1fs",
            PUBLISHERS * PER_PUBLISHER,
            time.monotonic() - started,
        )
        expected = {
            f"load-{n}-{i}-k{(n + i) % 6}" for n in range(PUBLISHERS) for i in range(PER_PUBLISHER)
        }
        deadline = time.monotonic() + 60
        while not expected <= bridge.seen:
            missing = len(expected - bridge.seen)
            assert time.monotonic() < deadline, f"{missing} never arrived; {bridge.bridge.stats}"
            time.sleep(0.05)

        stored = asyncio.run(read_stream(nats_server.client))
        load = [s.event for s in stored if s.event.agent != "probe"]
        marks = [e.message or str(e.details.get("details", "")) for e in load]
        assert len(load) == PUBLISHERS * PER_PUBLISHER
        assert len({e.id for e in load}) == len(load)
        assert sorted(marks) == sorted(expected)
        for event in load:
            kind = int(event.message.rsplit("-k", 1)[1])
            assert (event.agent, event.error_type, event.severity) == EXPECTED[kind]
            if kind == 0:
                assert event.id == event.message  # E1 keeps its error_id
        assert bridge.bridge.stats.malformed == 0


def test_fuzzed_frames_are_each_recorded_as_malformed_and_the_bridge_keeps_running(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    rng = random.Random(7150)
    with (
        Bridge(nats_server.client, tmp_path) as bridge,
        legacy_pub(bridge.settings.bridge.sub_port) as sock,
    ):
        bridge.wait_joined(sock, "probe-fuzz")
        limit = bridge.settings.bridge.max_message_bytes
        sent = oversized = 0
        for _ in range(300):
            count = rng.choice([1, 1, 2, 3, 5])
            frames = [
                rng.randbytes(rng.choice([0, 1, 7, 100, 5000, 300_000])) for _ in range(count)
            ]
            if count == 2 and rng.random() < 0.3:
                frames[0] = b"ERROR:"  # a real topic with a junk body
            sock.send_multipart(frames)
            sent += 1
            oversized += sum(len(f) for f in frames) > limit
        sock.send_string("ERROR:" + json.dumps({"agent": "after", "message": "still-alive"}))
        deadline = time.monotonic() + 60
        while "still-alive" not in bridge.seen:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert bridge.bridge.running
        stats = bridge.bridge.stats
        # Over errors.bridge.max_message_bytes: dropped unread and counted; the rest recorded.
        assert 0 < oversized < sent
        assert (stats.oversized, stats.malformed) == (oversized, sent - oversized)
        stored = asyncio.run(read_stream(nats_server.client))
        malformed = [s.event for s in stored if s.event.error_type == MALFORMED_TYPE]
        assert len(malformed) == sent - oversized
        assert all(e.details["raw_b64"] is not None for e in malformed)


def test_events_are_republished_for_legacy_subscribers(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    with Bridge(nats_server.client, tmp_path) as bridge:
        ctx = zmq.Context()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"ERROR:")
        sub.connect(f"tcp://127.0.0.1:{bridge.settings.bridge.pub_port}")
        try:
            with legacy_pub(bridge.settings.bridge.sub_port) as sock:
                # Probes are re-published too: the first to reach our SUB proves it has joined.
                deadline = time.monotonic() + 20
                while not sub.poll(100):
                    assert time.monotonic() < deadline
                    sock.send_multipart(framed(3, "join"))
                while sub.poll(300):
                    sub.recv_multipart()
                sock.send_multipart(framed(3, "republished"))
                assert sub.poll(10_000)
                topic, body = sub.recv_multipart()
        finally:
            sub.close(linger=0)
            ctx.term()
        assert topic == b"ERROR:"
        frame = LegacyErrorFrame.model_validate_json(body)
        assert (frame.source, frame.error_type, frame.message) == (
            "AuthenticationAgent",
            "LOGIN_ERROR",
            "republished",
        )
        assert set(json.loads(body)) >= {
            "error_id",
            "source",
            "error_type",
            "message",
            "severity",
            "timestamp",
            "details",
        }


def test_the_stream_is_followed_only_while_a_legacy_subscriber_wants_the_events(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    with Bridge(nats_server.client, tmp_path) as bridge:
        stats = bridge.bridge.stats
        port = bridge.settings.bridge.pub_port
        ctx = zmq.Context()
        try:
            with legacy_pub(bridge.settings.bridge.sub_port) as sock:
                bridge.wait_joined(sock, "nobody-listens")
            assert not stats.republishing
            assert stats.republished == 0  # nothing decoded or sent while nobody listens

            other = ctx.socket(zmq.SUB)
            other.setsockopt(zmq.SUBSCRIBE, b"HEALTH")  # a topic no re-published event has
            other.connect(f"tcp://127.0.0.1:{port}")
            wanting = [ctx.socket(zmq.SUB) for _ in range(2)]
            for sub, topic in zip(wanting, (b"ERR", b""), strict=True):
                sub.setsockopt(zmq.SUBSCRIBE, topic)  # a prefix of b"ERROR:", and everything
                sub.connect(f"tcp://127.0.0.1:{port}")
            wait_for_condition(lambda: stats.republishing)  # ERR is a prefix of ERROR:
            wait_for_condition(lambda: stats.subscribed_topics == 3)

            wanting[0].close(linger=0)
            wait_for_condition(lambda: stats.subscribed_topics == 2)  # ERR unsubscribed
            with legacy_pub(bridge.settings.bridge.sub_port) as sock:
                # The subscriber of everything still gets the events.
                deadline = time.monotonic() + 20
                while not wanting[1].poll(100):
                    assert time.monotonic() < deadline, "re-publishing stopped for the other one"
                    sock.send_multipart(framed(3, "still-wanted"))
            assert wanting[1].recv_multipart()[0] == b"ERROR:"
            assert stats.republishing
            wanting[1].close(linger=0)
            wait_for_condition(lambda: not stats.republishing)  # the last one left
            other.close(linger=0)
        finally:
            ctx.destroy(linger=0)  # closes whatever a failed assertion left open
