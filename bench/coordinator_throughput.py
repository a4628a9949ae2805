"""Request coordinator throughput: submit -> dispatched -> result, against the same work sent
straight to the agent over ZeroMQ, in one run.

Starts a private aisys system (random ports, temporary data dir) and a no-op ZeroMQ REP agent
in this process, registered with capability ``reasoning``. Then, in alternating rounds:

* coordinator: each client thread POSTs a text request to ``/core/requests`` and long-polls
  ``GET /core/requests/{id}?wait_s=10`` until it has the agent's result (the path a user sees);
* direct: each client thread sends the same TaskDefinition JSON over its own REQ socket to the
  agent and waits for the reply (what the legacy client did, with no queue, breaker or HTTP).

It prints both throughputs, the coordinator's overhead per request and the ratio.

Run with ``.venv/bin/python -m bench.coordinator_throughput [--requests N --threads T]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import zmq

from bench._system import admin_headers, bench_settings, running_system

CORE = "/core"
AGENT_ID = "bench-reasoner"


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


def via_coordinator(client: httpx.Client, i: int) -> float:
    start = time.perf_counter()
    body = {"type": "text", "data": f"hello {i}", "session_id": "bench"}
    submitted = client.post(f"{CORE}/requests", json=body)
    while submitted.status_code == 429:  # queue full: back off briefly, as a client should
        time.sleep(0.005)
        submitted = client.post(f"{CORE}/requests", json=body)
    submitted.raise_for_status()
    request_id = submitted.json()["request_id"]
    while True:
        # Long-poll: the answer comes as soon as the request finished.
        status = client.get(f"{CORE}/requests/{request_id}", params={"wait_s": 10}).json()
        if status["state"] == "succeeded":
            return (time.perf_counter() - start) * 1000
        if status["state"] in ("failed", "cancelled"):
            raise RuntimeError(f"request {request_id} ended {status}")


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


def run(args: argparse.Namespace) -> None:
    settings = bench_settings()
    agent = NoopAgent()
    try:
        with running_system(settings):
            base_url = f"http://127.0.0.1:{settings.ports.http}"
            limits = httpx.Limits(max_connections=args.threads * 2)
            headers = admin_headers(settings)
            with httpx.Client(
                base_url=base_url, timeout=30, limits=limits, headers=headers
            ) as client:
                registration = {
                    "agent_id": AGENT_ID,
                    "host": "127.0.0.1",
                    "port": agent.port,
                    "capabilities": ["reasoning"],
                    "ttl_s": 3600,
                }
                client.post(f"{CORE}/agents", json=registration).raise_for_status()
                coordinator = Sample("coordinator")
                direct = Sample("direct ZeroMQ")
                direct_send = direct_worker(f"tcp://127.0.0.1:{agent.port}")
                coordinated = lambda i: via_coordinator(client, i)  # noqa: E731
                burst(Sample("warm-up"), coordinated, args.warmup, args.threads)
                burst(Sample("warm-up"), direct_send, args.warmup, args.threads)
                per_round = args.requests // args.rounds
                for round_no in range(args.rounds):
                    order = [(coordinator, coordinated), (direct, direct_send)]
                    for sample, work in order if round_no % 2 == 0 else order[::-1]:
                        burst(sample, work, per_round, args.threads)
            report(coordinator, direct, args)
    finally:
        agent.close()


def report(coordinator: Sample, direct: Sample, args: argparse.Namespace) -> None:
    print()
    print("aisys request coordinator throughput (submit -> dispatched -> result)")
    print(
        f"  {len(coordinator.latencies_ms)} requests per path, {args.threads} client threads, "
        f"{args.rounds} alternating rounds; no-op ZeroMQ REP agent in this process"
    )
    print(f"  {'':<16}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for sample in (coordinator, direct):
        print(
            f"  {sample.name:<16}{sample.throughput:>9.0f}{sample.p(50):>9.2f}{sample.p(99):>9.2f}"
        )
    overhead_ms = 1000 / coordinator.throughput - 1000 / direct.throughput
    print(f"  coordinator overhead per request: {overhead_ms:.2f} ms of wall time per request")
    print(
        f"  ratio direct/coordinator throughput: {direct.throughput / coordinator.throughput:.1f}x"
    )
    print(f"  ratio coordinator/direct p50 latency: {coordinator.p(50) / direct.p(50):.1f}x")
    print("Absolute times on a shared machine are noise; the ratios are the result.")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.coordinator_throughput", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--requests", type=int, default=1000, help="timed requests per path")
    parser.add_argument("--threads", type=int, default=8, help="client threads")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds")
    parser.add_argument("--warmup", type=int, default=100, help="untimed requests per path")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
