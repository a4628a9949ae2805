"""A private aisys system for one benchmark run, and extra Serve applications deployed beside it.

:func:`running_system` starts what ``aisys up`` starts (a Ray head carrying every host tag, the
embedded nats-server, the Serve applications) on random ports with a fresh short data dir, and
stops exactly those processes and removes the data dir afterwards, also on Ctrl-C, SIGTERM or
an error. :func:`deploy_with_extra_apps` adds baseline applications to the same cluster.

Ray reads its token once, when it is first imported, so this module imports nothing that
imports Ray at the top; the Ray-using modules load after the token is in the environment.

Example::

    settings = bench_settings()
    with running_system(settings):
        deploy_with_extra_apps(settings, [my_app_config])
        ...
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from cluster.base.errors import ClusterError, ConfigError
from cluster.base.settings import (
    LegacyGatewaySettings,
    NatsSettings,
    PortSettings,
    Settings,
    load_settings,
)
from cluster.ops._dashboard import DashboardClient
from cluster.ops._progress import Progress
from cluster.ops._ray_node import export_ray_auth, read_ray_token

__all__ = [
    "NOOP",
    "REPO_ROOT",
    "admin_headers",
    "baseline_app",
    "bench_settings",
    "deploy_with_extra_apps",
    "is_shared",
    "running_system",
    "shared_system",
]

#: ``(builder import path, deployment name)`` of the no-op baseline in :mod:`bench._noop`
#: (named here: importing that module would import Ray before the token is set).
NOOP = ("bench._noop:build_app", "Noop")

#: Password of the private system's first admin; the benchmarks log in with it.
ADMIN_PASSWORD = "bench-admin-password"

#: The checkout the benchmark runs from; replicas of extra apps import ``bench`` from here.
REPO_ROOT = Path(__file__).resolve().parents[1]


#: Ports below the kernel's ephemeral range and above Ray's worker ports, so no process binding
#: port 0 takes one a benchmark system was promised; each handed out once.
_BENCH_PORTS = range(20000, 32768)
_HANDED_OUT: set[int] = set()


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    for _ in range(1000 * count):
        if len(ports) == count:
            return sorted(ports)
        port = random.choice(_BENCH_PORTS)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        ports.append(port)
    raise RuntimeError(f"no {count} free ports in {_BENCH_PORTS}")


def _legacy_ports() -> dict[str, dict[str, int]]:
    """The default legacy port map of every host, with free random ports instead."""
    defaults = LegacyGatewaySettings().ports
    free = iter(_free_ports(sum(len(services) for services in defaults.values())))
    return {
        host: {str(service): next(free) for service in services}
        for host, services in defaults.items()
    }


#: The one system :func:`shared_system` runs for every benchmark of a ``bench.quick`` run.
_SHARED: Settings | None = None


def bench_settings(**overrides: Any) -> Settings:
    """Settings for a private system: random free ports, a fresh short data dir in /tmp.

    Inside :func:`shared_system`, the shared system's settings (started with every
    benchmark's overrides) instead.
    """
    if _SHARED is not None:
        return _SHARED
    names = list(PortSettings.model_fields)
    free = _free_ports(len(names) + 2)
    ports = PortSettings.model_validate(dict(zip(names, free, strict=False)))
    bridge = {"bind": "127.0.0.1", "sub_port": free[-2], "pub_port": free[-1]}
    data_dir = Path(tempfile.mkdtemp(prefix="aisys-bench-", dir="/tmp"))
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "ports": ports,
        "nats": NatsSettings(bind="127.0.0.1"),
        "security": {"admin_password": ADMIN_PASSWORD, "access_ttl_s": 3600},
        # Never the legacy ports: a benchmark must not collide with a running aisys.
        "errors": {"bridge": bridge},
        "legacy_gateway": {"bind": "127.0.0.1", "ports": _legacy_ports()},
    }
    values.update(overrides)
    try:
        return load_settings(**values)
    except ConfigError:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def running_system(settings: Settings, progress: Progress | None = None) -> Iterator[Settings]:
    """Start the whole system for ``settings``; stop it and delete its data dir on exit.

    SIGTERM is turned into ``KeyboardInterrupt`` so ``kill`` cleans up like Ctrl-C does, and a
    second Ctrl-C during clean-up is ignored so it cannot leave processes behind.
    """
    if is_shared(settings):
        yield settings  # started by shared_system, which stops it
        return
    progress = progress or Progress()
    # The token has to be in the environment before Ray is imported (below).
    export_ray_auth(settings, generate=True)
    from cluster.ops import system

    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        system.up(settings, progress, wait_tags_s=30.0)
        from cluster.ops.identity import ensure_admin

        ensure_admin(settings)
        # ray.init (inside up) installs its own SIGTERM handlers; take SIGTERM back.
        signal.signal(signal.SIGTERM, _raise_interrupt)
        yield settings
    finally:
        # Ray's native failure-signal handler, when it catches a SIGTERM, arms a 3 s alarm
        # that aborts the process; cancel it so the clean-up below gets to finish.
        signal.alarm(0)
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            system.down(settings, progress)
        finally:
            shutil.rmtree(settings.data_dir, ignore_errors=True)
            signal.signal(signal.SIGINT, previous_int)
            signal.signal(signal.SIGTERM, previous_term)


@contextmanager
def shared_system(settings: Settings) -> Iterator[Settings]:
    """Run one system that every benchmark started inside uses instead of its own."""
    global _SHARED
    with running_system(settings) as running:
        _SHARED = running
        try:
            yield running
        finally:
            _SHARED = None


def is_shared(settings: Settings) -> bool:
    """Whether ``settings`` are those of the running :func:`shared_system`."""
    return _SHARED is not None and settings.data_dir == _SHARED.data_dir


def admin_headers(settings: Settings) -> dict[str, str]:
    """Log in as the private system's admin; return the ``Authorization`` header to send."""
    import httpx

    response = httpx.post(
        f"http://127.0.0.1:{settings.ports.http}/security/token",
        json={"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD},
        timeout=30,
    )
    if response.status_code != 200:
        raise ClusterError(f"bench: admin login failed: {response.text}")
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def baseline_app(
    settings: Settings,
    like: str,
    name: str,
    target: tuple[str, str],
    args: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Serve application entry with the replica options (host pin included) of app ``like``.

    Args:
        like: the aisys application whose deployment options the baseline copies.
        name: the baseline's application name; its route is ``/<name>``.
        target: ``(import path of the builder, name of the deployment class it binds)``.
        args: the builder's args, if it takes any.
    """
    from cluster.ops.serve_config import build_serve_config

    app = next(a for a in build_serve_config(settings)["applications"] if a["name"] == like)
    import_path, deployment = target
    entry: dict[str, Any] = {
        "name": name,
        "route_prefix": f"/{name}",
        "import_path": import_path,
        # `bench` is not part of the installed package: replicas import it from this checkout.
        "runtime_env": {"env_vars": {"PYTHONPATH": str(REPO_ROOT)}},
        "deployments": [{**app["deployments"][0], "name": deployment}],
    }
    if args is not None:
        entry["args"] = args
    return entry


def deploy_with_extra_apps(
    settings: Settings, extra_apps: list[dict[str, Any]], timeout_s: float = 180.0
) -> None:
    """Deploy aisys's applications plus ``extra_apps`` and wait until all are RUNNING.

    A Serve REST PUT replaces the whole set of applications, so the config is aisys's own
    (unchanged, so its applications keep running) with the extra ones appended.

    Args:
        settings: the running system's settings.
        extra_apps: application entries of a Serve config (``name``, ``import_path``, ...).
        timeout_s: how long to wait for every application to reach RUNNING.

    Raises:
        ClusterError: the dashboard refused the config, or an application failed or timed out.
    """
    from ray.serve.schema import ServeDeploySchema

    from cluster.ops.serve_config import build_serve_config
    from cluster.ops.system import dashboard_url

    config = build_serve_config(settings)
    config["applications"] = [*config["applications"], *extra_apps]
    ServeDeploySchema.model_validate(config)
    names = [app["name"] for app in config["applications"]]
    client = DashboardClient(dashboard_url(settings), read_ray_token(settings) or "")
    try:
        client.deploy(config)
        _wait_running(client, names, timeout_s)
    finally:
        client.close()


def _wait_running(client: DashboardClient, names: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        apps = client.serve_details().get("applications", {})
        states = {name: apps.get(name, {}).get("status", "NOT_STARTED") for name in names}
        failed = {n: apps[n].get("message", "") for n, s in states.items() if s == "DEPLOY_FAILED"}
        if failed:
            raise ClusterError(f"bench: deployment failed: {failed}")
        if all(state == "RUNNING" for state in states.values()):
            return
        if time.monotonic() >= deadline:
            raise ClusterError(f"bench: applications not RUNNING after {timeout_s:.0f}s: {states}")
        time.sleep(0.5)
