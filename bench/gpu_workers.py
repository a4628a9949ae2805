"""Model worker start benchmark: ``POST /resources/workers`` to a ready worker vs a bare actor.

Starts a private aisys system (GPUs from the NVML double: a 12 GiB 3060 on pc2) and times, in
alternating blocks, (a) ``POST /resources/workers`` for a
:class:`~deployments.resources.vram_worker.VramWorker` on pc2 until it answers ready (lease,
placement, actor start, class constructed; ``DELETE`` afterwards, not timed) against (b) the
same Ray actor class started directly by this driver with the same ``num_gpus`` share and host
tag, until its first call answers (``ray.kill`` afterwards). The goal is a ratio of at most 1.2;
absolute times on a shared machine are noise.

Run with ``.venv/bin/python -m bench.gpu_workers [--rounds N] [--block N]``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from typing import Any

import httpx

from bench._system import REPO_ROOT, admin_headers, bench_settings, running_system

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "nvml"
WORKER = "deployments.resources.vram_worker:VramWorker"
VRAM_MB = 1000


def _through_service(client: httpx.Client) -> float:
    start = time.perf_counter()
    response = client.post(
        "/resources/workers", json={"cls": WORKER, "vram_mb": VRAM_MB, "host": "pc2"}
    )
    elapsed = time.perf_counter() - start
    if response.status_code != 201 or response.json()["state"] != "ready":
        raise RuntimeError(f"worker start answered {response.status_code}: {response.text}")
    client.delete(f"/resources/workers/{response.json()['worker_id']}")
    return elapsed


def _direct(num_gpus: float) -> float:
    import ray

    from actors.resources.workers import WorkerHost

    start = time.perf_counter()
    handle: Any = (
        ray.remote(WorkerHost)
        .options(num_gpus=num_gpus, num_cpus=0, resources={"pc2": 0.001}, max_concurrency=4)
        .remote(WORKER, [], {}, 0, "pc2")
    )
    ray.get(handle.pid.remote(), timeout=120)
    elapsed = time.perf_counter() - start
    ray.kill(handle)
    return elapsed


def run(args: argparse.Namespace) -> None:
    settings = bench_settings(resources={"nvml_double": str(FIXTURES / "double_hosts.json")})
    samples: dict[str, list[float]] = {"service": [], "direct": []}
    with running_system(settings):
        url = f"http://127.0.0.1:{settings.ports.http}"
        with httpx.Client(base_url=url, timeout=180, headers=admin_headers(settings)) as client:
            deadline = time.monotonic() + 60
            while len(client.get("/resources/gpus", params={"refresh": True}).json()["gpus"]) < 2:
                if time.monotonic() > deadline:
                    raise RuntimeError("the NVML double's GPUs never appeared in /resources/gpus")
            pc2 = next(
                g for g in client.get("/resources/gpus").json()["gpus"] if g["host"] == "pc2"
            )
            num_gpus = math.ceil(VRAM_MB / pc2["total_mb"] * 10_000) / 10_000  # as a lease
            _through_service(client)  # warm-up
            _direct(num_gpus)
            for round_no in range(args.rounds):
                order = ["service", "direct"] if round_no % 2 == 0 else ["direct", "service"]
                for what in order:
                    for _ in range(args.block):
                        if what == "service":
                            samples[what].append(_through_service(client))
                        else:
                            samples[what].append(_direct(num_gpus))
    service, direct = statistics.median(samples["service"]), statistics.median(samples["direct"])
    count = args.rounds * args.block
    print("Model worker start benchmark (NVML double GPUs; one machine)")
    print(f"  {count} starts each, alternating blocks of {args.block}")
    print(f"  POST /resources/workers to ready  median {service * 1000:>8.1f} ms")
    print(f"  bare Ray actor, same num_gpus     median {direct * 1000:>8.1f} ms")
    print(f"  ratio service/direct              {service / direct:>8.2f}  (goal <= 1.2)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_workers")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds")
    parser.add_argument("--block", type=int, default=5, help="starts per block")
    args = parser.parse_args(argv)
    try:
        run(args)
    except KeyboardInterrupt:
        print("interrupted; the benchmark's system was stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
