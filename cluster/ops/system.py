"""What the ``aisys`` commands do: start nodes and NATS, deploy, report status, stop.

Functions here take a :class:`Settings` and a :class:`Progress` and return pydantic reports;
:mod:`cluster.ops.cli` only parses arguments and prints. Tests call these functions directly.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import ray
from nats.errors import Error as NatsError
from pydantic import BaseModel, Field

from actors.registry.client import RegistryClient
from cluster.base.constants import APP_ROUTE_PREFIXES, RAY_NAMESPACE
from cluster.base.errors import ClusterError, ConfigError, MissingHostTag
from cluster.base.files import make_private
from cluster.base.nats_client import (
    NatsClient,
    ensure_nats_password,
    nats_client,
    read_nats_password,
)
from cluster.base.settings import Settings
from cluster.ops._dashboard import DashboardClient
from cluster.ops._keeper import keeper_marker, stop_keeper
from cluster.ops._procs import stop_marked
from cluster.ops._progress import Progress
from cluster.ops._ray_node import (
    ensure_ray_token,
    export_ray_auth,
    gcs_fault_tolerant,
    port_open,
    ray_node_running,
    read_ray_token,
    stale_node_processes,
    start_ray_node,
    stop_ray_node,
)
from cluster.ops.nats_server import NatsServer, nats_binary
from cluster.ops.serve_config import APPS, build_serve_config, check_host_tags

__all__ = [
    "AppStatus",
    "NatsStatus",
    "NodeStatus",
    "SystemStatus",
    "collect_status",
    "connect",
    "deploy",
    "down",
    "HostPlan",
    "embedded_nats",
    "ensure_host_parts",
    "export_ray_auth",
    "host_plan",
    "up",
    "wait_for_head",
]


class NodeStatus(BaseModel):
    node_id: str
    ip: str
    alive: bool
    tags: list[str]
    hosts: list[str] = Field(description="The host profiles whose tags this node carries.")
    state: str = Field(
        description="alive; replaced (dead, and a live node carries its tags now: history, "
        "not a problem); or lost (dead, and nothing carries its tags: its services are down)"
    )
    cpus: float
    gpus: float


class DeploymentStatus(BaseModel):
    name: str
    host_tag: str = Field(description="The host tag the deployment is pinned to.")
    status: str
    running_replicas: int
    target_replicas: int
    hosts: list[str]


class AppStatus(BaseModel):
    name: str
    status: str
    host_tag: str
    url: str
    deployments: list[DeploymentStatus]


class NatsStatus(BaseModel):
    url: str
    reachable: bool
    jetstream: bool
    detail: str


class SystemStatus(BaseModel):
    dashboard_url: str
    nodes: list[NodeStatus]
    applications: list[AppStatus]
    nats: NatsStatus
    registered_agents: int | None

    @property
    def lost_hosts(self) -> list[str]:
        """Host profiles whose node is gone with no live node carrying their tag."""
        return sorted({h for n in self.nodes if n.state == "lost" for h in n.hosts})

    @property
    def healthy(self) -> bool:
        return (
            not self.lost_hosts
            and any(n.alive for n in self.nodes)
            and bool(self.applications)
            and all(a.status == "RUNNING" for a in self.applications)
            and self.nats.reachable
            and self.nats.jetstream
            and self.registered_agents is not None
        )


def _head_ip(settings: Settings) -> str:
    return settings.gcs_address.rsplit(":", 1)[0]


def dashboard_url(settings: Settings) -> str:
    return f"http://{_head_ip(settings)}:{settings.ports.dashboard}"


def embedded_nats(settings: Settings) -> NatsServer:
    """The embedded NATS server of this data dir."""
    return NatsServer(
        binary=nats_binary(),
        port=settings.ports.nats,
        store_dir=settings.data_dir / "nats",
        bind=settings.nats.bind,
        max_store_mb=settings.nats.max_store_mb,
        user=settings.nats.user,
        password=read_nats_password(settings),
        password_source=(
            f"its password in {settings.nats_password_path} (the head generates it: copy it "
            "from the head's data dir with the Ray token) or AISYS_NATS__PASSWORD"
        ),
    )


def _token(settings: Settings) -> str:
    token = read_ray_token(settings)
    if token is None:
        raise ConfigError(
            f"no Ray token at {settings.ray_token_path}: run `aisys up` on the head first, or "
            "set AISYS_RAY__AUTH_TOKEN"
        )
    return token


def connect(settings: Settings) -> None:
    """Connect this process to the cluster as a Ray driver (token auth on)."""
    if ray.is_initialized():
        return
    host, port = _head_ip(settings), int(settings.gcs_address.rsplit(":", 1)[1])
    if not port_open(host, port):
        raise ClusterError(
            f"no Ray cluster answers at {settings.gcs_address}; start one with `aisys up`"
        )
    if os.environ.get("RAY_AUTH_MODE") != "token" or os.environ.get("RAY_AUTH_TOKEN") != _token(
        settings
    ):
        # Ray reads its auth mode and token once, when it is first imported.
        raise ConfigError(
            "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN must be set before ray is imported; "
            "call cluster.ops.system.export_ray_auth(settings) first"
        )
    ray.init(
        address=settings.gcs_address,
        namespace=RAY_NAMESPACE,
        logging_level=logging.WARNING,
        log_to_driver=False,
    )


def _wait_for_tags(settings: Settings, progress: Progress, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            check_host_tags(settings, ray.cluster_resources())  # type: ignore[no-untyped-call]
            return
        except MissingHostTag as exc:
            if time.monotonic() >= deadline:
                raise
            progress.waiting(f"waiting for a node with host tag '{exc.tag}': {exc.hint}", 10)
        time.sleep(0.5)


def _wait_for_dashboard(client: DashboardClient, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.serve_details()
            return
        except ClusterError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(0.5)


def _failure_text(app: dict[str, Any]) -> str:
    """The app's message and each failed deployment's own (Serve puts the traceback there)."""
    parts = [str(app.get("message", ""))]
    for name, deployment in (app.get("deployments") or {}).items():
        if deployment.get("status") in ("DEPLOY_FAILED", "UNHEALTHY"):
            parts.append(f"{name}: {str(deployment.get('message', ''))[-1500:]}")
    return " | ".join(p for p in parts if p)


def _wait_running(
    client: DashboardClient, progress: Progress, timeout_s: float, deployed_at: float
) -> None:
    names = [spec.name for spec in APPS]
    deadline = time.monotonic() + timeout_s
    stale_grace = time.monotonic() + 10
    while True:
        apps = client.serve_details().get("applications", {})
        states = {name: apps.get(name, {}).get("status", "NOT_STARTED") for name in names}
        failed = {}
        for name, state in states.items():
            # A failure from before this deploy stays reported until Serve picks the config up;
            # when the config did not change, Serve never does, so that failure is final.
            fresh = (
                apps[name].get("last_deployed_time_s", 0) >= deployed_at - 1
                if (name in apps)
                else False
            )
            if state == "DEPLOY_FAILED" and (fresh or time.monotonic() > stale_grace):
                failed[name] = _failure_text(apps[name])
        if failed:
            raise ClusterError(
                f"deployment failed: {failed}; the replica logs are in the dashboard's Serve tab"
            )
        if all(s == "RUNNING" for s in states.values()):
            return
        if time.monotonic() >= deadline:
            raise ClusterError(f"applications not RUNNING after {timeout_s:.0f}s: {states}")
        progress.waiting(", ".join(f"{n}: {s}" for n, s in states.items()))
        time.sleep(0.5)


def deploy(
    settings: Settings, progress: Progress, *, wait_tags_s: float = 0.0, timeout_s: float = 300.0
) -> None:
    """Deploy every application onto the running cluster and wait until all are RUNNING.

    Raises:
        MissingHostTag: a host tag has no node (after waiting ``wait_tags_s``).
        ClusterError: the dashboard refused the config or an application failed.
    """
    connect(settings)
    with progress.step("Checking host tags against the cluster"):
        _wait_for_tags(settings, progress, wait_tags_s)
    config = build_serve_config(settings)
    client = DashboardClient(dashboard_url(settings), _token(settings))
    try:
        with progress.step("Deploying " + ", ".join(spec.name for spec in APPS)):
            _wait_for_dashboard(client, 60)
            deployed_at = time.time()
            client.deploy(config)
            _wait_running(client, progress, timeout_s, deployed_at)
    finally:
        client.close()


class HostPlan(BaseModel):
    """What ``aisys up``/``supervise`` run on this machine for a role."""

    role: str
    hosts: list[str]
    tags: list[str]
    head: bool
    fault_tolerant: bool = Field(description="The head's GCS is backed by the GCS store.")
    runs_nats: bool


def host_plan(settings: Settings, role: str = "embedded", host: str | None = None) -> HostPlan:
    """The host profiles and tags this machine carries in ``role``.

    Raises:
        ConfigError: a worker's host profile is ambiguous or not a worker profile.
    """
    if role == "embedded":
        hosts = list(settings.hosts)
    elif role == "head":
        hosts = [settings.head_host]
    else:
        workers = [n for n, p in settings.hosts.items() if p.role == "worker"]
        if host is None and len(workers) != 1:
            raise ConfigError(f"name the worker's host profile with --host, one of {workers}")
        hosts = [host or workers[0]]
        if hosts[0] not in workers:
            raise ConfigError(f"--host must be a worker host profile, one of {workers}")
    head = role != "worker"
    return HostPlan(
        role=role,
        hosts=hosts,
        tags=[settings.tag_of(h) for h in hosts],
        head=head,
        fault_tolerant=head and gcs_fault_tolerant(settings, role),
        runs_nats=settings.nats.url is None and settings.nats.host in hosts,
    )


def wait_for_head(
    address: str, progress: Progress, timeout_s: float, stop: threading.Event | None = None
) -> None:
    """Wait until the head's GCS at ``address`` accepts connections (a worker boots first).

    Raises:
        ClusterError: it did not answer within ``timeout_s`` (or ``stop`` was set).
    """
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address must be HEAD_IP:PORT, got {address!r}")
    deadline = time.monotonic() + timeout_s
    while not port_open(host, int(port), timeout_s=1):
        if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
            raise ClusterError(
                f"the head's GCS at {address} did not answer within {timeout_s:.0f}s; start "
                "the head (`aisys up --role head`) or check the address and the LAN"
            )
        progress.waiting(f"waiting for the head's GCS at {address}", 10)
        if stop is not None:
            stop.wait(1)
        else:
            time.sleep(1)


def ensure_host_parts(
    settings: Settings,
    progress: Progress,
    plan: HostPlan,
    *,
    address: str | None = None,
    wait_head_s: float = 0.0,
    stop: threading.Event | None = None,
    quiet: bool = False,
) -> bool:
    """Start what of this host's part is not running: NATS, then the Ray node.

    A node whose raylet (or, on the head, GCS) is gone is not running: what is left of it is
    stopped first. A worker waits up to ``wait_head_s`` for the head to answer. ``quiet``: say
    nothing about what already runs (the keeper looks every few seconds).

    Returns:
        True when the Ray node was (re)started.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Keys, tokens and password hashes live here: owner-only, for a data dir from before too.
    make_private(settings.data_dir, skip=(settings.ray_temp_dir,))
    if plan.head:
        ensure_ray_token(settings)
        if settings.nats.url is None:
            ensure_nats_password(settings)
    # NATS first: once this node's tag is in the cluster the head deploys at once, and the
    # services pinned here (ErrorBus, the error-bus bridge) connect to NATS as they start.
    if plan.runs_nats:
        server = embedded_nats(settings)
        if server.process() is None:
            with progress.step(f"Starting embedded nats-server (JetStream) on port {server.port}"):
                server.start()
        elif not quiet:
            progress.line(f"==> nats-server already running on port {server.port}")
    if ray_node_running(settings, head=plan.head):
        if not quiet:
            progress.line(f"==> Ray node ({', '.join(plan.tags)}) already running")
        return False
    left = stale_node_processes(settings, head=plan.head)
    if left:
        progress.line(f"==> Stopped {left} processes left by a dead Ray node of this data dir")
    if not plan.head:
        if address is None:
            raise ConfigError("a worker node needs --address HEAD_IP:PORT of the head's GCS")
        wait_for_head(address, progress, wait_head_s, stop)
    kind = "head" if plan.head else "worker"
    ft = " (GCS fault tolerant)" if plan.fault_tolerant else ""
    with progress.step(f"Starting Ray {kind} node with host tags {', '.join(plan.tags)}{ft}"):
        start_ray_node(
            settings,
            plan.tags,
            head=plan.head,
            address=address,
            fault_tolerant=plan.fault_tolerant,
        )
    return True


def up(
    settings: Settings,
    progress: Progress,
    *,
    role: str = "embedded",
    host: str | None = None,
    address: str | None = None,
    wait_tags_s: float = 600.0,
) -> None:
    """Start this host's part of the system; on the head (or embedded), deploy everything.

    Args:
        role: ``embedded`` (one node with every tag), ``head`` or ``worker``.
        host: the host profile of a worker; defaults to the only worker profile.
        address: ``HOST:PORT`` of the head's GCS, for a worker.
        wait_tags_s: how long the head waits for workers to bring the tags it needs, and a
            worker for the head to answer.
    """
    plan = host_plan(settings, role, host)
    ensure_host_parts(settings, progress, plan, address=address, wait_head_s=wait_tags_s)
    if plan.head:
        deploy(settings, progress, wait_tags_s=wait_tags_s if role == "head" else 0.0)


def down(settings: Settings, progress: Progress) -> None:
    """Stop the keeper, NATS server and Ray node this data dir's ``aisys up`` started.

    The keeper (``aisys supervise``) goes first, so nothing starts the node again; it stops the
    rest itself, and what is left after it (or without one) is stopped here. Nothing else.
    """
    if ray.is_initialized():
        ray.shutdown()
    with progress.step("Stopping the keeper (aisys supervise)"):
        stopped = stop_keeper(settings)
        children = stop_marked(keeper_marker(settings))
        if not stopped and not children:
            progress.line("    not running")
    with progress.step("Stopping embedded nats-server"):
        if not embedded_nats(settings).stop():
            progress.line("    not running")
    with progress.step("Stopping the Ray node"):
        count = stop_ray_node(settings)
        progress.line(f"    stopped {count} processes" if count else "    not running")


def node_statuses(settings: Settings, nodes: list[dict[str, Any]]) -> list[NodeStatus]:
    """Ray's node table (``ray.nodes()``) as aisys sees it: hosts by profile, dead nodes judged.

    Ray keeps a dead node's entry (its resources emptied) for as long as the GCS lives, so a
    dead node is judged by what its entry carried: ``replaced`` when a live node carries the
    same host tags now, ``lost`` when none does. A dead node whose tags are unknown (Ray has
    emptied its resources) is judged by its address against the host profiles.
    """
    by_tag = {p.tag: name for name, p in settings.hosts.items()}
    by_ip = {p.node_ip: name for name, p in settings.hosts.items() if p.node_ip}
    rows = []
    for node in nodes:
        resources: dict[str, float] = node.get("Resources") or {}
        labels: dict[str, str] = node.get("Labels") or {}
        tags = [t for t in by_tag if resources.get(t, 0) > 0]
        if not tags and labels.get("host"):
            tags = [t for t in labels["host"].split(".") if t in by_tag]
        ip = node.get("NodeManagerAddress", "")
        hosts = [by_tag[t] for t in tags] or ([by_ip[ip]] if ip in by_ip else [])
        rows.append((node, tags, hosts, ip, resources))
    live_hosts = {h for node, _, hosts, _, _ in rows if node.get("Alive") for h in hosts}
    result = []
    for node, tags, hosts, ip, resources in rows:
        alive = bool(node.get("Alive"))
        state = "alive" if alive else ("replaced" if set(hosts) <= live_hosts else "lost")
        result.append(
            NodeStatus(
                node_id=node["NodeID"],
                ip=ip,
                alive=alive,
                tags=[settings.tag_of(h) for h in hosts] or tags,
                hosts=hosts,
                state=state,
                cpus=resources.get("CPU", 0.0),
                gpus=resources.get("GPU", 0.0),
            )
        )
    return result


def _nodes(settings: Settings) -> list[NodeStatus]:
    return node_statuses(settings, ray.nodes())  # type: ignore[no-untyped-call]


def _applications(
    settings: Settings, details: dict[str, Any], nodes: list[NodeStatus]
) -> list[AppStatus]:
    tags_by_node = {n.node_id: n for n in nodes}
    apps = details.get("applications", {})
    result = []
    for spec in APPS:
        tag = settings.tag_of(spec.section(settings).host)
        pinned = {name: settings.tag_of(of(settings).host) for name, of in spec.deployments()}
        app = apps.get(spec.name, {})
        deployments = []
        for name, dep in app.get("deployments", {}).items():
            replicas = dep.get("replicas", [])
            running = [r for r in replicas if r.get("state") == "RUNNING"]
            hosts = sorted(
                {
                    ".".join(tags_by_node[r["node_id"]].tags)
                    for r in running
                    if r.get("node_id") in tags_by_node
                }
            )
            target = dep.get("target_num_replicas") or len(replicas)
            deployments.append(
                DeploymentStatus(
                    name=name,
                    host_tag=pinned.get(name, tag),
                    status=dep.get("status", "UNKNOWN"),
                    running_replicas=len(running),
                    target_replicas=int(target),
                    hosts=hosts,
                )
            )
        profile = settings.hosts[spec.section(settings).host]
        scheme = settings.ray.http_scheme
        host_ip = next(
            (n.ip for n in nodes if tag in n.tags and n.alive),
            profile.node_ip or _head_ip(settings),
        )
        result.append(
            AppStatus(
                name=spec.name,
                status=app.get("status", "NOT_DEPLOYED"),
                host_tag=tag,
                url=f"{scheme}://{host_ip}:{settings.ports.http}{APP_ROUTE_PREFIXES[spec.name]}",
                deployments=deployments,
            )
        )
    return result


async def _probe_nats(client: NatsClient) -> NatsStatus:
    url = client.display_url
    parsed = urlsplit(client.url)
    if not port_open(parsed.hostname or "127.0.0.1", parsed.port or 4222, timeout_s=2):
        return NatsStatus(url=url, reachable=False, jetstream=False, detail="connection refused")

    async def quiet(_: Exception) -> None:
        return None  # reported in NatsStatus, not as a traceback on stderr

    try:
        # Bounded from outside: nats-py's connect can keep retrying despite
        # allow_reconnect=False (nats-io/nats.py#645).
        nc = await asyncio.wait_for(
            client.connect(
                connect_timeout=2,
                max_reconnect_attempts=0,
                allow_reconnect=False,
                error_cb=quiet,
            ),
            timeout=5,
        )
    except (NatsError, OSError, TimeoutError, ConfigError) as exc:
        return NatsStatus(url=url, reachable=False, jetstream=False, detail=str(exc) or "refused")
    try:
        info = await nc.jetstream().account_info()
        return NatsStatus(
            url=url, reachable=True, jetstream=True, detail=f"{info.streams} JetStream streams"
        )
    except (NatsError, TimeoutError) as exc:
        return NatsStatus(url=url, reachable=True, jetstream=False, detail=str(exc))
    finally:
        await nc.close()


def _registered_agents() -> int | None:
    try:
        return len(RegistryClient.named().list_agents().get(timeout_s=10))
    except (ValueError, ray.exceptions.RayError):
        return None


def collect_status(settings: Settings) -> SystemStatus:
    """Gather hosts, applications, NATS and the registry size from the running cluster."""
    connect(settings)
    nodes = _nodes(settings)
    client = DashboardClient(dashboard_url(settings), _token(settings))
    try:
        details = client.serve_details()
    finally:
        client.close()
    return SystemStatus(
        dashboard_url=dashboard_url(settings),
        nodes=nodes,
        applications=_applications(settings, details, nodes),
        nats=asyncio.run(_probe_nats(nats_client(settings))),
        registered_agents=_registered_agents(),
    )
