"""The legacy ports of one host: a :class:`LegacyServer` per configured legacy service.

A plain class, used by the ``legacy`` Serve deployments (:mod:`legacy_gateway.app`): it reads
the host's entry of ``legacy_gateway.ports``, builds the handler each legacy service needs and
binds every port, failing the whole start when one port is taken.

Example::

    gateway = HostGateway(settings.legacy_gateway, "mainpc", link)
    gateway.start()                       # PortInUse names the port and its owner
    gateway.stats()                       # [PortStats(service=..., port=7100, answered=...)]
    await gateway.close()
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

import zmq
import zmq.asyncio
from pydantic import BaseModel
from zmq.auth.thread import ThreadAuthenticator

from cluster.base.constants import APP_LEGACY
from cluster.base.errors import ConfigError, PortInUse
from cluster.base.settings import LegacyGatewaySettings, LegacyService
from deployments.auth import Authenticator
from legacy_gateway._curve import CurveServer
from legacy_gateway._ports import HealthOnlyPort, Services
from legacy_gateway.coordinator_port import (
    CoordinatorHealthPort,
    CoordinatorLink,
    CoordinatorPort,
)
from legacy_gateway.delegate import DelegatePort
from legacy_gateway.migration import MigrationStatus, PortUsage, ServiceMode, mode_of
from legacy_gateway.mirror import MirrorPort
from legacy_gateway.monitor_ports import (
    HealthMonitorPort,
    PerformanceLoggerHealthPort,
    PerformanceLoggerPort,
    PerformanceMonitorPort,
    PredictiveHealthMonitorPort,
    SystemHealthManagerPort,
)
from legacy_gateway.registry_port import (
    DigitalTwinPort,
    HealthPort,
    RegistryLink,
    ServiceRegistryPort,
)
from legacy_gateway.security_port import AuthenticationPort, SecurityHealthPort, TrustScorerPort
from legacy_gateway.server import (
    LegacyServer,
    PortHandler,
    ServerLimits,
    listener_cmdline,
    port_listened,
)
from legacy_gateway.system_ports import (
    AsyncProcessorPort,
    ResourceManagerPort,
    SuggestionPort,
    TaskSchedulerPort,
    UnifiedSystemPort,
    VramOptimizerPort,
)
from legacy_gateway.twin_actions import TwinActions
from legacy_gateway.twin_cache import TwinCache
from legacy_gateway.usage import CallCounter

__all__ = [
    "LEGACY_NAMES",
    "TWIN_READERS",
    "GatewayContext",
    "HostGateway",
    "PortStats",
    "migration_status",
]


class PortStats(BaseModel):
    """One bound legacy port and how many requests it answered."""

    host: str
    service: LegacyService
    port: int
    answered: int
    running: bool


#: The legacy agent each legacy service was (names used in replies and delegate errors).
LEGACY_NAMES: dict[LegacyService, str] = {
    LegacyService.SERVICE_REGISTRY: "ServiceRegistry",
    LegacyService.SERVICE_REGISTRY_HEALTH: "ServiceRegistry",
    LegacyService.SYSTEM_DIGITAL_TWIN: "SystemDigitalTwin",
    LegacyService.SYSTEM_DIGITAL_TWIN_HEALTH: "SystemDigitalTwin",
    LegacyService.REQUEST_COORDINATOR: "RequestCoordinator",
    LegacyService.REQUEST_COORDINATOR_HEALTH: "RequestCoordinator",
    LegacyService.REQUEST_COORDINATOR_SUGGESTIONS: "RequestCoordinator",
    LegacyService.AUTHENTICATION: "AuthenticationAgent",
    LegacyService.AUTHENTICATION_HEALTH: "AuthenticationAgent",
    LegacyService.TRUST_SCORER: "AgentTrustScorer",
    LegacyService.TRUST_SCORER_DECLARED: "AgentTrustScorer",
    LegacyService.TRUST_SCORER_HEALTH: "AgentTrustScorer",
    LegacyService.UNIFIED_SYSTEM: "UnifiedSystemAgent",
    LegacyService.UNIFIED_SYSTEM_HEALTH: "UnifiedSystemAgent",
    LegacyService.PREDICTIVE_HEALTH_MONITOR: "PredictiveHealthMonitor",
    LegacyService.VRAM_OPTIMIZER: "VRAMOptimizerAgent",
    LegacyService.VRAM_OPTIMIZER_MMA: "VRAMOptimizerAgent",
    LegacyService.PERFORMANCE_MONITOR: "PerformanceMonitor",
    LegacyService.HEALTH_MONITOR: "HealthMonitor",
    LegacyService.PERFORMANCE_LOGGER: "PerformanceLoggerAgent",
    LegacyService.PERFORMANCE_LOGGER_DECLARED: "PerformanceLoggerAgent",
    LegacyService.PERFORMANCE_LOGGER_HEALTH: "PerformanceLoggerAgent",
    LegacyService.SYSTEM_HEALTH_MANAGER: "SystemHealthManager",
    LegacyService.SYSTEM_HEALTH_MANAGER_HEALTH: "SystemHealthManager",
    LegacyService.RESOURCE_MANAGER: "ResourceManager",
    LegacyService.TASK_SCHEDULER: "TaskScheduler",
    LegacyService.ASYNC_PROCESSOR: "AsyncProcessor",
}


_H = TypeVar("_H", bound=PortHandler)
logger = logging.getLogger(__name__)


#: How long a new replica waits for its own deployment's previous replica to let go of a port.
REBIND_WAIT_S: Final = 30.0
_REBIND_POLL_S: Final = 0.2
#: Ray titles a Serve replica's process ``ray::ServeReplica:<app>:<deployment>[.<method>]``.
_REPLICA_TITLE: Final = re.compile(rf"ServeReplica:{APP_LEGACY}:(?P<deployment>\w+)")


def _gateway_holding(port: int) -> str | None:
    """The ``legacy`` deployment whose replica holds ``port`` on this machine, if one does."""
    cmdline = listener_cmdline(port)
    match = _REPLICA_TITLE.search(cmdline or "")
    return match.group("deployment") if match else None


#: Services whose ports read host figures from the local copy of the digital twin.
TWIN_READERS: Final = frozenset(
    {
        LegacyService.SYSTEM_DIGITAL_TWIN,
        LegacyService.UNIFIED_SYSTEM,
        LegacyService.PREDICTIVE_HEALTH_MONITOR,
        LegacyService.PERFORMANCE_MONITOR,
        LegacyService.RESOURCE_MANAGER,
    }
)


@dataclass(frozen=True)
class GatewayContext:
    """What the handlers of one host share besides the registry and security state."""

    forward_ctx: zmq.asyncio.Context  # delegate mode's outgoing REQ sockets
    services: Services
    twin: TwinCache
    mainpc: str
    pc2: str


class _Handlers:
    """Builds the handler of each legacy service of one host; ports of one agent share one."""

    def __init__(
        self,
        settings: LegacyGatewaySettings,
        host: str,
        link: RegistryLink,
        security: Authenticator | None,
        context: GatewayContext,
    ) -> None:
        self._s = settings
        self._host = host
        self._link = link
        self._security = security
        self._c = context
        self._built: dict[str, PortHandler] = {}

    def _port(self, service: LegacyService) -> int:
        return self._s.ports[self._host][service]

    def _shared(self, key: str, build: Callable[[], _H]) -> _H:
        """One handler per legacy agent, however many of its ports are bound."""
        if key not in self._built:
            self._built[key] = build()
        handler: _H = self._built[key]  # type: ignore[assignment]
        return handler

    def _need_security(self, service: LegacyService) -> Authenticator:
        if self._security is None:
            raise ConfigError(f"legacy service {service.value} needs the SecurityGateway's state")
        return self._security

    def build(self, service: LegacyService) -> PortHandler:
        address = self._s.delegate_to.get(service)
        if address is not None:
            return DelegatePort(LEGACY_NAMES[service], address, self._c.forward_ctx)
        address = self._s.mirror_to.get(service)
        if address is not None:
            return MirrorPort(
                service,
                LEGACY_NAMES[service],
                address,
                self._c.forward_ctx,
                aisys=self._factories()[service](),
                queue_max=self._s.mirror_queue_max,
                timeout_s=self._s.reply_timeout_s,
            )
        return self._factories()[service]()

    def _factories(self) -> dict[LegacyService, Callable[[], PortHandler]]:
        c, link, s = self._c, self._link, LegacyService

        def twin_port() -> DigitalTwinPort:
            hosts = (c.mainpc, c.pc2)
            actions = TwinActions(c.twin, c.services, link, self._host, hosts)
            return self._shared(
                "sdt",
                lambda: DigitalTwinPort(
                    link,
                    actions,
                    held_max=self._s.held_payloads_max,
                    held_max_bytes=self._s.held_payload_max_bytes,
                ),
            )

        def perf_logger() -> PerformanceLoggerPort:
            return self._shared("pla", lambda: PerformanceLoggerPort(c.services))

        def vram() -> VramOptimizerPort:
            return self._shared("vram", lambda: VramOptimizerPort(c.services, c.mainpc, c.pc2))

        def trust() -> TrustScorerPort:
            security = self._need_security(s.TRUST_SCORER)
            return self._shared("ats", lambda: TrustScorerPort(security))

        def coordinator() -> CoordinatorPort:
            return self._shared("rc", lambda: CoordinatorPort(CoordinatorLink()))

        def shm() -> SystemHealthManagerPort:
            return self._shared("shm", lambda: SystemHealthManagerPort(link, c.services))

        def usa() -> UnifiedSystemPort:
            return self._shared(
                "usa", lambda: UnifiedSystemPort(c.services, c.twin, link, self._host)
            )

        return {
            s.SERVICE_REGISTRY: lambda: ServiceRegistryPort(link),
            s.SERVICE_REGISTRY_HEALTH: lambda: HealthPort("ServiceRegistry", link),
            s.SYSTEM_DIGITAL_TWIN: twin_port,
            s.SYSTEM_DIGITAL_TWIN_HEALTH: lambda: HealthPort("SystemDigitalTwin", link),
            s.REQUEST_COORDINATOR: coordinator,
            s.REQUEST_COORDINATOR_HEALTH: lambda: CoordinatorHealthPort(coordinator()),
            s.REQUEST_COORDINATOR_SUGGESTIONS: lambda: SuggestionPort(
                c.services, self._s.suggestion_idle_s
            ),
            s.AUTHENTICATION: lambda: AuthenticationPort(self._need_security(s.AUTHENTICATION)),
            s.AUTHENTICATION_HEALTH: lambda: SecurityHealthPort(
                "AuthenticationAgent", self._need_security(s.AUTHENTICATION_HEALTH)
            ),
            s.TRUST_SCORER: trust,
            s.TRUST_SCORER_DECLARED: trust,
            s.TRUST_SCORER_HEALTH: lambda: SecurityHealthPort(
                "AgentTrustScorer", self._need_security(s.TRUST_SCORER_HEALTH)
            ),
            s.UNIFIED_SYSTEM: usa,
            s.UNIFIED_SYSTEM_HEALTH: lambda: HealthOnlyPort(usa()),
            s.PREDICTIVE_HEALTH_MONITOR: lambda: PredictiveHealthMonitorPort(
                c.services, link, c.twin, self._host
            ),
            s.VRAM_OPTIMIZER: vram,
            s.VRAM_OPTIMIZER_MMA: vram,
            s.PERFORMANCE_MONITOR: lambda: PerformanceMonitorPort(c.services, c.twin, self._host),
            s.HEALTH_MONITOR: lambda: HealthMonitorPort(link, self._port(s.HEALTH_MONITOR)),
            s.PERFORMANCE_LOGGER: perf_logger,
            s.PERFORMANCE_LOGGER_DECLARED: perf_logger,
            s.PERFORMANCE_LOGGER_HEALTH: lambda: PerformanceLoggerHealthPort(perf_logger()),
            s.SYSTEM_HEALTH_MANAGER: shm,
            s.SYSTEM_HEALTH_MANAGER_HEALTH: lambda: HealthOnlyPort(shm()),
            s.RESOURCE_MANAGER: lambda: ResourceManagerPort(c.services, c.twin, self._host),
            s.TASK_SCHEDULER: lambda: TaskSchedulerPort(
                c.services, self._s.task_functions, self._host
            ),
            s.ASYNC_PROCESSOR: lambda: AsyncProcessorPort(
                c.services, self._s.task_functions, self._host
            ),
        }


class HostGateway:
    """Every legacy port of host profile ``host``.

    Args:
        settings: the ``legacy_gateway`` section.
        host: the host profile (key of ``settings.ports``) this gateway runs on.
        link: the registry access the handlers share.
        security: token verification and the security actor (the security ports need it).
        hosts: the host profiles of MainPC and PC2, in that order.
        deployment: the Serve deployment this gateway runs in, to tell a port held by its own
            previous replica (waited for) from one held by the other host's gateway on the same
            machine (left to it); None outside Serve.
    """

    def __init__(
        self,
        settings: LegacyGatewaySettings,
        host: str,
        link: RegistryLink,
        security: Authenticator | None = None,
        hosts: tuple[str, str] = ("mainpc", "pc2"),
        deployment: str | None = None,
    ) -> None:
        self.host = host
        self._settings = settings
        self._deployment = deployment
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._forward_ctx = zmq.asyncio.Context()
        services = Services()
        self.twin = TwinCache(services, settings.twin_refresh_s)
        context = GatewayContext(self._forward_ctx, services, self.twin, *hosts)
        handlers = _Handlers(settings, host, link, security, context)
        self._uses_twin = bool(TWIN_READERS & set(settings.ports.get(host, {})))
        curve = None
        self._auth: ThreadAuthenticator | None = None
        if settings.curve_certificates_dir is not None:
            curve = CurveServer.load(settings.curve_certificates_dir)
            self._auth = curve.start_authenticator(self._ctx)
        limits = ServerLimits(
            max_frame_bytes=settings.max_frame_bytes,
            reply_timeout_s=settings.reply_timeout_s,
            max_pending=settings.max_pending,
            curve=curve,
            max_message_bytes=settings.max_message_bytes,
        )
        self._servers = {
            service: LegacyServer(
                self._ctx,
                settings.bind,
                port,
                handlers.build(service),
                limits,
                CallCounter(settings.usage_max_keys),
            )
            for service, port in sorted(settings.ports.get(host, {}).items())
        }

    @property
    def running(self) -> bool:
        return all(server.running for server in self._servers.values())

    def start(self) -> None:
        """Bind every port; on a taken port nothing stays bound.

        Raises:
            PortInUse: names the port and the process that holds it.
        """
        try:
            for service, server in list(self._servers.items()):
                if not self._bind(server):
                    # One machine carrying both host tags (the embedded default): a port both
                    # hosts list (7120) is served once, by whichever deployment bound it first.
                    logger.info(
                        "legacy port %d is served by this host's other gateway", server.port
                    )
                    server.abort()
                    del self._servers[service]
        except PortInUse:
            for server in self._servers.values():
                server.abort()
            self._term()
            raise
        if self._uses_twin:
            self.twin.start()

    def _bind(self, server: LegacyServer) -> bool:
        """Bind ``server``'s port; False when the other gateway deployment serves it.

        A port held by this deployment's previous replica (a restart: Serve may start the new
        replica before the old one has exited) is waited for, up to ``REBIND_WAIT_S``.

        Raises:
            PortInUse: another process holds the port, or the previous replica kept it.
        """
        deadline = time.monotonic() + REBIND_WAIT_S
        while True:
            try:
                server.start()
                return True
            except PortInUse:
                holder = _gateway_holding(server.port)
                if holder is None:
                    if port_listened(server.port) or time.monotonic() > deadline:
                        raise
                    continue  # its holder exited between the bind and the look-up: bind again
                if holder != self._deployment:
                    return False
                if time.monotonic() > deadline:
                    raise
            time.sleep(_REBIND_POLL_S)

    def stats(self) -> list[PortStats]:
        return [
            PortStats(
                host=self.host,
                service=service,
                port=server.port,
                answered=server.answered,
                running=server.running,
            )
            for service, server in self._servers.items()
        ]

    def migration(self) -> list[PortUsage]:
        """Each bound port's migration mode and callers (``aisys migrate status``)."""
        rows = []
        for service, server in self._servers.items():
            mode, address = mode_of(self._settings, service)
            handler = server.handler
            counter = server.counter
            rows.append(
                PortUsage(
                    host=self.host,
                    service=service,
                    legacy_name=LEGACY_NAMES[service],
                    port=server.port,
                    mode=mode,
                    legacy_address=address,
                    calls=counter.snapshot() if counter is not None else [],
                    overflowed=counter.overflowed if counter is not None else 0,
                    mirror=handler.stats if isinstance(handler, MirrorPort) else None,
                )
            )
        return rows

    async def close(self) -> None:
        await self.twin.stop()
        for server in self._servers.values():
            await server.close()
            if isinstance(server.handler, MirrorPort):
                await server.handler.close()
        self._term()

    def _term(self) -> None:
        if self._auth is not None:  # its ZAP socket lives in the context
            self._auth.stop()
        self._ctx.term()
        self._forward_ctx.term()


def migration_status(settings: LegacyGatewaySettings, ports: list[PortUsage]) -> MigrationStatus:
    """Every configured service's mode, and the rows of the ports the gateways bind."""
    services = sorted({s for table in settings.ports.values() for s in table})
    modes = []
    for service in services:
        mode, address = mode_of(settings, service)
        modes.append(
            ServiceMode(
                service=service,
                legacy_name=LEGACY_NAMES[service],
                mode=mode,
                legacy_address=address,
            )
        )
    return MigrationStatus(services=modes, ports=sorted(ports, key=lambda p: (p.host, p.port)))
