"""A server process aisys starts next to a node and finds again by its pid file and marker.

The embedded ``nats-server`` and the head's GCS store (``redis-server``) are both such daemons:
started in a session of their own, in their store dir, with an ``AISYS_OWNER`` marker; they
write a pid file and are found again by it. A pid is only theirs while that process has the
daemon's name and runs in its store dir: the marker alone does not tell, since a process that
sets its own title (``redis-server`` does) may write over the memory ``/proc/PID/environ``
reads. They are stopped with SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import os
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import psutil

from cluster.base.errors import ClusterError
from cluster.ops._procs import MARKER_ENV, terminate

__all__ = ["Daemon"]


class Daemon(ABC):
    """Base of a daemon whose state lives in ``store_dir``.

    Subclasses name their ``pid_file``, ``log_file`` and ``marker`` and call :meth:`_spawn`.
    """

    store_dir: Path
    stop_grace_s: float = 5.0
    process_name: str  # what psutil's name() says of the running daemon

    @property
    @abstractmethod
    def pid_file(self) -> Path:
        """Where the daemon writes its pid."""

    @property
    @abstractmethod
    def log_file(self) -> Path:
        """Where its output goes (emptied at each start)."""

    @property
    @abstractmethod
    def marker(self) -> str:
        """The ``AISYS_OWNER`` marker of this daemon."""

    def process(self) -> psutil.Process | None:
        """Return the running daemon of this store dir, if any."""
        try:
            proc = psutil.Process(int(self.pid_file.read_text().strip()))
            if (
                proc.status() != psutil.STATUS_ZOMBIE
                and proc.name() == self.process_name
                and Path(proc.cwd()).resolve() == self.store_dir.resolve()
            ):
                return proc
        except (FileNotFoundError, ValueError, psutil.Error):
            return None
        return None

    def _spawn(
        self,
        argv: Sequence[str],
        ready: Callable[[], bool],
        *,
        what: str,
        env: Mapping[str, str] | None = None,
        timeout_s: float = 20.0,
    ) -> None:
        """Start ``argv`` (output to a fresh log file) and wait until ``ready()`` holds.

        Raises:
            ClusterError: it exited, or was not ready within ``timeout_s``; the message carries
                the end of its log.
        """
        full_env = {**os.environ, **(env or {}), MARKER_ENV: self.marker}
        with self.log_file.open("wb") as log:
            proc = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=full_env,
                cwd=self.store_dir,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if ready():
                return
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        proc.kill()
        proc.wait()
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        tail = "\n".join(text.splitlines()[-10:])
        raise ClusterError(f"{what} did not become ready; its log says:\n{tail}")

    def stop(self) -> bool:
        """Stop the daemon (SIGTERM, then SIGKILL after the grace); False: it was not running."""
        proc = self.process()
        if proc is None:
            return False
        terminate([proc], grace_s=self.stop_grace_s)
        self.pid_file.unlink(missing_ok=True)
        return True
