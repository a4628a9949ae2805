"""The 7150 bridge's bounds with real sockets and no NATS: message size and queue depth.

The publisher is a stand-in that records what reaches it, so what is measured is the bridge's
own reading: a message over ``errors.bridge.max_message_bytes`` is dropped and counted, one
frame over 16 times that drops the connection unread, and the rest go through.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import zmq
import zmq.asyncio

from actors.errors.models import ErrorEvent
from cluster.base.settings import ErrorBridgeSettings
from legacy_gateway.error_bridge import ErrorBridge
from tests.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class _Result:
    def __init__(self, stored: int) -> None:
        self.stored, self.spooled = stored, 0


class RecordingPublisher:
    """What the bridge needs of an ErrorPublisher; never connected, so nothing re-publishes."""

    def __init__(self) -> None:
        self.events: list[ErrorEvent] = []

    async def publish(self, batch: list[ErrorEvent]) -> _Result:
        self.events.extend(batch)
        return _Result(len(batch))

    async def wait_connected(self, timeout: float | None = None) -> bool:  # noqa: ARG002
        await asyncio.Event().wait()
        return False


def test_bridge_defaults_are_bounded() -> None:
    s = ErrorBridgeSettings()
    assert (s.receive_hwm, s.max_message_bytes, s.queue_depth) == (1000, 64 * 1024, 1000)


async def test_oversized_messages_are_dropped_and_counted_and_the_bridge_goes_on() -> None:
    settings = ErrorBridgeSettings(
        sub_port=free_port(), pub_port=free_port(), bind="127.0.0.1", max_message_bytes=4096
    )
    publisher = RecordingPublisher()
    bridge = ErrorBridge(publisher, settings, max_event_bytes=256 * 1024)  # type: ignore[arg-type]
    bridge.start()
    ctx = zmq.asyncio.Context()
    try:
        pub = ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.LINGER, 0)
        pub.connect(f"tcp://127.0.0.1:{settings.sub_port}")

        def frame(message: str) -> bytes:
            return ("ERROR:" + json.dumps({"agent": "a", "message": message})).encode()

        deadline = time.monotonic() + 20
        while not any(e.message == "probe" for e in publisher.events):  # the slow joiner
            assert time.monotonic() < deadline, "bridge never received a probe"
            await pub.send(frame("probe"))
            await asyncio.sleep(0.05)
        # 40 frames of 1000 bytes: each under the limit, 40 000 bytes in all.
        for _ in range(5):
            await pub.send_multipart([frame("big"), *[b"x" * 1000] * 40])
        await pub.send(frame("after"))
        while not any(e.message == "after" for e in publisher.events):
            assert time.monotonic() < deadline, "the bridge stopped after the oversized ones"
            await asyncio.sleep(0.05)
        assert bridge.stats.oversized == 5
        assert not any(e.message == "big" for e in publisher.events)
        assert bridge.running
    finally:
        ctx.destroy(linger=0)
        await bridge.close()


def _sub_options(bridge: Any) -> tuple[int, int]:
    sock = bridge._sub
    return sock.getsockopt(zmq.RCVHWM), sock.getsockopt(zmq.MAXMSGSIZE)


async def test_the_sub_socket_carries_the_hwm_and_frame_limit() -> None:
    settings = ErrorBridgeSettings(
        sub_port=free_port(), pub_port=free_port(), bind="127.0.0.1", receive_hwm=123
    )
    bridge = ErrorBridge(RecordingPublisher(), settings, 256 * 1024)  # type: ignore[arg-type]
    bridge.start()
    try:
        assert _sub_options(bridge) == (123, 16 * 64 * 1024)  # frames: 16 x the message cap
        assert bridge._queue.maxsize == 1000
    finally:
        await bridge.close()
