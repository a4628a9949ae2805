"""ErrorBus throughput and latency against a raw nats-py publish loop, in one run.

Starts a private aisys system (random ports, temporary data dir) and measures, against its one
nats-server:

* raw: a nats-py JetStream ``publish_async`` loop into a stream of the same configuration
  (file storage, the same ``max_bytes``), every ack awaited: the baseline. JetStream reserves a
  stream's ``max_bytes`` in the store when the stream is created, and the default store is
  already reserved by ``ERRORS`` and ``LOGS``, so the private system's store is raised by one
  ``ERRORS`` stream (:func:`store_with_room_for_baseline`, printed) rather than the baseline
  given a smaller limit: the two streams then differ only in name and subjects;
* legacy: 8 ZeroMQ PUB sockets sending the legacy framings to the bridge port; counted once the
  ``ERRORS`` stream holds (and has acknowledged) every event;
* http: ``POST /errors/`` with batches from 4 concurrent clients;
* latency: one legacy message at a time, from the ZeroMQ send to a NATS subscriber.

and prints events/s with the ratio to the raw loop, and latency p50/p99. Goal: each path at
least half the raw loop's rate, every event stored (a path is counted once the stream holds all
of its events); the exit status is 1 when a goal is missed.

Run with ``.venv/bin/python -m bench.errorbus_throughput [--events N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import zmq
from nats.aio.msg import Msg

from actors.errors.models import ErrorEvent
from actors.errors.stream import stream_config
from bench._goals import AT_LEAST, Goal, verdict
from bench._system import admin_headers, bench_settings, is_shared, running_system
from cluster.base.constants import ERRORS_STREAM
from cluster.base.nats_client import NatsClient, nats_client
from cluster.base.settings import NatsSettings, Settings

PUBLISHERS = 8
HTTP_CLIENTS = 4
HTTP_BATCH = 100
#: Each path at least this share of the raw acked-publish loop's rate.
GOAL_SHARE = 0.5


def _payload(i: int) -> bytes:
    body = {"timestamp": time.time(), "agent": f"bench{i % 8}", "error_type": "bench",
            "message": f"bench event {i}", "severity": "ERROR"}  # fmt: skip
    return f"ERROR:{json.dumps(body)}".encode()


def store_with_room_for_baseline(settings: Settings) -> NatsSettings:
    """``settings.nats`` with a store that holds one more stream of ``ERRORS``'s ``max_bytes``.

    JetStream refuses a stream whose ``max_bytes`` does not fit in what the store has left
    (error 10047), and the default store is what ``ERRORS`` and ``LOGS`` reserve plus little.
    """
    extra = settings.errors.max_stream_mb
    return settings.nats.model_copy(update={"max_store_mb": settings.nats.max_store_mb + extra})


async def raw_loop(settings: Settings, broker: NatsClient, count: int) -> float:
    """Events/s of nats-py publish_async into a stream configured like ERRORS."""
    nc = await broker.connect()
    js = nc.jetstream()
    config = stream_config(settings.errors)
    await js.add_stream(dataclasses.replace(config, name="BENCH_RAW", subjects=["benchraw.>"]))
    try:
        payloads = [
            ErrorEvent(agent=f"bench{i % 8}", message=f"bench event {i}").model_dump_json().encode()
            for i in range(count)
        ]
        start = time.perf_counter()
        futures = [
            await js.publish_async(
                f"benchraw.error.bench{i % 8}", p, headers={"Nats-Msg-Id": str(i)}
            )
            for i, p in enumerate(payloads)
        ]
        await asyncio.gather(*futures)
        elapsed = time.perf_counter() - start
    finally:
        await js.delete_stream("BENCH_RAW")
        await nc.close()
    return count / elapsed


async def _stored(broker: NatsClient) -> int:
    nc = await broker.connect()
    try:
        return int((await nc.jetstream().stream_info(ERRORS_STREAM)).state.messages)
    finally:
        await nc.close()


def _join(pub: zmq.Socket[bytes], broker: NatsClient, base: int) -> int:
    """Send probes until the bridge stores one (ZeroMQ slow joiner); return the new count."""
    while True:
        pub.send(_payload(-1))
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            now = asyncio.run(_stored(broker))
            if now > base:
                return now
            time.sleep(0.05)


def legacy_rate(settings: Settings, broker: NatsClient, count: int) -> float:
    """Events/s from 8 legacy PUB sockets until the stream holds every event."""
    ctx = zmq.Context()
    socks = []
    base = asyncio.run(_stored(broker))
    for _ in range(PUBLISHERS):
        sock = ctx.socket(zmq.PUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.connect(f"tcp://127.0.0.1:{settings.errors.bridge.sub_port}")
        base = _join(sock, broker, base)
        socks.append(sock)
    time.sleep(1.0)  # let the last probes settle so they are not counted below
    base = asyncio.run(_stored(broker))
    per = count // PUBLISHERS
    start = time.perf_counter()

    def send(sock: zmq.Socket[bytes]) -> None:
        for i in range(per):
            sock.send(_payload(i))

    threads = [threading.Thread(target=send, args=(s,)) for s in socks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    while asyncio.run(_stored(broker)) < base + per * PUBLISHERS:
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    for sock in socks:
        sock.close(linger=0)
    ctx.term()
    return per * PUBLISHERS / elapsed


def http_rate(settings: Settings, count: int) -> float:
    """Events/s of POST /errors/ with batches, from several clients at once."""
    batches = count // HTTP_BATCH
    base = f"http://127.0.0.1:{settings.ports.http}"

    def post(client: httpx.Client, n: int) -> None:
        events = [{"agent": "benchhttp", "message": f"h{n}-{i}"} for i in range(HTTP_BATCH)]
        client.post("/errors/", json={"events": events}).raise_for_status()

    with httpx.Client(base_url=base, timeout=60, headers=admin_headers(settings)) as client:
        post(client, -1)  # warm the connection and the route
        with ThreadPoolExecutor(HTTP_CLIENTS) as pool:
            start = time.perf_counter()
            list(pool.map(lambda n: post(client, n), range(batches)))
            elapsed = time.perf_counter() - start
    return batches * HTTP_BATCH / elapsed


async def latency(settings: Settings, broker: NatsClient, samples: int) -> list[float]:
    """Milliseconds from a legacy ZeroMQ send to a NATS subscriber's callback."""
    nc = await broker.connect()
    arrived: dict[str, float] = {}
    got = asyncio.Event()

    async def on_msg(msg: Msg) -> None:
        arrived[json.loads(msg.data)["message"]] = time.perf_counter()
        got.set()

    await nc.subscribe("errors.*.latency", cb=on_msg)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"tcp://127.0.0.1:{settings.errors.bridge.sub_port}")
    body = {"agent": "latency", "error_type": "bench", "severity": "ERROR"}
    while not arrived:  # slow joiner
        got.clear()
        sock.send_string("ERROR:" + json.dumps({**body, "message": "join"}))
        try:
            await asyncio.wait_for(got.wait(), 0.5)
        except TimeoutError:
            continue
    results = []
    for i in range(samples):
        got.clear()
        sent = time.perf_counter()
        sock.send_string("ERROR:" + json.dumps({**body, "message": f"l{i}"}))
        await asyncio.wait_for(got.wait(), 10)
        results.append((arrived[f"l{i}"] - sent) * 1000)
    sock.close(linger=0)
    ctx.term()
    await nc.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--latency-samples", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="6000 events, 100 latency samples")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.latency_samples = 6000, 100
    settings = bench_settings()  # random bridge ports too
    default_store = NatsSettings().max_store_mb
    if not is_shared(settings):  # bench.quick's shared system has the room already
        settings = settings.model_copy(update={"nats": store_with_room_for_baseline(settings)})
    print(
        f"baseline stream BENCH_RAW configured like ERRORS (max_bytes "
        f"{settings.errors.max_stream_mb} MiB); the private NATS store is "
        f"{settings.nats.max_store_mb} MiB instead of {default_store} MiB to hold it beside "
        "ERRORS and LOGS",
        flush=True,
    )
    with running_system(settings):
        broker = nats_client(settings)
        raw = asyncio.run(raw_loop(settings, broker, args.events))
        legacy = legacy_rate(settings, broker, args.events)
        http = http_rate(settings, args.events)
        lat = asyncio.run(latency(settings, broker, args.latency_samples))
    q = statistics.quantiles(lat, n=100, method="inclusive")
    print(f"raw nats-py JetStream publish_async: {raw:10.0f} events/s")
    print(
        f"legacy ZeroMQ -> bridge -> stream:    {legacy:10.0f} events/s  ratio {legacy / raw:.3f}"
    )
    print(
        f"HTTP POST /errors (batch {HTTP_BATCH}):     {http:10.0f} events/s  ratio {http / raw:.3f}"
    )
    print(f"ZeroMQ publish -> NATS subscriber:    p50 {q[49]:.2f} ms  p99 {q[98]:.2f} ms")
    rows = [
        Goal("legacy bridge events/s / raw events/s", legacy / raw, GOAL_SHARE, AT_LEAST),
        Goal("POST /errors/ events/s / raw events/s", http / raw, GOAL_SHARE, AT_LEAST),
    ]
    return verdict("errorbus_throughput", rows)


if __name__ == "__main__":
    sys.exit(main())
