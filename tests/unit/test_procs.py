"""Stopping what aisys started by its marker, including what no longer shows the marker."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil

from cluster.ops._procs import MARKER_ENV, marked_processes, stop_marked

# The parent carries the marker; the child it starts has an environment without it (as a
# process whose long title overwrote its environ looks in /proc/PID/environ).
_PARENT = """
import os, subprocess, sys, time
env = {k: v for k, v in os.environ.items() if k != "AISYS_OWNER"}
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], env=env)
print(child.pid, flush=True)
time.sleep(120)
"""


def test_stop_marked_takes_unmarked_descendants_too() -> None:
    marker = f"test:{os.getpid()}:{time.monotonic_ns()}"
    env = {**os.environ, MARKER_ENV: marker}
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        child = psutil.Process(int(parent.stdout.readline()))
        assert [p.pid for p in marked_processes(marker)] == [parent.pid]
        assert MARKER_ENV not in child.environ()

        assert stop_marked(marker, grace_s=2) == 2

        assert parent.wait(timeout=10) is not None
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    finally:
        parent.kill()
        parent.wait()
