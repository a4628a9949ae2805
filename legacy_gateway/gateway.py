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

import zmq
import zmq.asyncio
from pydantic import BaseModel

from cluster.errors import ConfigError, PortInUse
from cluster.settings import LegacyGatewaySettings, LegacyService
from deployments._auth import Authenticator
from legacy_gateway.coordinator_port import CoordinatorLink, CoordinatorPort
from legacy_gateway.delegate import DelegatePort
from legacy_gateway.registry_port import (
    DigitalTwinPort,
    HealthPort,
    RegistryLink,
    ServiceRegistryPort,
)
from legacy_gateway.security_port import AuthenticationPort, SecurityHealthPort, TrustScorerPort
from legacy_gateway.server import LegacyServer, PortHandler, ServerLimits

__all__ = ["LEGACY_NAMES", "HostGateway", "PortStats"]


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
    LegacyService.REQUEST_COORDINATOR: "RequestCoordinator",
    LegacyService.AUTHENTICATION: "AuthenticationAgent",
    LegacyService.AUTHENTICATION_HEALTH: "AuthenticationAgent",
    LegacyService.TRUST_SCORER: "AgentTrustScorer",
    LegacyService.TRUST_SCORER_DECLARED: "AgentTrustScorer",
}


def _handler(
    service: LegacyService,
    link: RegistryLink,
    settings: LegacyGatewaySettings,
    forward_ctx: zmq.asyncio.Context,
    security: Authenticator | None,
) -> PortHandler:
    address = settings.delegate_to.get(service)
    if address is not None:
        return DelegatePort(LEGACY_NAMES[service], address, forward_ctx)
    if service is LegacyService.SERVICE_REGISTRY:
        return ServiceRegistryPort(link)
    if service is LegacyService.SERVICE_REGISTRY_HEALTH:
        return HealthPort("ServiceRegistry", link)
    if service is LegacyService.SYSTEM_DIGITAL_TWIN:
        return DigitalTwinPort(link)
    if service is LegacyService.REQUEST_COORDINATOR:
        return CoordinatorPort(CoordinatorLink())
    if security is None:
        raise ConfigError(f"legacy service {service.value} needs the SecurityGateway's state")
    if service is LegacyService.AUTHENTICATION:
        return AuthenticationPort(security)
    if service is LegacyService.AUTHENTICATION_HEALTH:
        return SecurityHealthPort(LEGACY_NAMES[service], security)
    return TrustScorerPort(security)  # TRUST_SCORER and TRUST_SCORER_DECLARED


class HostGateway:
    """Every legacy port of host profile ``host``.

    Args:
        settings: the ``legacy_gateway`` section.
        host: the host profile (key of ``settings.ports``) this gateway runs on.
        link: the registry access the handlers share.
        security: token verification and the security actor (the security ports need it).
    """

    def __init__(
        self,
        settings: LegacyGatewaySettings,
        host: str,
        link: RegistryLink,
        security: Authenticator | None = None,
    ) -> None:
        self.host = host
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._forward_ctx = zmq.asyncio.Context()  # delegate mode's outgoing REQ sockets
        limits = ServerLimits(
            max_frame_bytes=settings.max_frame_bytes,
            reply_timeout_s=settings.reply_timeout_s,
            max_pending=settings.max_pending,
        )
        self._servers = {
            service: LegacyServer(
                self._ctx,
                settings.bind,
                port,
                _handler(service, link, settings, self._forward_ctx, security),
                limits,
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
            for server in self._servers.values():
                server.start()
        except PortInUse:
            for server in self._servers.values():
                server.abort()
            self._ctx.term()
            self._forward_ctx.term()
            raise

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

    async def close(self) -> None:
        for server in self._servers.values():
            await server.close()
        self._ctx.term()
        self._forward_ctx.term()
