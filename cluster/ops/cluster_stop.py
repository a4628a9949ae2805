"""``ray stop`` on the hosts of ``ray up cluster.yaml``: stop aisys, never every Ray process.

``ray down cluster.yaml`` stops a local-provider cluster by running ``ray stop`` in a login
shell on the head, over ssh, and nothing on the workers (their nodes are only marked terminated
in the cluster state file). A real ``ray stop`` would end every Ray process on the head, leave
PC2's node, NATS server and ``aisys supervise`` running, and take other Ray users' processes
with it. So ``cluster.yaml``'s setup commands put ``scripts/ray-up-bin`` first on the PATH of the
hosts' login shells; its ``ray`` runs this module for ``ray stop`` and the venv's real ``ray``
for everything else. This module runs ``aisys down`` here (the head: its keeper, its node and
what they started, by this data dir's markers), then, where ``ray up`` left its bootstrap
config (only on the head), ``aisys down`` on every worker of that config over ssh, with the key
and user ``ray up`` gave the head's autoscaler.

Example (what ``ray down cluster.yaml`` ends up running on MainPC)::

    ~/aisys/scripts/ray-up-bin/ray stop
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

__all__ = ["BOOTSTRAP_CONFIG", "REMOTE_AISYS", "main", "worker_stop_commands"]

#: Where ``ray up`` leaves the cluster config (with the head's own key path) on the head.
BOOTSTRAP_CONFIG = Path("~/ray_bootstrap_config.yaml")
#: The ``aisys`` command on every host, as cluster.yaml's file mounts and setup install it.
REMOTE_AISYS = "~/aisys/.venv/bin/aisys"

# Ray's own options for its ssh sessions (ray.autoscaler's SSHOptions): no host-key prompts,
# no known_hosts entries, only the given key; and a bounded wait for an unreachable worker.
_SSH_OPTIONS = (
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=10",
    "-o",
    "LogLevel=ERROR",
)


def worker_stop_commands(config: dict[str, Any]) -> list[list[str]]:
    """The ssh command lines that run ``aisys down`` on each worker of a bootstrap ``config``.

    The remote command runs in a login shell, as Ray runs the start commands, so it sees the
    same environment (``AISYS_*`` variables set in the worker's shell profile).
    """
    provider = config.get("provider") or {}
    auth = config.get("auth") or {}
    user = auth.get("ssh_user")
    key = auth.get("ssh_private_key")
    commands = []
    for ip in provider.get("worker_ips") or []:
        cmd = ["ssh", *_SSH_OPTIONS]
        if key:
            cmd += ["-i", str(Path(key).expanduser())]
        target = f"{user}@{ip}" if user else str(ip)
        cmd += [target, f"bash --login -c -i 'source ~/.bashrc; {REMOTE_AISYS} down'"]
        commands.append(cmd)
    return commands


def _aisys() -> str:
    return str(Path(sys.executable).with_name("aisys"))


def main(argv: list[str] | None = None) -> int:
    """``ray stop [ignored options]``: stop aisys here, then on the workers ``ray up`` started.

    Returns 0 when every ``aisys down`` succeeded, else 1 (each failure is reported on stderr).
    """
    del argv  # `ray stop --force` and the like: aisys down is always the whole clean stop
    failed = 0
    local = subprocess.run([_aisys(), "down"], check=False)
    if local.returncode != 0:
        sys.stderr.write(f"aisys down here exited {local.returncode}\n")
        failed += 1
    bootstrap = BOOTSTRAP_CONFIG.expanduser()
    if bootstrap.is_file():
        config: dict[str, Any] = yaml.safe_load(bootstrap.read_text()) or {}
        for cmd in worker_stop_commands(config):
            sys.stdout.write(f"==> aisys down on {cmd[-2]}\n")
            sys.stdout.flush()
            remote = subprocess.run(cmd, stdin=subprocess.DEVNULL, check=False, timeout=300)
            if remote.returncode != 0:
                sys.stderr.write(f"aisys down on {cmd[-2]} exited {remote.returncode}\n")
                failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
