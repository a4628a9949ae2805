"""Every benchmark's rows with fewer iterations, against one shared system: ``make bench-quick``.

Starting a private system costs most of a minute on the 2-core development machine, so this
starts one (random ports, its own data dir, with every benchmark's settings: the NVML double's
GPUs for ``resource_leases``, the NATS store with room for ``errorbus_throughput``'s baseline
stream) and runs each benchmark's ``main(["--quick"])`` inside it: each still deploys its own
floor beside aisys's applications and measures it in the same run, and prints its rows with
their goals. ``cold_start`` (one round) runs before the shared system starts: it times
``aisys up`` on systems of its own. The exit status is 1 when any row of any benchmark missed
its goal.

Run with ``make bench-quick`` or ``.venv/bin/python -m bench.quick``.
"""

from __future__ import annotations

import importlib
import sys
import time

from bench._goals import load_note
from bench._system import REPO_ROOT, bench_settings, shared_system

#: In this order: the ones that register many agents or fill streams come last.
ORDER = [
    "legacy_gateway",
    "auth_overhead",
    "coordinator_throughput",
    "resource_leases",
    "errorbus_throughput",
    "registry_lookup",
]


def _run(name: str) -> int:
    print(f"######## bench.{name} --quick", flush=True)
    module = importlib.import_module(f"bench.{name}")
    code: int = module.main(["--quick"])
    return code


def main() -> int:
    started = time.monotonic()
    print(f"bench.quick: {load_note()}", flush=True)
    # cold_start starts and stops systems of its own: before the shared one, never inside it.
    failed = [name for name in ["observability", "cold_start"] if _run(name)]
    from bench.errorbus_throughput import store_with_room_for_baseline

    nvml = REPO_ROOT / "tests" / "fixtures" / "nvml" / "double_hosts.json"
    settings = bench_settings(resources={"nvml_double": str(nvml)})
    settings = settings.model_copy(update={"nats": store_with_room_for_baseline(settings)})
    try:
        with shared_system(settings):
            failed += [name for name in ORDER if _run(name)]
    except KeyboardInterrupt:
        print("interrupted; the benchmarks' system was stopped", file=sys.stderr)
        return 130
    minutes = (time.monotonic() - started) / 60
    verdict = f"FAIL: {', '.join(failed)}" if failed else "PASS"
    print(f"bench.quick: {verdict} ({minutes:.1f} min, {load_note()})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
