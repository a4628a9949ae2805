"""Lazy Pirate REQ client and the health probe against a real in-process ZeroMQ REP socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
import zmq
import zmq.asyncio

from cluster.base.errors import DispatchFailed
from deployments.core.dispatch import LazyPirateClient, tcp_endpoint
from deployments.core.supervision import zmq_health_probe
from tests.conftest import free_port
from tests.integration._zmq_agent import ZmqAgent

pytestmark = pytest.mark.integration


T = TypeVar("T")


def run(coro_factory: Callable[[LazyPirateClient], Awaitable[T]]) -> T:
    async def main() -> T:
        context = zmq.asyncio.Context()
        client = LazyPirateClient(context, timeout_s=0.3, attempts=3)
        try:
            return await coro_factory(client)
        finally:
            client.close()
            context.term()

    return asyncio.run(asyncio.wait_for(main(), 20))


def test_round_trips_reuse_the_socket() -> None:
    agent = ZmqAgent().start()
    assert agent.port is not None
    endpoint = tcp_endpoint("127.0.0.1", agent.port)

    async def body(client: LazyPirateClient) -> list[bytes]:
        return [await client.request(endpoint, b'{"action": "health_check"}') for _ in range(5)]

    try:
        replies = run(body)
    finally:
        agent.close()
    assert [json.loads(r)["status"] for r in replies] == ["ok"] * 5
    assert len(agent.received) == 5


def test_a_lost_reply_is_retried_on_a_fresh_socket() -> None:
    """The server drops the first request unanswered; the second attempt gets through."""
    context = zmq.Context()
    server = context.socket(zmq.ROUTER)  # a ROUTER may ignore a request, unlike a REP
    server.setsockopt(zmq.LINGER, 0)
    port = server.bind_to_random_port("tcp://127.0.0.1")
    seen: list[bytes] = []

    async def body(client: LazyPirateClient) -> bytes:
        async def serve() -> None:
            while len(seen) < 2:
                if server.poll(10):
                    identity, empty, payload = server.recv_multipart()
                    seen.append(payload)
                    if len(seen) == 2:
                        server.send_multipart([identity, empty, b'{"status": "ok"}'])
                await asyncio.sleep(0.005)

        server_task = asyncio.create_task(serve())
        reply = await client.request(f"tcp://127.0.0.1:{port}", b"ping")
        await server_task
        return reply

    try:
        assert run(body) == b'{"status": "ok"}'
    finally:
        server.close(linger=0)
        context.term()
    assert seen == [b"ping", b"ping"]


def test_no_server_fails_after_every_attempt() -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"

    async def body(client: LazyPirateClient) -> None:
        await client.request(endpoint, b"ping")

    with pytest.raises(DispatchFailed, match=r"no reply within 0.3s, 3 attempt\(s\)"):
        run(body)


def test_health_probe_says_why_an_endpoint_is_unhealthy() -> None:
    agent = ZmqAgent().start()
    assert agent.port is not None
    alive = tcp_endpoint("127.0.0.1", agent.port)
    dead = f"tcp://127.0.0.1:{free_port()}"

    async def body(client: LazyPirateClient) -> tuple[str | None, str | None]:
        probe = zmq_health_probe(client, timeout_s=0.3, attempts=1)
        return await probe(alive), await probe(dead)

    try:
        healthy, silent = run(body)
    finally:
        agent.close()
    assert healthy is None
    assert silent is not None and silent.startswith(f"health endpoint {dead}: no reply")


@pytest.mark.parametrize(("attempts", "up"), [(2, True), (1, False)])
def test_the_health_probe_retries_a_dropped_request(attempts: int, up: bool) -> None:
    """A health server that leaves the first request unanswered and answers the next: the
    probe's Lazy Pirate retry gets the reply; a single attempt does not."""
    context = zmq.Context()
    server = context.socket(zmq.ROUTER)  # a ROUTER may ignore a request, unlike a REP
    server.setsockopt(zmq.LINGER, 0)
    port = server.bind_to_random_port("tcp://127.0.0.1")
    seen: list[bytes] = []

    async def body(client: LazyPirateClient) -> str | None:
        async def serve() -> None:
            while len(seen) < attempts:
                if server.poll(10):
                    identity, empty, payload = server.recv_multipart()
                    seen.append(payload)
                    if len(seen) == 2:
                        server.send_multipart([identity, empty, b'{"status": "healthy"}'])
                await asyncio.sleep(0.005)

        server_task = asyncio.create_task(serve())
        probe = zmq_health_probe(client, timeout_s=0.3, attempts=attempts)
        problem = await probe(f"tcp://127.0.0.1:{port}")
        await server_task
        return problem

    try:
        problem = run(body)
    finally:
        server.close(linger=0)
        context.term()
    assert (problem is None) is up, problem
    assert len(seen) == attempts
    assert all(json.loads(frame) == {"action": "health_check"} for frame in seen)
