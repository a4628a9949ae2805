"""Token verification cost per request: the same no-op route with and without aisys's check.

Runs a private aisys system, deploys two identical no-op applications beside it (same host pin
and replica options as CoreOrchestrator) — one open, one behind ``require(Scope.READ)`` — and
times GETs to both in alternating blocks with one keep-alive client. Prints p50/p99 of each and
the ratio guarded/open (goal: <= 1.1).

    python -m bench.auth_overhead [--requests 2000] [--block 100]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import httpx

from bench._goals import AT_MOST, Goal, verdict
from bench._system import (
    NOOP,
    admin_headers,
    baseline_app,
    bench_settings,
    deploy_with_extra_apps,
    running_system,
)
from cluster.base.settings import Settings

GOAL_RATIO = 1.1
OPEN, GUARDED = "/open/", "/guarded/"


def _apps(settings: Settings) -> list[dict[str, Any]]:
    from cluster.ops.serve_config import _auth_args

    return [
        baseline_app(settings, "core", "open", NOOP),
        baseline_app(
            settings,
            "core",
            "guarded",
            ("bench._guarded:build_app", "Guarded"),
            args={"auth": _auth_args(settings)},
        ),
    ]


def _timed(client: httpx.Client, path: str, count: int) -> list[float]:
    out = []
    for _ in range(count):
        start = time.perf_counter()
        response = client.get(path)
        out.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:200]}")
    return out


def _pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def run(args: argparse.Namespace) -> list[Goal]:
    settings = bench_settings()
    with running_system(settings):
        deploy_with_extra_apps(settings, _apps(settings))
        base_url = f"http://127.0.0.1:{settings.ports.http}"
        with httpx.Client(base_url=base_url, timeout=30, headers=admin_headers(settings)) as client:
            for path in (OPEN, GUARDED):
                _timed(client, path, args.warmup)
            samples: dict[str, list[float]] = {OPEN: [], GUARDED: []}
            order = [OPEN, GUARDED]
            for round_no in range(args.requests // args.block):
                for path in order if round_no % 2 == 0 else order[::-1]:
                    samples[path].extend(_timed(client, path, args.block))
        print()
        print("aisys token verification overhead (same no-op route, open vs guarded)")
        print(f"  {'':<10}{'p50 ms':>9}{'p99 ms':>9}")
        for name, path in (("open", OPEN), ("guarded", GUARDED)):
            print(f"  {name:<10}{_pct(samples[path], 50):>9.3f}{_pct(samples[path], 99):>9.3f}")
        p50 = _pct(samples[GUARDED], 50) / _pct(samples[OPEN], 50)
        p99 = _pct(samples[GUARDED], 99) / _pct(samples[OPEN], 99)
        print(f"  {'ratio':<10}{p50:>9.2f}{p99:>9.2f}")
        sys.stdout.flush()
        return [Goal("guarded p50 / open p50", p50, GOAL_RATIO, AT_MOST)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.auth_overhead")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--block", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="600 requests, 100 warm-up")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.warmup = 600, 100
    try:
        rows = run(args)
    except KeyboardInterrupt:
        print("interrupted; the benchmark's system was stopped", file=sys.stderr)
        return 130
    return verdict("auth_overhead", rows)


if __name__ == "__main__":
    sys.exit(main())
