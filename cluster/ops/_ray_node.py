"""Starting this machine's Ray node with its host tags, token auth and aisys's ports."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import psutil

from actors.probe.nvml import NVML_DOUBLE_ENV
from actors.probe.nvml_double import device_count
from cluster.base.errors import ClusterError, ConfigError
from cluster.base.files import ensure_secret, read_secret
from cluster.base.settings import Settings
from cluster.ops._procs import MARKER_ENV, marked_processes, stop_marked
from cluster.ops.gcs_store import GcsStore

__all__ = [
    "ensure_ray_token",
    "export_ray_auth",
    "node_marker",
    "ray_env",
    "gcs_fault_tolerant",
    "gcs_store",
    "ray_node_running",
    "read_ray_token",
    "stale_node_processes",
    "start_ray_node",
    "stop_ray_node",
]


# Ray puts unix sockets under its temp dir; Linux caps a socket path at 107 bytes and Ray adds
# about 60 of its own, so a longer temp dir fails deep inside raylet start-up.
MAX_TEMP_DIR_LEN = 45


def node_marker(settings: Settings) -> str:
    """The ``AISYS_OWNER`` marker of this data directory's Ray node."""
    return f"ray:{settings.ray_temp_dir}"


def read_ray_token(settings: Settings) -> str | None:
    return read_secret(settings.ray.auth_token, settings.ray_token_path)


def ensure_ray_token(settings: Settings) -> str:
    """Return the cluster's Ray token, generating it once into the data dir (mode 0600)."""
    return ensure_secret(settings.ray.auth_token, settings.ray_token_path)


def export_ray_auth(settings: Settings, *, generate: bool = False) -> bool:
    """Put the cluster's token into this process's environment, before ``import ray``.

    Ray reads ``RAY_AUTH_MODE`` and the token once, when it is first imported, so the CLI and
    the test harness call this first. Returns False when there is no token yet.
    """
    token = ensure_ray_token(settings) if generate else read_ray_token(settings)
    if token is None:
        return False
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = token
    os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
    return True


def ray_env(settings: Settings, token: str) -> dict[str, str]:
    """Environment for Ray processes and drivers: token auth on, the token, aisys's marker."""
    env = dict(os.environ)
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    env.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=token,
        RAY_USAGE_STATS_ENABLED="0",
    )
    env[MARKER_ENV] = node_marker(settings)
    # The NVML double (Settings resources.nvml_double) reaches the node's probe actors this way.
    if settings.resources.nvml_double is not None:
        env[NVML_DOUBLE_ENV] = str(settings.resources.nvml_double.resolve())
    else:
        env.pop(NVML_DOUBLE_ENV, None)
    return env


# The processes without which a node is not a node: a leftover ``log_monitor.py`` or
# ``dashboard_agent`` of a node whose raylet died must not pass for a running node.
_CORE_PROCESSES = ("raylet",)
_HEAD_PROCESSES = ("raylet", "gcs_server")


def _names(procs: list[psutil.Process]) -> set[str]:
    names = set()
    for proc in procs:
        try:
            names.add(proc.name())
        except psutil.Error:
            continue
    return names


def ray_node_running(settings: Settings, *, head: bool | None = None) -> bool:
    """True when this data dir's node has its raylet (and, for a head, its GCS) alive.

    Args:
        head: also require the GCS server; None requires it when one was ever marked.
    """
    procs = marked_processes(node_marker(settings))
    names = _names(procs)
    wanted = _HEAD_PROCESSES if head else _CORE_PROCESSES
    return all(name in names for name in wanted)


def stale_node_processes(settings: Settings, *, head: bool) -> int:
    """Stop what is left of a dead node of this data dir (no raylet, or a head without GCS).

    Returns how many processes were stopped; 0 when the node is whole or nothing is left.
    """
    if ray_node_running(settings, head=head):
        return 0
    return stop_marked(node_marker(settings))


def _ray_executable() -> str:
    sibling = Path(sys.executable).with_name("ray")
    if sibling.exists():
        return str(sibling)
    found = shutil.which("ray")
    if found is None:
        raise ConfigError("the `ray` command is not installed next to this Python or on PATH")
    return found


def start_ray_node(
    settings: Settings,
    tags: list[str],
    *,
    head: bool,
    address: str | None = None,
    fault_tolerant: bool = False,
) -> None:
    """Run ``ray start`` for this host, carrying ``tags`` as custom resources.

    Args:
        settings: ports, temp dir, token and host profiles.
        tags: host tags this node carries (both, on the embedded single machine).
        head: start the head (GCS, dashboard) rather than a worker.
        address: ``HOST:PORT`` of the head's GCS, for a worker.
        fault_tolerant: back a head's GCS with the GCS store (started first).

    Raises:
        ClusterError: ``ray start`` failed; the message carries the end of its output.
    """
    if len(str(settings.ray_temp_dir)) > MAX_TEMP_DIR_LEN:
        raise ConfigError(
            f"Ray temp dir {str(settings.ray_temp_dir)!r} is longer than {MAX_TEMP_DIR_LEN} "
            "characters and Ray's unix socket paths would not fit; set AISYS_RAY__TEMP_DIR to a "
            "shorter path (for example /tmp/aisys-ray)"
        )
    token = ensure_ray_token(settings) if head else read_ray_token(settings)
    if token is None:
        raise ConfigError(
            f"no Ray token: copy {settings.ray_token_path} from the head host to this host's "
            "data dir, or set AISYS_RAY__AUTH_TOKEN to its contents"
        )
    cmd = [
        _ray_executable(),
        "start",
        "--resources",
        json.dumps(dict.fromkeys(tags, 1)),
        "--labels",
        f"host={'.'.join(tags)}",
        "--temp-dir",
        str(settings.ray_temp_dir),
        "--dashboard-agent-listen-port",
        str(settings.ports.dashboard_agent),
        "--disable-usage-stats",
    ]
    cmd += _role_args(settings, head=head, address=address)
    cmd += _resource_args(settings, tags)
    env = ray_env(settings, token)
    if head:
        # A head that died leaves its address in this file; `ray start --head` would take any
        # local raylet of that GCS (a worker's, where hosts share a process table) for a live
        # head and refuse to start. We start a head only when ours is not running.
        (settings.ray_temp_dir / "ray_current_cluster").unlink(missing_ok=True)
    if head and fault_tolerant:
        # GCS fault tolerance: the GCS keeps its tables in the head's private redis-server.
        store = gcs_store(settings, token)
        store.start()
        env["RAY_REDIS_ADDRESS"] = store.address
        cmd += ["--redis-password", token]
    # A worker's raylet waits this long for a restarted head before giving up.
    env["RAY_gcs_rpc_server_reconnect_timeout_s"] = str(settings.ray.gcs_reconnect_timeout_s)
    settings.ray_temp_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise ClusterError(f"`ray start` failed (exit {result.returncode}):\n{tail}")


def _role_args(settings: Settings, *, head: bool, address: str | None) -> list[str]:
    """``ray start`` arguments of a head (ports, dashboard) or a worker (the head's GCS)."""
    if not head:
        if address is None:
            raise ConfigError("a worker node needs --address HEAD_IP:PORT of the head's GCS")
        return ["--address", address]
    args = [
        "--head",
        "--port",
        str(settings.ports.gcs),
        "--dashboard-host",
        "0.0.0.0",
        "--dashboard-port",
        str(settings.ports.dashboard),
        "--ray-client-server-port",
        str(settings.ports.ray_client),
    ]
    if settings.ray.autoscaling_config is not None:
        args += ["--autoscaling-config", str(settings.ray.autoscaling_config.expanduser())]
    return args


def _resource_args(settings: Settings, tags: list[str]) -> list[str]:
    """``ray start`` arguments from the host profile: address, CPUs, GPUs, object store."""
    profile = next(p for p in settings.hosts.values() if p.tag == tags[0])
    args = []
    if profile.node_ip:
        args += ["--node-ip-address", profile.node_ip]
    if profile.num_cpus:
        args += ["--num-cpus", str(profile.num_cpus)]
    num_gpus = profile.num_gpus
    if num_gpus is None and settings.resources.nvml_double is not None:
        num_gpus = device_count(settings.resources.nvml_double, tags)  # the double's devices
    if num_gpus is not None:
        args += ["--num-gpus", str(num_gpus)]
    if settings.ray.object_store_memory_mb:
        args += ["--object-store-memory", str(settings.ray.object_store_memory_mb * 1024 * 1024)]
    return args


def gcs_store(settings: Settings, token: str = "") -> GcsStore:
    """The head's GCS store of this data dir (``token`` is only needed to start it)."""
    return GcsStore(
        port=settings.ports.gcs_store, store_dir=settings.data_dir / "gcs", password=token
    )


def gcs_fault_tolerant(settings: Settings, role: str) -> bool:
    """Whether a head of ``role`` backs its GCS with the GCS store.

    ``ray.gcs_fault_tolerance`` decides when set; otherwise it is on for the head of two hosts
    and off for the embedded single machine.
    """
    if settings.ray.gcs_fault_tolerance is not None:
        return settings.ray.gcs_fault_tolerance
    return role == "head"


def stop_ray_node(settings: Settings) -> int:
    """Stop this data dir's Ray node, everything it spawned and the head's GCS store.

    Returns the process count. The GCS store stops last, after the GCS that writes to it.
    """
    count = stop_marked(node_marker(settings))
    if gcs_store(settings).stop():
        count += 1
    return count


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False
