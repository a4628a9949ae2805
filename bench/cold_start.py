"""Cold start: ``aisys up`` on the embedded default against ``ray start --head`` plus one no-op
Serve application, alternating in one run.

Each round times, in alternating order:

- the **floor**: ``ray start --head`` (token auth, random ports, its own temp dir: the options
  aisys's head gets that cost nothing to leave out) until the no-op application of
  :mod:`bench._noop`, PUT through the dashboard's Serve REST API as ``aisys up`` does, is
  RUNNING and answers ``GET /noop/``; then stopped by its processes' marker, never ``ray stop``.
- ``aisys up`` (the CLI, in a process of its own, as a user runs it) on the embedded
  single-machine default with a private data dir and random ports (:func:`bench._system.
  bench_settings`), until it exits 0: every application RUNNING and ``aisys check`` passed;
  then a second ``aisys up`` on the running system, then ``aisys down``.

Goals (the exit status is 1 when one is missed): the median cold ``aisys up`` at most 1.3x the
median floor, and the slowest second ``aisys up`` within 5 s. Every cold ``aisys up`` prints its
timeline: when each of its progress lines arrived, so the phases (start-up, NATS, the Ray node,
the deploy, the status, the check's steps) can be read off.

It starts systems of its own, so ``bench.quick`` runs it before its shared system, not in it.
Run with ``make bench`` or ``.venv/bin/python -m bench.cold_start [--rounds N] [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

import httpx

from bench._goals import AT_MOST, Goal, verdict
from bench._system import NOOP, REPO_ROOT, _free_ports, bench_settings
from cluster.base.errors import ClusterError
from cluster.base.settings import Settings, load_settings, settings_yaml
from cluster.ops._dashboard import DashboardClient
from cluster.ops._procs import MARKER_ENV, stop_marked

#: Median cold ``aisys up`` over the median floor.
GOAL_RATIO = 1.3
#: A second ``aisys up`` on the running system, in seconds.
SECOND_UP_GOAL_S = 5.0
#: The floor's application name and route.
NOOP_APP = "noop"
#: How long one cold start (either) may take before the run gives up.
START_TIMEOUT_S = 300.0
#: The lines of ``aisys up``'s output the timeline shows (progress steps and the check).
_TIMELINE = re.compile(r"^(==> |    .*: (done|failed after)|CHECK$|check |PASS |FAIL |SKIP )")


@dataclass
class CliRun:
    """One ``aisys`` command: its exit status, wall time and output lines stamped on arrival."""

    argv: list[str]
    returncode: int
    seconds: float
    lines: list[tuple[float, str, str]] = field(default_factory=list)  # (s, stream, text)

    def text(self) -> str:
        return "\n".join(line for _, _, line in self.lines)

    def tail(self, count: int = 30) -> str:
        return "\n".join(f"  {s:6.2f}s {name} {line}" for s, name, line in self.lines[-count:])


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001
    raise KeyboardInterrupt(f"signal {signum}")


def _clean_env() -> dict[str, str]:
    """This environment without aisys's or Ray's auth settings (each start brings its own)."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AISYS_") and k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")
    }


def _ray_executable() -> str:
    sibling = Path(sys.executable).with_name("ray")
    found = str(sibling) if sibling.exists() else shutil.which("ray")
    if found is None:
        raise ClusterError("bench: the `ray` command is not installed next to this Python")
    return found


def _aisys_executable() -> str:
    sibling = Path(sys.executable).with_name("aisys")
    if not sibling.exists():
        raise ClusterError(f"bench: no `aisys` command next to {sys.executable}")
    return str(sibling)


# -- the floor ---------------------------------------------------------------------------------


def _wait(what: str, probe: Any, deadline: float) -> None:
    """Call ``probe()`` every 0.1 s until it is true; ClusterError at ``deadline``."""
    while True:
        with contextlib.suppress(ClusterError, httpx.HTTPError):  # not up yet: ask again
            if probe():
                return
        if time.monotonic() >= deadline:
            raise ClusterError(f"bench: {what} not within {START_TIMEOUT_S:.0f}s")
        time.sleep(0.1)


def floor_once() -> float:
    """``ray start --head`` until the no-op app answers; seconds. Stopped before returning."""
    gcs, dashboard, ray_client, agent, http = _free_ports(5)
    directory = Path(tempfile.mkdtemp(prefix="aisys-cs-", dir="/tmp"))
    token = secrets.token_hex(32)
    marker = f"bench-floor:{directory}"
    pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {
        **_clean_env(),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "RAY_USAGE_STATS_ENABLED": "0",
        # The no-op app's replica imports `bench` from this checkout, as aisys's import theirs.
        "PYTHONPATH": pythonpath,
        MARKER_ENV: marker,
    }
    cmd = [
        _ray_executable(),
        "start",
        "--head",
        "--port",
        str(gcs),
        "--dashboard-host",
        "0.0.0.0",
        "--dashboard-port",
        str(dashboard),
        "--ray-client-server-port",
        str(ray_client),
        "--dashboard-agent-listen-port",
        str(agent),
        "--temp-dir",
        str(directory / "ray"),
        "--disable-usage-stats",
    ]
    config = {
        "http_options": {"host": "0.0.0.0", "port": http},
        "applications": [
            {"name": NOOP_APP, "route_prefix": f"/{NOOP_APP}", "import_path": NOOP[0]}
        ],
    }
    client = DashboardClient(f"http://127.0.0.1:{dashboard}", token)
    try:
        start = time.monotonic()
        deadline = start + START_TIMEOUT_S
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
            raise ClusterError(f"bench: `ray start --head` failed ({result.returncode}):\n{tail}")
        _wait("the dashboard", lambda: client.serve_details() is not None, deadline)
        client.deploy(config)

        def running() -> bool:
            app = client.serve_details().get("applications", {}).get(NOOP_APP, {})
            if app.get("status") == "DEPLOY_FAILED":
                raise RuntimeError(f"bench: the no-op app failed: {app.get('message')}")
            return bool(app.get("status") == "RUNNING")

        _wait("the no-op app RUNNING", running, deadline)
        url = f"http://127.0.0.1:{http}/{NOOP_APP}/"
        _wait("GET /noop/", lambda: httpx.get(url, timeout=5).status_code == 200, deadline)
        return time.monotonic() - start
    finally:
        client.close()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            stop_marked(marker)
        finally:
            signal.signal(signal.SIGINT, previous)
            shutil.rmtree(directory, ignore_errors=True)


# -- aisys -------------------------------------------------------------------------------------


def write_settings_file(settings: Settings, path: Path) -> Path:
    """``settings`` as a YAML file the ``aisys`` CLI reads back identically (secrets revealed)."""
    path.write_text(settings_yaml(settings))
    path.chmod(0o600)
    if load_settings(path) != settings:
        raise ClusterError(f"bench: {path} does not read back as the benchmark's settings")
    return path


def _pump(stream: IO[str], name: str, start: float, into: list[tuple[float, str, str]]) -> None:
    for line in stream:
        into.append((time.monotonic() - start, name, line.rstrip("\n")))


def run_cli(args: list[str], env: dict[str, str], timeout_s: float = START_TIMEOUT_S) -> CliRun:
    """Run ``aisys ARGS``; its output lines are stamped as they arrive. Killed (by its pid) on
    a timeout or an interrupt."""
    lines: list[tuple[float, str, str]] = []
    start = time.monotonic()
    proc = subprocess.Popen(
        [_aisys_executable(), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    pumps = [
        threading.Thread(target=_pump, args=(proc.stdout, "out", start, lines), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, "err", start, lines), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    try:
        returncode = proc.wait(timeout=timeout_s)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    seconds = time.monotonic() - start
    for pump in pumps:
        pump.join(timeout=5)
    return CliRun(["aisys", *args], returncode, seconds, sorted(lines))


@dataclass
class AisysRound:
    cold: CliRun
    second: CliRun
    down: CliRun | None


def aisys_once() -> AisysRound:
    """Cold ``aisys up``, a second ``aisys up``, ``aisys down``, on a private data dir."""
    settings = bench_settings()
    env = {
        **_clean_env(),
        "AISYS_CONFIG": str(write_settings_file(settings, settings.data_dir / "aisys.yaml")),
        "PYTHONUNBUFFERED": "1",
    }
    down: CliRun | None = None
    try:
        cold = run_cli(["up"], env)
        if cold.returncode != 0 or "check passed" not in cold.text():
            raise ClusterError(f"bench: cold `aisys up` exited {cold.returncode}:\n{cold.tail()}")
        second = run_cli(["up"], env)
        if second.returncode != 0 or "already running" not in second.text():
            raise ClusterError(
                f"bench: second `aisys up` exited {second.returncode}:\n{second.tail()}"
            )
    finally:
        # Also after Ctrl-C or an error: stop what this data dir's `aisys up` started (by the
        # processes' marker and pid files), with a second Ctrl-C ignored meanwhile.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            down = run_cli(["down"], env, timeout_s=120)
            if down.returncode != 0:
                print(f"bench: `aisys down` exited {down.returncode}:\n{down.tail()}")
        finally:
            signal.signal(signal.SIGINT, previous)
            shutil.rmtree(settings.data_dir, ignore_errors=True)
    return AisysRound(cold, second, down)


def timeline(run: CliRun) -> list[str]:
    """The progress and check lines of a run, each with the second it arrived at."""
    return [f"    {s:6.2f}s  {line}" for s, _, line in run.lines if _TIMELINE.match(line)]


# -- the run -----------------------------------------------------------------------------------


def run(rounds: int) -> list[Goal]:
    floors: list[float] = []
    results: list[AisysRound] = []
    for round_no in range(rounds):
        order = ("floor", "aisys") if round_no % 2 == 0 else ("aisys", "floor")
        for which in order:
            if which == "floor":
                print(f"==> round {round_no + 1}: ray start --head + no-op app", flush=True)
                floors.append(floor_once())
                print(f"    floor {floors[-1]:.1f}s", flush=True)
            else:
                print(f"==> round {round_no + 1}: aisys up, up, down", flush=True)
                result = aisys_once()
                results.append(result)
                down_s = result.down.seconds if result.down else float("nan")
                print(
                    f"    cold up {result.cold.seconds:.1f}s, second up "
                    f"{result.second.seconds:.1f}s, down {down_s:.1f}s; cold timeline:",
                    flush=True,
                )
                print("\n".join(timeline(result.cold)), flush=True)
    cold = [r.cold.seconds for r in results]
    second = [r.second.seconds for r in results]
    print()
    print("aisys cold start benchmark")
    print(f"  {'':<36}{'median s':>10}{'min s':>8}{'max s':>8}")
    for name, values in (
        ("floor: ray start --head + no-op app", floors),
        ("aisys up, cold (apps RUNNING, check)", cold),
        ("aisys up, second", second),
    ):
        print(
            f"  {name:<36}{statistics.median(values):>10.1f}{min(values):>8.1f}{max(values):>8.1f}"
        )
    print("Absolute times on a shared machine are noise; the ratios are the result.")
    sys.stdout.flush()
    return [
        Goal(
            "cold aisys up / floor (medians)",
            statistics.median(cold) / statistics.median(floors),
            GOAL_RATIO,
            AT_MOST,
        ),
        Goal("second aisys up / 5 s (slowest)", max(second) / SECOND_UP_GOAL_S, 1.0, AT_MOST),
    ]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cold_start", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--quick", action="store_true", help="one round")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.rounds < 1:
        _parser().error("--rounds must be at least 1")
    rounds = 1 if args.quick else args.rounds
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        rows = run(rounds)
    except KeyboardInterrupt:
        print("interrupted; the benchmark's systems were stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return verdict("cold_start", rows)


if __name__ == "__main__":
    sys.exit(main())
