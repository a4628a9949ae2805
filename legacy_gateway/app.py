"""The legacy gateway's Serve application (``legacy``): one deployment per host tag.

:class:`LegacyGatewayPc2` runs on the ErrorBus host: the error-bus bridge on port 7150
(:mod:`legacy_gateway.error_bridge`) and that host's legacy ports (7120 by default).
:class:`LegacyGatewayMainpc` runs on ``legacy_gateway.host`` and binds that host's legacy ports
(7100, 8100, 7120 and 26002 by default). Registry reads come from a local copy of the agent registry
(:mod:`legacy_gateway.registry_port`). ``GET /legacy/ports`` lists every bound port.

No ``from __future__ import annotations`` here: FastAPI reads the route annotations at runtime.
"""

import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict
from ray import serve
from ray.serve import Application

from actors.errors.publisher import ErrorPublisher
from actors.errors.spool import Spool
from actors.registry.actor import get_or_create_registry
from actors.registry.follower import RegistryFollower
from actors.security.models import Scope
from cluster.base.errors import ClusterError
from cluster.base.nats_client import NatsClient
from cluster.base.settings import ErrorBusSettings, LegacyGatewaySettings, RegistrySettings
from deployments.auth import AuthArgs, Authenticator, auth_first, install_auth, require
from deployments.errors.core import SPOOL_FILE
from deployments.http import install_error_handlers
from legacy_gateway._ports import Services
from legacy_gateway.builtin_records import builtin_records
from legacy_gateway.error_bridge import BridgeStats, ErrorBridge
from legacy_gateway.feeds import FeedStats, LegacyFeeds
from legacy_gateway.gateway import HostGateway, PortStats, migration_status
from legacy_gateway.migration import MigrationStatus, PortUsage
from legacy_gateway.registry_port import RegistryLink

__all__ = ["LegacyAppArgs", "LegacyGatewayMainpc", "LegacyGatewayPc2", "build_app"]


class LegacyAppArgs(BaseModel):
    """Arguments of the ``legacy`` application (the ``args`` block of its Serve config)."""

    model_config = ConfigDict(extra="forbid")

    errors: ErrorBusSettings
    nats: NatsClient
    errors_dir: str
    auth: AuthArgs
    gateway: LegacyGatewaySettings
    registry: RegistrySettings
    data_dir: str
    registry_host_tag: str
    mainpc_host: str
    pc2_host: str
    #: Each host profile's ``node_ip`` (None where unset: one machine, loopback is reachable).
    node_ips: dict[str, str | None] = {}


class _HostPorts:
    """The registry follower and the legacy ports of one host, as a deployment holds them."""

    def __init__(self, args: LegacyAppArgs, host: str) -> None:
        registry = get_or_create_registry(
            args.registry, Path(args.data_dir) / "registry.sqlite3", args.registry_host_tag
        )
        self.follower = RegistryFollower(registry)
        self.follower.start()
        hosts = (args.mainpc_host, args.pc2_host)
        bridge = args.errors.bridge
        # The consolidated services' legacy names resolve to these ports (a registration wins).
        builtins = builtin_records(
            args.gateway,
            host,
            hosts,
            args.node_ips,
            time.time(),
            error_bus=(args.pc2_host, bridge.sub_port, bridge.bind),
        )
        link = RegistryLink(
            registry,
            self.follower,
            args.gateway.reply_timeout_s,
            advertised_host=args.node_ips.get(host),
            quotas=args.registry,
            builtins=builtins,
        )
        self.authenticator = Authenticator(args.auth)
        deployment = serve.get_replica_context().deployment
        self.gateway = HostGateway(
            args.gateway, host, link, self.authenticator, hosts, deployment=deployment
        )
        self.gateway.start()

    async def wait_synced(self) -> None:
        if not await self.follower.wait_synced(30.0):
            raise ClusterError("legacy: the registry feed did not answer within 30 s")

    def check(self) -> None:
        if not self.gateway.running:
            raise ClusterError(f"legacy: a legacy port of host {self.gateway.host} stopped")
        if not self.follower.running:
            raise ClusterError("legacy: the registry follower stopped")

    async def close(self) -> None:
        await self.gateway.close()
        await self.follower.stop()


api = FastAPI(
    title="aisys legacy gateway",
    description="ZeroMQ servers on the legacy ports, translated to the aisys services.",
    version="1",
)
install_error_handlers(api)
auth_first(api)  # every scoped route checks its token before the request is parsed


@serve.deployment
class LegacyGatewayMainpc:
    """The legacy gateway on ``legacy_gateway.host``: that host's legacy ports."""

    def __init__(self, args: LegacyAppArgs) -> None:
        self._ports = _HostPorts(args, args.mainpc_host)
        # RequestCoordinator's pickled SUB feeds were followed on its host, MainPC.
        self._feeds = LegacyFeeds(args.gateway, Services())
        self._feeds.start()

    async def check_health(self) -> None:
        self._feeds.check()
        self._ports.check()

    async def ports(self) -> list[PortStats]:
        await self._ports.wait_synced()
        return self._ports.gateway.stats()

    async def feeds(self) -> dict[str, FeedStats]:
        return self._feeds.stats()

    async def migration(self) -> list[PortUsage]:
        return self._ports.gateway.migration()

    async def __del__(self) -> None:
        await self._feeds.close()
        await self._ports.close()


@serve.deployment
@serve.ingress(api)
class LegacyGatewayPc2:
    """The legacy gateway on the ErrorBus host: the error-bus bridge and that host's ports."""

    def __init__(self, args: LegacyAppArgs, mainpc: Any) -> None:
        self._mainpc = mainpc
        self._settings = args.gateway
        self._ports = _HostPorts(args, args.pc2_host)
        install_auth(api, self._ports.authenticator)
        errors = args.errors
        # The bridge shares the host's spool file with ErrorBus: whichever is connected drains it.
        spool = Spool(Path(args.errors_dir) / SPOOL_FILE, errors.spool_max_mb * 1024 * 1024)
        self._publisher = ErrorPublisher(args.nats, errors, spool, create_stream=True)
        self._publisher.start()
        self._bridge = ErrorBridge(self._publisher, errors.bridge, errors.max_event_bytes)
        self._bridge.start()

    async def check_health(self) -> None:
        if not self._publisher.running or not self._bridge.running:
            raise ClusterError("legacy: the error-bus bridge has stopped")
        self._ports.check()

    @api.get(
        "/ports",
        summary="Every legacy port the gateway binds, per host, with its request count",
        dependencies=[require(Scope.READ)],
    )
    async def ports(self) -> list[PortStats]:
        await self._ports.wait_synced()
        mainpc: list[PortStats] = await self._mainpc.ports.remote()
        return [*mainpc, *self._ports.gateway.stats()]

    @api.get(
        "/feeds",
        summary="The pickled interrupt (5576) and language-analysis (5577) feeds followed",
        dependencies=[require(Scope.READ)],
    )
    async def feeds(self) -> dict[str, FeedStats]:
        feeds: dict[str, FeedStats] = await self._mainpc.feeds.remote()
        return feeds

    @api.get(
        "/migrate",
        summary="Each legacy service's migration mode, and per port and action who still "
        "calls it (counts, last seen)",
        dependencies=[require(Scope.READ)],
    )
    async def migrate(self) -> MigrationStatus:
        mainpc: list[PortUsage] = await self._mainpc.migration.remote()
        return migration_status(self._settings, [*mainpc, *self._ports.gateway.migration()])

    @api.get(
        "/error-bridge",
        summary="Counters of the error-bus bridge on port 7150",
        dependencies=[require(Scope.READ)],
    )
    async def error_bridge(self) -> BridgeStats:
        return self._bridge.stats

    async def __del__(self) -> None:
        await self._ports.close()
        await self._bridge.close()
        await self._publisher.close()


def build_app(args: dict[str, Any]) -> Application:
    """Serve application builder named by the ``legacy`` import path of the Serve config.

    Raises:
        pydantic.ValidationError: ``args`` is not a valid :class:`LegacyAppArgs`.
    """
    app_args = LegacyAppArgs.model_validate(args)
    mainpc = LegacyGatewayMainpc.bind(app_args)  # type: ignore[attr-defined]
    return LegacyGatewayPc2.bind(app_args, mainpc)  # type: ignore[attr-defined,no-any-return]
