"""``aisys supervise``: keep this host's part of the system running, in the foreground.

What a PC runs at boot (``aisys service install`` writes the systemd unit) and what
``aisys up --detach`` and ``ray up cluster.yaml`` leave behind. Every ``period_s`` it makes sure
this host's parts run (:func:`cluster.ops.system.ensure_host_parts`): the embedded NATS server where
this host carries it, and the Ray node with its tags. So

- a worker that boots before the head waits for the head's GCS, then joins;
- a worker whose raylet gave up on a head that stayed away (``ray.gcs_reconnect_timeout_s``)
  starts again and rejoins once the head answers;
- the head, whenever its node (re)starts, deploys once the tags the applications need are in the
  cluster, by running ``aisys up`` for its role in a child process (deploy, the first admin user,
  status and ``aisys check``; a Ray driver in a process of its own, so a head restart never
  wedges the keeper). With GCS fault tolerance the restarted GCS has the applications already and
  that deploy changes nothing.

SIGTERM or SIGINT (``systemctl stop``, ``aisys down``) stops what it started on this host and
ends it with exit 0. One keeper per data dir: its pid is in ``<data_dir>/supervise.pid``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

import psutil

from cluster.base.errors import AisysError, ClusterError
from cluster.base.settings import Settings
from cluster.ops._keeper import (
    cli_prefix,
    keeper_marker,
    keeper_pid_file,
    keeper_process,
    role_args,
)
from cluster.ops._procs import MARKER_ENV, terminate
from cluster.ops._progress import Progress
from cluster.ops._ray_node import stop_ray_node
from cluster.ops.system import HostPlan, embedded_nats, ensure_host_parts, host_plan

__all__ = ["Keeper", "supervise"]

# `aisys up` exits 2 when it could not deploy (an AisysError); 0 and 1 mean it deployed and
# then reported a healthy or an unhealthy system.
_DEPLOY_FAILED = 2


class Keeper:
    """The loop of ``aisys supervise``; :meth:`run` returns once ``stop`` is set.

    Args:
        settings: this host's settings.
        progress: where progress lines go (stdout, so journald or the log file keeps them).
        plan: the role's hosts and tags (:func:`cluster.ops.system.host_plan`).
        host, address: the worker's profile and the head's GCS, as given to the command.
        config_file: the settings file, handed on to the ``aisys up`` child.
        period_s: how often the parts are checked.
        wait_tags_s: how long each deploy attempt waits for the tags.
    """

    def __init__(
        self,
        settings: Settings,
        progress: Progress,
        plan: HostPlan,
        *,
        host: str | None = None,
        address: str | None = None,
        config_file: Path | None = None,
        period_s: float = 5.0,
        wait_tags_s: float = 60.0,
    ) -> None:
        self.settings = settings
        self.progress = progress
        self.plan = plan
        self.host = host
        self.address = address
        self.config_file = config_file
        self.period_s = period_s
        self.wait_tags_s = wait_tags_s
        self.stop = threading.Event()
        self.deployed = not plan.head

    def _deploy(self) -> bool:
        """Run ``aisys up`` for this role in a child; True when it deployed."""
        argv = [
            *cli_prefix(self.config_file),
            "up",
            *role_args(self.plan.role, self.host, self.address),
            "--wait",
            str(self.wait_tags_s),
        ]
        env = dict(os.environ)
        env[MARKER_ENV] = keeper_marker(self.settings)
        child = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)
        while child.poll() is None:
            if self.stop.wait(0.5):
                terminate([psutil.Process(child.pid)], grace_s=10)
                child.wait()
                return False
        if child.returncode == _DEPLOY_FAILED:
            self.progress.line(f"    deploy not done yet; trying again in {self.period_s:.0f}s")
            return False
        word = "healthy" if child.returncode == 0 else "UNHEALTHY (see the status above)"
        self.progress.line(f"==> Deployed; the system is {word}")
        return True

    def round(self) -> None:
        """One look at this host's parts: start what is missing, deploy where needed."""
        restarted = ensure_host_parts(
            self.settings,
            self.progress,
            self.plan,
            address=self.address,
            wait_head_s=self.period_s * 12,
            stop=self.stop,
            quiet=True,
        )
        if restarted and self.plan.head:
            self.deployed = False
        if not self.deployed and not self.stop.is_set():
            self.deployed = self._deploy()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.round()
            except AisysError as exc:
                self.progress.line(f"    {exc}; trying again in {self.period_s:.0f}s")
            self.stop.wait(self.period_s)

    def shutdown(self) -> None:
        """Stop what this host runs: the Ray node (and the head's GCS store), then NATS."""
        with self.progress.step("Stopping the Ray node"):
            count = stop_ray_node(self.settings)
            self.progress.line(f"    stopped {count} processes" if count else "    not running")
        if self.plan.runs_nats:
            with self.progress.step("Stopping embedded nats-server"):
                if not embedded_nats(self.settings).stop():
                    self.progress.line("    not running")


def supervise(
    settings: Settings,
    progress: Progress,
    *,
    role: str,
    host: str | None = None,
    address: str | None = None,
    config_file: Path | None = None,
    period_s: float = 5.0,
) -> None:
    """Run the keeper of this data dir until SIGTERM/SIGINT, then stop this host's part.

    Raises:
        ClusterError: another keeper already runs for this data dir.
    """
    plan = host_plan(settings, role, host)
    running = keeper_process(settings)
    if running is not None and running.pid != os.getpid():
        raise ClusterError(
            f"`aisys supervise` already runs for {settings.data_dir} (pid {running.pid})"
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    pid_file = keeper_pid_file(settings)
    pid_file.write_text(f"{os.getpid()}\n")
    keeper = Keeper(
        settings,
        progress,
        plan,
        host=host,
        address=address,
        config_file=config_file,
        period_s=period_s,
    )

    def on_signal(signum: int, _frame: object) -> None:
        progress.line(f"==> {signal.Signals(signum).name}: stopping this host's part")
        keeper.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    progress.line(f"==> aisys supervise --role {role}: keeping {', '.join(plan.tags)} running")
    try:
        keeper.run()
    finally:
        keeper.shutdown()
        pid_file.unlink(missing_ok=True)
