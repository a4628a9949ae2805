"""The keeper of a data dir (``aisys supervise``): its pid file, marker and start in the background.

:mod:`cluster.ops.supervise` is the keeper's loop; this module is what ``aisys up --detach`` and
``aisys down`` need to start and stop one without importing that loop.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil

from cluster.base.settings import Settings
from cluster.ops._procs import MARKER_ENV, terminate

__all__ = [
    "cli_prefix",
    "keeper_marker",
    "keeper_pid_file",
    "keeper_process",
    "role_args",
    "spawn_keeper",
    "stop_keeper",
]


def keeper_pid_file(settings: Settings) -> Path:
    return settings.data_dir / "supervise.pid"


def keeper_marker(settings: Settings) -> str:
    """The ``AISYS_OWNER`` marker of this data dir's keeper and the children it starts."""
    return f"supervise:{settings.data_dir}/supervise"


def keeper_process(settings: Settings) -> psutil.Process | None:
    """The live keeper of this data dir, from its pid file."""
    try:
        proc = psutil.Process(int(keeper_pid_file(settings).read_text().strip()))
        if proc.status() != psutil.STATUS_ZOMBIE and "supervise" in proc.cmdline():
            return proc
    except (FileNotFoundError, ValueError, psutil.Error):
        return None
    return None


def stop_keeper(settings: Settings, grace_s: float = 120.0) -> bool:
    """SIGTERM this data dir's keeper and wait until it has stopped the host; False: none ran."""
    proc = keeper_process(settings)
    if proc is None:
        return False
    terminate([proc], grace_s=grace_s)
    keeper_pid_file(settings).unlink(missing_ok=True)
    return True


def cli_prefix(config_file: Path | None) -> list[str]:
    """The argv that runs this installation's ``aisys`` with the same settings file."""
    argv = [sys.executable, "-m", "cluster.ops.cli"]
    if config_file is not None:
        argv += ["--config", str(config_file.resolve())]
    return argv


def role_args(role: str, host: str | None, address: str | None) -> list[str]:
    """The ``--role``/``--host``/``--address`` arguments of ``up`` and ``supervise``."""
    args = ["--role", role]
    if host is not None:
        args += ["--host", host]
    if address is not None:
        args += ["--address", address]
    return args


def spawn_keeper(
    settings: Settings,
    role: str,
    *,
    host: str | None,
    address: str | None,
    config_file: Path | None,
) -> int:
    """Start ``aisys supervise --role ROLE`` in the background; return its pid.

    Its output goes to ``<data_dir>/supervise.log`` (mode 0600: the first admin password is
    printed there once).
    """
    log_path = settings.data_dir / "supervise.log"
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    env = dict(os.environ)
    env[MARKER_ENV] = keeper_marker(settings)
    with os.fdopen(fd, "ab") as log:
        proc = subprocess.Popen(
            [*cli_prefix(config_file), "supervise", *role_args(role, host, address)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    return proc.pid
