"""Request coordinator: submit -> dispatched -> result against its floor, in one run.

Starts a private aisys system (random ports, temporary data dir) and a no-op ZeroMQ REP agent
in this process, registered with capability ``reasoning``, and deploys the floor
(:mod:`bench._zmq_hop`: one no-op Serve hop with CoreOrchestrator's replica options that makes
one ZeroMQ round trip to the same agent). Then, in rounds of rotating order, 8 client threads:

* submit-and-wait: ``POST /core/requests/wait`` (one hop; the path the goal is about);
* floor: ``POST /zmqhop/``;
* submit + poll: ``POST /core/requests`` then a long-poll ``GET /core/requests/{id}?wait_s=10``
  (two hops; for the record);
* direct ZeroMQ: the same TaskDefinition JSON over the client's own REQ socket (for the record).

Goal: submit-and-wait within 1.3x the floor in p50 latency and in throughput; the exit status
is 1 when it is not met.

Run with ``make bench`` or ``.venv/bin/python -m bench.coordinator_throughput [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import zmq

from bench._goals import AT_MOST, Goal, verdict
from bench._system import (
    admin_headers,
    baseline_app,
    bench_settings,
    deploy_with_extra_apps,
    running_system,
)
from cluster.base.constants import APP_CORE

CORE = "/core"
AGENT_ID = "bench-reasoner"
FLOOR_APP = "zmqhop"
#: submit-and-wait at most this many times the floor, in p50 latency and in throughput.
GOAL = 1.3


class NoopAgent:
    """A REP agent answering every frame with a fixed success AgentResponse."""

    REPLY = b'{"status": "success", "message": "noop", "data": null, "metadata": {}}'

    def __init__(self) -> None:
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.REP)
        self._socket.setsockopt(zmq.LINGER, 0)
        self.port = self._socket.bind_to_random_port("tcp://127.0.0.1")
        self.handled = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            if self._socket.poll(50):
                self._socket.recv()
                self._socket.send(self.REPLY)
                self.handled += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close(linger=0)
        self._context.term()


@dataclass
class Sample:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.elapsed_s

    def p(self, q: int) -> float:
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[q - 1]


def task_frame(i: int) -> bytes:
    """A TaskDefinition as the coordinator sends it (same fields and size)."""
    frame = {
        "task_id": f"task_{i:032x}",
        "agent_id": "RequestCoordinator",
        "task_type": "text_processing",
        "priority": 2,
        "parameters": {
            "request": {
                "context": {},
                "metadata": {"user_type": "standard", "urgency": "normal", "source": None},
                "user_id": None,
                "session_id": "bench",
                "type": "text",
                "data": f"hello {i}",
            }
        },
        "dependencies": [],
        "timeout_seconds": None,
        "created_at": "2026-01-01T00:00:00+00:00",
        "scheduled_for": None,
        "source_agent": "RequestCoordinator",
        "request_id": f"req_{i:032x}",
        "timestamp": 1767225600.0,
        "version": 1,
    }
    return json.dumps(frame, separators=(",", ":")).encode()


def _submit(client: httpx.Client, path: str, body: dict[str, str]) -> httpx.Response:
    response = client.post(path, json=body)
    while response.status_code == 429:  # queue full: back off briefly, as a client should
        time.sleep(0.005)
        response = client.post(path, json=body)
    response.raise_for_status()
    return response


def _poll_until_finished(client: httpx.Client, request_id: str) -> None:
    while True:
        # Long-poll: the answer comes as soon as the request finished.
        status = client.get(f"{CORE}/requests/{request_id}", params={"wait_s": 10}).json()
        if status["state"] == "succeeded":
            return
        if status["state"] in ("failed", "cancelled"):
            raise RuntimeError(f"request {request_id} ended {status}")


def via_submit_and_poll(client: httpx.Client, i: int) -> float:
    """``POST /core/requests``, then long-poll ``GET /core/requests/{id}``: two hops."""
    start = time.perf_counter()
    body = {"type": "text", "data": f"hello {i}", "session_id": "bench"}
    request_id = _submit(client, f"{CORE}/requests", body).json()["request_id"]
    _poll_until_finished(client, request_id)
    return (time.perf_counter() - start) * 1000


def via_submit_and_wait(client: httpx.Client, i: int) -> float:
    """``POST /core/requests/wait``: one hop; a 202 (not finished in time) is polled on."""
    start = time.perf_counter()
    body = {"type": "text", "data": f"hello {i}", "session_id": "bench"}
    response = _submit(client, f"{CORE}/requests/wait?timeout_s=30", body)
    status = response.json()
    if response.status_code == 202:
        _poll_until_finished(client, status["request_id"])
    elif status["state"] != "succeeded":
        raise RuntimeError(f"request {status['request_id']} ended {status}")
    return (time.perf_counter() - start) * 1000


def via_floor(client: httpx.Client, i: int) -> float:
    """The floor: one no-op Serve hop that makes one ZeroMQ round trip to the same agent."""
    start = time.perf_counter()
    body = {"type": "text", "data": f"hello {i}", "session_id": "bench"}
    response = client.post(f"/{FLOOR_APP}/", json=body)
    response.raise_for_status()
    return (time.perf_counter() - start) * 1000


def direct_worker(endpoint: str) -> Callable[[int], float]:
    local = threading.local()

    def send(i: int) -> float:
        if not hasattr(local, "socket"):
            local.socket = zmq.Context.instance().socket(zmq.REQ)
            local.socket.setsockopt(zmq.LINGER, 0)
            local.socket.connect(endpoint)
        start = time.perf_counter()
        local.socket.send(task_frame(i))
        if not local.socket.poll(5000):
            raise RuntimeError("the agent did not answer within 5 s")
        local.socket.recv()
        return (time.perf_counter() - start) * 1000

    return send


def burst(sample: Sample, work: Callable[[int], float], requests: int, threads: int) -> None:
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        sample.latencies_ms.extend(pool.map(work, range(requests)))
    sample.elapsed_s += time.perf_counter() - start


def run(args: argparse.Namespace) -> int:
    settings = bench_settings()
    agent = NoopAgent()
    try:
        with running_system(settings):
            floor = baseline_app(
                settings,
                APP_CORE,
                FLOOR_APP,
                ("bench._zmq_hop:build_app", "ZmqHop"),
                {"endpoint": f"tcp://127.0.0.1:{agent.port}"},
            )
            deploy_with_extra_apps(settings, [floor])
            base_url = f"http://127.0.0.1:{settings.ports.http}"
            limits = httpx.Limits(max_connections=args.threads * 2)
            headers = admin_headers(settings)
            with httpx.Client(
                base_url=base_url, timeout=60, limits=limits, headers=headers
            ) as client:
                registration = {
                    "agent_id": AGENT_ID,
                    "host": "127.0.0.1",
                    "port": agent.port,
                    "capabilities": ["reasoning"],
                    "ttl_s": 3600,
                }
                client.post(f"{CORE}/agents", json=registration).raise_for_status()
                paths: list[tuple[Sample, Callable[[int], float]]] = [
                    (Sample("submit-and-wait"), lambda i: via_submit_and_wait(client, i)),
                    (Sample("floor"), lambda i: via_floor(client, i)),
                    (Sample("submit + poll"), lambda i: via_submit_and_poll(client, i)),
                    (Sample("direct ZeroMQ"), direct_worker(f"tcp://127.0.0.1:{agent.port}")),
                ]
                for _, work in paths:
                    burst(Sample("warm-up"), work, args.warmup, args.threads)
                per_round = args.requests // args.rounds
                for round_no in range(args.rounds):
                    # A different order each round, so machine noise lands on every path.
                    shift = round_no % len(paths)
                    for sample, work in paths[shift:] + paths[:shift]:
                        burst(sample, work, per_round, args.threads)
            return report([sample for sample, _ in paths], args)
    finally:
        agent.close()


def report(samples: list[Sample], args: argparse.Namespace) -> int:
    waited, floor, polled, direct = samples
    print()
    print("aisys request coordinator throughput (submit -> dispatched -> result)")
    print(
        f"  {len(waited.latencies_ms)} requests per path, {args.threads} client threads, "
        f"{args.rounds} rounds in rotating order; no-op ZeroMQ REP agent in this process"
    )
    print(f"  {'':<18}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for sample in samples:
        print(
            f"  {sample.name:<18}{sample.throughput:>9.0f}{sample.p(50):>9.2f}{sample.p(99):>9.2f}"
        )
    print(
        "  floor: one no-op Serve hop (CoreOrchestrator's replica options) making one ZeroMQ "
        "round trip to the same agent; submit + poll pays two hops, direct ZeroMQ none"
    )
    print(
        f"  for the record: submit + poll p50 {polled.p(50) / floor.p(50):.2f}x the floor, "
        f"direct ZeroMQ {waited.p(50) / direct.p(50):.0f}x faster than submit-and-wait"
    )
    rows = [
        Goal("submit-and-wait p50 / floor p50", waited.p(50) / floor.p(50), GOAL, AT_MOST),
        Goal(
            "floor req/s / submit-and-wait req/s",
            floor.throughput / waited.throughput,
            GOAL,
            AT_MOST,
        ),
    ]
    return verdict("coordinator_throughput", rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.coordinator_throughput", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--requests", type=int, default=1000, help="timed requests per path")
    parser.add_argument("--threads", type=int, default=8, help="client threads")
    parser.add_argument("--rounds", type=int, default=4, help="rounds (rotating order)")
    parser.add_argument("--warmup", type=int, default=100, help="untimed requests per path")
    parser.add_argument("--quick", action="store_true", help="300 requests, 3 rounds, 40 warm-up")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.rounds, args.warmup = 300, 3, 40
    try:
        return run(args)
    except KeyboardInterrupt:
        print("interrupted; the benchmark's system was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
