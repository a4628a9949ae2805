"""ObservabilityHub benchmarks, in one process (no Ray): scrape time and probe sweep time.

1. Scrape: ``generate_latest`` of the hub's registry with 200 registered agents (each probed,
   with error counts and a perf aggregate) and 2 hosts with a GPU each, against the scrape of
   an empty registry of the same collectors.
2. Probe sweep: 100 fake legacy agents (real ZeroMQ REP sockets answering ``{"status": "ok"}``
   from one thread) probed by :class:`AgentProber` (bounded concurrency, Lazy Pirate client),
   printed beside one probe's round trip: a sweep that runs concurrently costs a few round
   trips, not a hundred.

Run with ``.venv/bin/python -m bench.observability [--agents N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path

import zmq
import zmq.asyncio
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from actors.registry.models import Heartbeat
from cluster.settings import AlertingSettings, AnomalySettings, SupervisionSettings
from deployments.core.dispatch import LazyPirateClient
from deployments.core.supervision import zmq_health_probe
from deployments.observability.alert_store import AlertStore
from deployments.observability.alerts import AlertEngine
from deployments.observability.anomaly import AnomalyBank
from deployments.observability.collectors import register_collectors
from deployments.observability.probes import AgentProber
from deployments.observability.state import AgentProbe, HubState, PerfAggregate
from tests.unit._observability_helpers import agent, gpu, host_sample


def _registry(state: HubState, directory: Path) -> CollectorRegistry:
    registry = CollectorRegistry()
    engine = AlertEngine(AlertingSettings(rules=[]), AlertStore(directory / "a.db"), 0.0)
    register_collectors(registry, state, AnomalyBank(AnomalySettings()), engine, time.time)
    return registry


def _scrape_ms(registry: CollectorRegistry, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        generate_latest(registry)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def bench_scrape(agents: int, directory: Path) -> None:
    now = time.time()
    state = HubState()
    for i, host in enumerate(("mainpc", "pc2")):
        state.set_host(host_sample(host, now, gpus=[gpu(0)], ip=f"10.0.0.{i + 1}"))
    records = [agent(f"agent-{i:03d}", host=f"10.0.0.{i % 2 + 1}") for i in range(agents)]
    probes = {
        r.agent_id: AgentProbe(agent_id=r.agent_id, checked_at=now, up=True, latency_s=0.001)
        for r in records
    }
    state.set_agents(records, probes)
    state.error_counts = {r.agent_id: {"error": 1, "warning": 2} for r in records}
    state.perf = [
        PerfAggregate(
            agent=r.agent_id, action="act", count=3, mean_duration_s=0.1, max_duration_s=1
        )
        for r in records
    ]
    full = _registry(state, directory / "full")
    empty = _registry(HubState(), directory / "empty")
    full_ms, empty_ms = _scrape_ms(full, 50), _scrape_ms(empty, 50)
    size = len(generate_latest(full))
    print(f"scrape, {agents} agents + 2 hosts: {full_ms:.2f} ms p50 ({size} bytes)")
    print(f"scrape, empty registry:        {empty_ms:.3f} ms p50")


def _serve(sockets: list[zmq.Socket[bytes]], stop: threading.Event) -> None:
    poller = zmq.Poller()
    for socket in sockets:
        poller.register(socket, zmq.POLLIN)
    while not stop.is_set():
        for socket, _ in poller.poll(50):
            socket.recv()
            socket.send(b'{"status": "ok"}')


async def _probe_times(ports: list[int]) -> tuple[float, float]:
    context = zmq.asyncio.Context()
    settings = SupervisionSettings(probe_timeout_s=2.0, max_concurrent_probes=32)
    client = LazyPirateClient(context, settings.probe_timeout_s, attempts=1)
    probe = zmq_health_probe(client, settings.probe_timeout_s)

    async def mark(agent_id: str, heartbeat: Heartbeat) -> None:
        raise AssertionError(f"{agent_id} was marked {heartbeat.status}: every agent is up")

    prober = AgentProber(settings, probe, mark)
    records = [agent(f"a{i}", host="127.0.0.1", health_check_port=p) for i, p in enumerate(ports)]
    await prober.probe(records)  # connect every socket once, as a running hub has
    singles, sweeps = [], []
    for _ in range(5):
        started = time.perf_counter()
        assert await probe(f"tcp://127.0.0.1:{ports[0]}") is None
        singles.append(time.perf_counter() - started)
        started = time.perf_counter()
        results = await prober.probe(records)
        sweeps.append(time.perf_counter() - started)
        assert all(r.up for r in results.values()) and len(results) == len(ports)
    client.close()
    context.term()
    return statistics.median(singles), statistics.median(sweeps)


def bench_sweep(agents: int) -> None:
    context = zmq.Context()
    sockets = []
    ports = []
    for _ in range(agents):
        socket = context.socket(zmq.REP)
        socket.setsockopt(zmq.LINGER, 0)
        ports.append(socket.bind_to_random_port("tcp://127.0.0.1"))
        sockets.append(socket)
    stop = threading.Event()
    thread = threading.Thread(target=_serve, args=(sockets, stop), daemon=True)
    thread.start()
    try:
        single, sweep = asyncio.run(_probe_times(ports))
    finally:
        stop.set()
        thread.join(timeout=5)
        for socket in sockets:
            socket.close(linger=0)
        context.term()
    print(f"one probe round trip:         {single * 1000:.2f} ms p50")
    print(f"sweep of {agents} agents:          {sweep * 1000:.2f} ms p50")
    print(f"sweep / round trip:           {sweep / single:.1f} (sequential would be {agents})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=200, help="agents in the scrape")
    parser.add_argument("--probed", type=int, default=100, help="fake agents in the sweep")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aisys-bench-") as directory:
        for name in ("full", "empty"):
            (Path(directory) / name).mkdir()
        bench_scrape(args.agents, Path(directory))
    bench_sweep(args.probed)


if __name__ == "__main__":
    main()
