"""ResourceScheduler lease benchmark: decisions per second in the core, latency over HTTP.

Part 1 times :class:`LeaseScheduler` (request + release of a lease on recorded RTX 4090 and RTX
3060 readings, each committed to SQLite) against the floor of the same two SQLite commits
without any scheduling, in one run. Part 2 starts a private aisys system (GPUs from the NVML
double: a 12 GiB 3060 on pc2), deploys a no-op Serve application beside it with
ResourceScheduler's replica options, and times ``POST /resources/leases`` and
``DELETE /resources/leases/<id>`` against ``POST`` of the same body to the no-op route, in
alternating blocks. Goal: the POST within 1.3x the no-op POST at p50 (the exit status is 1
when it is not). Ratios are the result; absolute times on a shared machine are noise.

Run with ``.venv/bin/python -m bench.resource_leases [--decisions N] [--requests N]``.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from actors.probe.gpu import RecordedProbe
from actors.probe.models import HostReading
from actors.resources.models import LeaseGrant, LeaseRequest
from actors.resources.scheduler import LeaseScheduler
from actors.resources.store import SqliteLeaseStore
from bench._goals import AT_MOST, Goal, verdict
from bench._system import (
    NOOP,
    REPO_ROOT,
    admin_headers,
    baseline_app,
    bench_settings,
    deploy_with_extra_apps,
    running_system,
)
from cluster.base.constants import APP_RESOURCES
from cluster.base.settings import ResourceSettings

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "nvml"
NOOP_APP, NOOP_ROUTE = "noop", "/noop"
GOAL_RATIO = 1.3


def _reading(host: str, fixture: str) -> HostReading:
    snapshot = RecordedProbe.from_file(FIXTURES / fixture).read()
    return HostReading(
        host=host, taken_at=time.time(), gpus=snapshot.gpus, cpu_percent=0.0,
        memory_percent=0.0, memory_available_mb=0,
    )  # fmt: skip


def core_decisions(count: int, directory: Path) -> float:
    """Lease decisions (a request or a release) per second, 8 leases held throughout."""
    sched = LeaseScheduler(ResourceSettings(), SqliteLeaseStore(directory / "b.db"), time.time)
    sched.observe(_reading("mainpc", "rtx4090_host.json"))
    sched.observe(_reading("pc2", "rtx3060_host.json"))
    held = [sched.request(LeaseRequest(owner="bench", vram_mb=500)).lease_id for _ in range(8)]
    start = time.perf_counter()
    for i in range(count // 2):
        grant = sched.request(LeaseRequest(owner="bench", vram_mb=100 + i % 2000))
        assert isinstance(grant, LeaseGrant)
        sched.release(grant.lease_id)
    elapsed = time.perf_counter() - start
    for lease_id in held:
        sched.release(lease_id)
    return (count // 2 * 2) / elapsed


def sqlite_floor(count: int, directory: Path) -> float:
    """The same commits (an upsert plus an event row, then a delete plus an event row), bare."""
    db = sqlite3.connect(directory / "floor.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE l (id TEXT PRIMARY KEY, r TEXT)")
    db.execute("CREATE TABLE e (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT, r TEXT)")
    record = "x" * 600
    start = time.perf_counter()
    for i in range(count // 2):
        for sql in ("INSERT INTO l VALUES (?, ?)", "DELETE FROM l WHERE id = ? AND r = ?"):
            db.execute("BEGIN IMMEDIATE")
            db.execute(sql, (str(i), record))
            db.execute("INSERT INTO e (id, r) VALUES (?, ?)", (str(i), record))
            db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    return (count // 2 * 2) / elapsed


def _timed(client: httpx.Client, method: str, path: str, **kwargs: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    response = client.request(method, path, **kwargs)
    elapsed = (time.perf_counter() - start) * 1000
    if response.status_code >= 300:
        raise RuntimeError(f"{method} {path} answered {response.status_code}: {response.text}")
    return elapsed, response.json()


def http_latencies(client: httpx.Client, requests: int, block: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"POST lease": [], "DELETE lease": [], "POST noop": []}
    body = {"owner": "bench", "vram_mb": 1000, "host": "pc2"}
    for round_no in range(requests // block):
        order = ["lease", "noop"] if round_no % 2 == 0 else ["noop", "lease"]
        for what in order:
            for _ in range(block):
                if what == "noop":
                    noop_ms, _ = _timed(client, "POST", f"{NOOP_ROUTE}/", json=body)
                    samples["POST noop"].append(noop_ms)
                    continue
                post_ms, grant = _timed(client, "POST", "/resources/leases", json=body)
                delete_ms, _ = _timed(client, "DELETE", f"/resources/leases/{grant['lease_id']}")
                samples["POST lease"].append(post_ms)
                samples["DELETE lease"].append(delete_ms)
    return samples


def _pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def run(args: argparse.Namespace) -> list[Goal]:
    with tempfile.TemporaryDirectory(prefix="aisys-bench-") as tmp:
        floor = sqlite_floor(args.decisions, Path(tmp))
        core = core_decisions(args.decisions, Path(tmp))
    print("ResourceScheduler lease benchmark")
    print(f"core: {args.decisions} decisions (request/release), SQLite write-through")
    print(f"  LeaseScheduler        {core:>10.0f} decisions/s")
    print(f"  bare SQLite commits   {floor:>10.0f} commits/s")
    print(f"  ratio core/floor      {core / floor:>10.2f}")
    if args.requests == 0:
        return []
    # GPUs from the NVML double (a 3060 on pc2), the same with or without a GPU on this machine.
    settings = bench_settings(resources={"nvml_double": str(FIXTURES / "double_hosts.json")})
    with running_system(settings):
        deploy_with_extra_apps(settings, [baseline_app(settings, APP_RESOURCES, NOOP_APP, NOOP)])
        url = f"http://127.0.0.1:{settings.ports.http}"
        with httpx.Client(base_url=url, timeout=30, headers=admin_headers(settings)) as client:
            deadline = time.monotonic() + 60
            while not client.get("/resources/gpus", params={"refresh": True}).json()["gpus"]:
                if time.monotonic() > deadline:
                    raise RuntimeError("the NVML double's GPUs never appeared in /resources/gpus")
            http_latencies(client, args.block * 2, args.block)  # warm-up
            samples = http_latencies(client, args.requests, args.block)
    noop50, noop99 = _pct(samples["POST noop"], 50), _pct(samples["POST noop"], 99)
    print()
    print(f"HTTP: {args.requests} of each through the Serve proxy, alternating blocks")
    print(f"  {'':<16}{'p50 ms':>9}{'p99 ms':>9}{'p50/noop':>10}{'p99/noop':>10}")
    for name, values in samples.items():
        p50, p99 = _pct(values, 50), _pct(values, 99)
        print(f"  {name:<16}{p50:>9.2f}{p99:>9.2f}{p50 / noop50:>10.2f}{p99 / noop99:>10.2f}")
    print("Absolute times on a shared machine are noise; the ratios are the result.")
    lease = _pct(samples["POST lease"], 50) / noop50
    return [Goal("POST lease p50 / no-op POST p50", lease, GOAL_RATIO, AT_MOST)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.resource_leases")
    parser.add_argument("--decisions", type=int, default=20_000, help="core decisions timed")
    parser.add_argument("--requests", type=int, default=400, help="HTTP lease cycles; 0 skips")
    parser.add_argument("--block", type=int, default=50, help="requests per alternating block")
    parser.add_argument("--quick", action="store_true", help="5000 decisions, 200 HTTP cycles")
    args = parser.parse_args(argv)
    if args.quick:
        args.decisions, args.requests = 5000, 200
    try:
        rows = run(args)
    except KeyboardInterrupt:
        print("interrupted; the benchmark's system was stopped", file=sys.stderr)
        return 130
    return verdict("resource_leases", rows) if rows else 0


if __name__ == "__main__":
    sys.exit(main())
