"""Finding and stopping the processes aisys started, and only those.

``ray stop`` ends every Ray process on the machine, including other users' and other test
nodes'. aisys instead marks the environment of everything it starts with
``AISYS_OWNER=<marker>``; Ray hands its environment down to every process it spawns, so the
marker finds the whole node.
"""

from __future__ import annotations

import os
import signal
import time

import psutil

__all__ = ["MARKER_ENV", "marked_processes", "stop_marked", "terminate"]

MARKER_ENV = "AISYS_OWNER"


def marked_processes(marker: str) -> list[psutil.Process]:
    """Return the live processes whose environment carries ``AISYS_OWNER=marker``."""
    found = []
    me = os.getpid()
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == me:
            continue
        try:
            if proc.environ().get(MARKER_ENV) == marker and proc.status() != "zombie":
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def terminate(procs: list[psutil.Process], grace_s: float = 5.0) -> None:
    """SIGTERM ``procs``, wait up to ``grace_s``, then SIGKILL what is left."""
    for proc in procs:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(alive, timeout=5)


def stop_marked(marker: str, grace_s: float = 5.0) -> int:
    """Stop every process marked with ``marker``; return how many there were."""
    total = 0
    # Stopping the node can leave children re-parented for a moment; sweep until none remain.
    deadline = time.monotonic() + grace_s + 10
    while time.monotonic() < deadline:
        procs = marked_processes(marker)
        if not procs:
            break
        total += len(procs)
        terminate(procs, grace_s)
    return total
