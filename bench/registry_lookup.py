"""Registry lookup latency: ``GET /core/agents/<id>`` against a no-op Serve route, one run.

Starts a private aisys system (random ports, temporary data dir), deploys a no-op FastAPI
application beside CoreOrchestrator in the same cluster (same host tag, same replica options),
registers one agent and times both routes through the same Serve HTTP proxy with one keep-alive
client, in alternating blocks so machine noise lands on both. The registry answers lookups from
its in-replica cache, so it should cost about what Serve itself costs: the goal is a ratio
(registry / no-op) of at most 1.2 at p50 and p99.

Run with ``make bench`` or ``.venv/bin/python -m bench.registry_lookup [--requests N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from bench._goals import AT_LEAST, AT_MOST, Goal, verdict
from bench._system import (
    NOOP,
    admin_headers,
    baseline_app,
    bench_settings,
    deploy_with_extra_apps,
    running_system,
)
from cluster.base.constants import APP_CORE, APP_ROUTE_PREFIXES

GOAL_RATIO = 1.2
#: Registrations per second at least this share of the no-op POST route's rate (1 / 1.3).
REGISTRATION_GOAL = 0.77
AGENT_ID = "bench-agent-0001"
NOOP_APP = "noop"
NOOP_ROUTE = "/noop"
REGISTRY_PATH = f"{APP_ROUTE_PREFIXES[APP_CORE]}/agents/{AGENT_ID}"
NOOP_PATH = f"{NOOP_ROUTE}/"


@dataclass
class Sample:
    """Latencies (ms) of one route, and the wall time the timed requests took."""

    name: str
    latencies_ms: list[float]
    elapsed_s: float = 0.0

    def percentile(self, q: int) -> float:
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[q - 1]

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.elapsed_s


def _get_ms(client: httpx.Client, path: str) -> float:
    start = time.perf_counter()
    response = client.get(path)
    elapsed_ms = (time.perf_counter() - start) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"GET {path} answered {response.status_code}: {response.text[:300]}")
    return elapsed_ms


def register_agent(client: httpx.Client) -> None:
    body = {"agent_id": AGENT_ID, "host": "127.0.0.1", "port": 5555, "check": "none"}
    response = client.post(f"{APP_ROUTE_PREFIXES[APP_CORE]}/agents", json=body)
    response.raise_for_status()
    found = client.get(REGISTRY_PATH)
    found.raise_for_status()
    if found.json()["agent_id"] != AGENT_ID:
        raise RuntimeError(f"registry answered {found.text[:300]} for {AGENT_ID}")


def sequential(client: httpx.Client, requests: int, block: int) -> tuple[Sample, Sample]:
    """``requests`` timed GETs per route, alternating blocks and which route goes first."""
    registry, noop = Sample("registry", []), Sample("noop", [])
    pairs = [(registry, REGISTRY_PATH), (noop, NOOP_PATH)]
    for round_no in range(requests // block):
        for sample, path in pairs if round_no % 2 == 0 else pairs[::-1]:
            start = time.perf_counter()
            sample.latencies_ms.extend(_get_ms(client, path) for _ in range(block))
            sample.elapsed_s += time.perf_counter() - start
    return registry, noop


def _burst(client: httpx.Client, path: str, requests: int, threads: int) -> Sample:
    per_thread = requests // threads

    def work(_: int) -> list[float]:
        return [_get_ms(client, path) for _ in range(per_thread)]

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        latencies = [ms for chunk in pool.map(work, range(threads)) for ms in chunk]
    return Sample(path, latencies, time.perf_counter() - start)


def concurrent(
    client: httpx.Client, requests: int, threads: int, rounds: int
) -> tuple[Sample, Sample]:
    """``threads`` threads sharing the client, alternating rounds of ``requests`` per route."""
    registry, noop = Sample("registry", []), Sample("noop", [])
    pairs = [(registry, REGISTRY_PATH), (noop, NOOP_PATH)]
    for round_no in range(rounds):
        for sample, path in pairs if round_no % 2 == 0 else pairs[::-1]:
            burst = _burst(client, path, requests // rounds, threads)
            sample.latencies_ms.extend(burst.latencies_ms)
            sample.elapsed_s += burst.elapsed_s
    return registry, noop


def _table(registry: Sample, noop: Sample) -> list[str]:
    lines = [f"  {'':<18}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}"]
    for sample in (registry, noop):
        lines.append(
            f"  {sample.name:<18}{sample.percentile(50):>9.3f}{sample.percentile(99):>9.3f}"
            f"{sample.throughput:>9.0f}"
        )
    p50 = registry.percentile(50) / noop.percentile(50)
    p99 = registry.percentile(99) / noop.percentile(99)
    tput = registry.throughput / noop.throughput
    lines.append(f"  {'ratio reg/noop':<18}{p50:>9.2f}{p99:>9.2f}{tput:>9.2f}")
    return lines


def _post_ms(client: httpx.Client, path: str, body: dict[str, object]) -> float:
    start = time.perf_counter()
    response = client.post(path, json=body)
    elapsed_ms = (time.perf_counter() - start) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"POST {path} answered {response.status_code}: {response.text[:300]}")
    return elapsed_ms


def registrations(
    client: httpx.Client, requests: int, threads: int, rounds: int
) -> tuple[Sample, Sample]:
    """``threads`` threads registering distinct agents (each durable before its 200), against
    the same bodies POSTed to the no-op route, in alternating rounds."""
    registry, noop = Sample("registrations", []), Sample("no-op POST", [])
    pairs = [(registry, f"{APP_ROUTE_PREFIXES[APP_CORE]}/agents"), (noop, NOOP_PATH)]
    per_thread = requests // rounds // threads
    for round_no in range(rounds):
        for sample, path in pairs if round_no % 2 == 0 else pairs[::-1]:

            def work(thread: int, path: str = path, round_no: int = round_no) -> list[float]:
                return [
                    _post_ms(
                        client,
                        path,
                        {
                            "agent_id": f"bench-reg-{round_no}-{thread}-{n}",
                            "host": "127.0.0.1",
                            "port": 20000 + n,
                            "check": "none",
                            "capabilities": ["bench"],
                        },
                    )
                    for n in range(per_thread)
                ]

            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=threads) as pool:
                sample.latencies_ms.extend(ms for c in pool.map(work, range(threads)) for ms in c)
            sample.elapsed_s += time.perf_counter() - start
    return registry, noop


def run(args: argparse.Namespace) -> list[Goal]:
    settings = bench_settings()
    with running_system(settings):
        print("==> Deploying the no-op baseline application beside the aisys apps", flush=True)
        deploy_with_extra_apps(settings, [baseline_app(settings, APP_CORE, NOOP_APP, NOOP)])
        base_url = f"http://127.0.0.1:{settings.ports.http}"
        with httpx.Client(base_url=base_url, timeout=30, headers=admin_headers(settings)) as client:
            register_agent(client)
            for path in (REGISTRY_PATH, NOOP_PATH):
                for _ in range(args.warmup):
                    _get_ms(client, path)
            print()
            print("aisys registry lookup benchmark")
            print(f"  registry: GET {REGISTRY_PATH}  (answered from the in-replica cache)")
            print(f"  baseline: GET {NOOP_PATH}  (no-op FastAPI deployment, same host pin)")
            print(f"  Serve HTTP proxy {base_url}, warm-up {args.warmup} requests each")
            print()
            print(
                f"sequential: {args.requests} requests each, one keep-alive client, "
                f"alternating blocks of {args.block}"
            )
            registry, noop = sequential(client, args.requests, args.block)
            print("\n".join(_table(registry, noop)))
            rows = [
                Goal("lookup p50 / no-op p50", _ratio(registry, noop, 50), GOAL_RATIO, AT_MOST),
                Goal("lookup p99 / no-op p99", _ratio(registry, noop, 99), GOAL_RATIO, AT_MOST),
            ]
            if args.threads > 0:
                print()
                c_registry, c_noop = concurrent(
                    client, args.concurrent_requests, args.threads, args.rounds
                )
                print(
                    f"concurrent: {args.threads} threads sharing the client, "
                    f"{len(c_registry.latencies_ms)} requests each in {args.rounds} "
                    "alternating rounds"
                )
                print("\n".join(_table(c_registry, c_noop)))
            if args.writers > 0:
                print()
                writes, floor = registrations(client, args.registrations, args.writers, args.rounds)
                print(
                    f"registrations: {args.writers} threads, {len(writes.latencies_ms)} distinct "
                    f"agents POSTed to /core/agents and the same bodies to the no-op POST route, "
                    f"{args.rounds} alternating rounds (the goal the tracker set, 1000/s, is "
                    "above the no-op route's own rate on this machine; the goal held here is "
                    f"{REGISTRATION_GOAL}x the no-op route's rate)"
                )
                print("\n".join(_table(writes, floor)))
                share = writes.throughput / floor.throughput
                rows.append(
                    Goal("registrations/s / no-op POST/s", share, REGISTRATION_GOAL, AT_LEAST)
                )
            print()
            print("Absolute times on a shared machine are noise; the ratios are the result.")
            sys.stdout.flush()
            return rows


def _ratio(sample: Sample, floor: Sample, q: int) -> float:
    return sample.percentile(q) / floor.percentile(q)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.registry_lookup", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--requests", type=int, default=2000, help="sequential GETs per route")
    parser.add_argument("--block", type=int, default=100, help="requests per alternating block")
    parser.add_argument("--warmup", type=int, default=200, help="untimed GETs per route first")
    parser.add_argument("--threads", type=int, default=8, help="0 skips the concurrent run")
    parser.add_argument(
        "--concurrent-requests", type=int, default=2000, help="concurrent GETs per route"
    )
    parser.add_argument("--rounds", type=int, default=4, help="alternating concurrent rounds")
    parser.add_argument("--writers", type=int, default=16, help="0 skips the registrations")
    parser.add_argument("--registrations", type=int, default=1024, help="registrations per route")
    parser.add_argument(
        "--quick", action="store_true", help="600 sequential, 400 concurrent, 512 registrations"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.requests < args.block or args.requests % args.block:
        _parser().error("--requests must be a multiple of --block")
    if args.quick:
        args.requests, args.warmup, args.concurrent_requests = 600, 100, 400
        args.registrations, args.rounds = 512, 2
    try:
        rows = run(args)
    except KeyboardInterrupt:
        print("interrupted; the benchmark's system was stopped", file=sys.stderr)
        return 130
    return verdict("registry_lookup", rows)


if __name__ == "__main__":
    sys.exit(main())
