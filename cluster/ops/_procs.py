"""Finding and stopping the processes aisys started, and only those.

``ray stop`` ends every Ray process on the machine, including other users' and other test
nodes'. aisys instead marks the environment of everything it starts with
``AISYS_OWNER=<marker>``; Ray hands its environment down to every process it spawns, so the
marker finds the whole node. Not always in ``/proc/PID/environ``, though: a process that sets a
long title (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) may write it over the memory
that file reads. So a stop takes the marked processes *and their descendants*, read while the
parents still live (once a raylet is gone its agents are re-parented and nothing links them
to the node any more).
"""

from __future__ import annotations

import os
import signal
import time

import psutil

__all__ = ["MARKER_ENV", "marked_processes", "stop_marked", "terminate", "with_descendants"]

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


def with_descendants(procs: list[psutil.Process]) -> list[psutil.Process]:
    """``procs`` and every live descendant of theirs, each once."""
    family = {proc.pid: proc for proc in procs}
    for proc in procs:
        try:
            for child in proc.children(recursive=True):
                family.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            continue
    return list(family.values())


def stop_marked(marker: str, grace_s: float = 5.0) -> int:
    """Stop every process marked with ``marker``, and their descendants; return how many."""
    total = 0
    # Stopping the node can leave children re-parented for a moment; sweep until none remain.
    deadline = time.monotonic() + grace_s + 10
    while time.monotonic() < deadline:
        procs = with_descendants(marked_processes(marker))
        if not procs:
            break
        total += len(procs)
        terminate(procs, grace_s)
    return total
