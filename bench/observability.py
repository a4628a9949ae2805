"""ObservabilityHub benchmarks, in one process (no Ray): scrape time and probe sweep time.

1. Scrape: ``generate_latest`` of the hub's registry with 200 registered agents (each probed,
   with error counts and a perf aggregate) and 2 hosts with a GPU each, printed beside the
   scrape of an empty registry of the same collectors as a ratio.
2. Probe sweep: 100 fake legacy agents (real ZeroMQ REP sockets answering ``{"status": "ok"}``
   from one thread) probed by :class:`AgentProber` (bounded concurrency, Lazy Pirate client),
   printed beside one probe's round trip: a sweep that runs concurrently costs a few round
   trips, not a hundred.
3. Dead sweep: 100 agents that never answer (REP-compatible ROUTER sockets that read and drop
   every request), probed with the hub's default timeout and attempts, printed beside one probe
   timeout: the sweep is bounded by about timeout x attempts, not 100 timeouts.

Goals (the exit status is 1 when one is missed): the sweep at most half of probing one agent
after another (sweep / round trip <= agents / 2); the dead sweep within 1.3x attempts x timeout.
The scrape is printed for the record (its ratio is the text of 200 agents' series).

Run with ``.venv/bin/python -m bench.observability [--agents N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import zmq
import zmq.asyncio
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from actors.registry.models import Heartbeat
from bench._goals import AT_MOST, Goal, verdict
from cluster.base.settings import (
    AlertingSettings,
    AnomalySettings,
    ObservabilitySettings,
    SupervisionSettings,
)
from deployments.core.dispatch import LazyPirateClient
from deployments.core.supervision import zmq_health_probe
from deployments.observability.alert_store import AlertStore
from deployments.observability.alerts import AlertEngine
from deployments.observability.anomaly import AnomalyBank
from deployments.observability.collectors import register_collectors
from deployments.observability.probes import AgentProber
from deployments.observability.state import AgentProbe, HubState, PerfAggregate
from tests.unit._observability_helpers import agent, gpu, host_sample

T = TypeVar("T")


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
    print(f"scrape {agents} agents / empty:    {full_ms / empty_ms:.1f}")


def _serve(sockets: list[zmq.Socket[bytes]], stop: threading.Event, answer: bool) -> None:
    poller = zmq.Poller()
    for socket in sockets:
        poller.register(socket, zmq.POLLIN)
    while not stop.is_set():
        for socket, _ in poller.poll(50):
            if answer:
                socket.recv()
                socket.send(b'{"status": "ok"}')
            else:
                socket.recv_multipart()  # a ROUTER may drop a request, unlike a REP


async def _ignore_mark(agent_id: str, heartbeat: Heartbeat) -> None:
    del agent_id, heartbeat  # no registry here: the dead agents' marks go nowhere


async def _probe_times(ports: list[int]) -> tuple[float, float]:
    context = zmq.asyncio.Context()
    settings = ObservabilitySettings().probes
    client = LazyPirateClient(context, settings.probe_timeout_s, settings.probe_attempts)
    probe = zmq_health_probe(client, settings.probe_timeout_s, settings.probe_attempts)

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


async def _dead_sweep_time(ports: list[int], settings: SupervisionSettings) -> float:
    context = zmq.asyncio.Context()
    client = LazyPirateClient(context, settings.probe_timeout_s, settings.probe_attempts)
    probe = zmq_health_probe(client, settings.probe_timeout_s, settings.probe_attempts)
    prober = AgentProber(settings, probe, _ignore_mark)
    records = [agent(f"d{i}", host="127.0.0.1", health_check_port=p) for i, p in enumerate(ports)]
    started = time.perf_counter()
    results = await prober.probe(records)
    elapsed = time.perf_counter() - started
    assert len(results) == len(ports) and not any(r.up for r in results.values())
    client.close()
    context.term()
    return elapsed


def _fake_agents(count: int, answer: bool, run: Callable[[list[int]], T]) -> T:
    context = zmq.Context()
    sockets = []
    ports = []
    for _ in range(count):
        socket = context.socket(zmq.REP if answer else zmq.ROUTER)
        socket.setsockopt(zmq.LINGER, 0)
        ports.append(socket.bind_to_random_port("tcp://127.0.0.1"))
        sockets.append(socket)
    stop = threading.Event()
    thread = threading.Thread(target=_serve, args=(sockets, stop, answer), daemon=True)
    thread.start()
    try:
        return run(ports)
    finally:
        stop.set()
        thread.join(timeout=5)
        for socket in sockets:
            socket.close(linger=0)
        context.term()


def bench_sweep(agents: int) -> Goal:
    single, sweep = _fake_agents(agents, True, lambda ports: asyncio.run(_probe_times(ports)))
    print(f"one probe round trip:         {single * 1000:.2f} ms p50")
    print(f"sweep of {agents} agents:          {sweep * 1000:.2f} ms p50")
    print(f"sweep / round trip:           {sweep / single:.1f} (sequential would be {agents})")
    # Concurrent: at most half of what probing one agent after another costs.
    return Goal("sweep / one round trip", sweep / single, agents / 2, AT_MOST)


def bench_dead_sweep(agents: int) -> Goal:
    settings = ObservabilitySettings().probes
    timeout = settings.probe_timeout_s
    dead = _fake_agents(agents, False, lambda ports: asyncio.run(_dead_sweep_time(ports, settings)))
    attempts = settings.probe_attempts
    print(f"one probe timeout:            {timeout * 1000:.0f} ms x {attempts} attempts")
    print(f"sweep of {agents} dead agents:     {dead * 1000:.0f} ms")
    print(
        f"dead sweep / probe timeout:   {dead / timeout:.2f} (attempts {attempts}, sequential "
        f"would be {agents * attempts}; sweep period {settings.sweep_interval_s:g} s)"
    )
    # Bounded by one timeout per attempt (plus 30 %), not by the number of agents.
    return Goal("dead sweep / one probe timeout", dead / timeout, attempts * 1.3, AT_MOST)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=200, help="agents in the scrape")
    parser.add_argument("--probed", type=int, default=100, help="fake agents in the sweep")
    parser.add_argument("--quick", action="store_true", help="the same (it takes seconds)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="aisys-bench-") as directory:
        for name in ("full", "empty"):
            (Path(directory) / name).mkdir()
        bench_scrape(args.agents, Path(directory))
    rows = [bench_sweep(args.probed), bench_dead_sweep(args.probed)]
    return verdict("observability", rows)


if __name__ == "__main__":
    sys.exit(main())
