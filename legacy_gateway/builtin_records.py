"""Built-in registry records of the consolidated services' legacy names.

The fifteen consolidated agents no longer register anywhere, yet legacy clients still look them
up by name: DynamicIdentityAgent DISCOVERs ``RequestCoordinator`` on 7120, BaseAgent asks
ServiceRegistry's ``get_agent_endpoint`` on 7100 for any peer it has no address of
(docs/legacy-protocol.md 2.3, 3.1, 6). Each legacy name resolves to the gateway port that
answers for it now: the address of the host serving that port (its host profile's ``node_ip``, as a
loopback registrant on that host is published) and that legacy service's port from
``legacy_gateway.ports`` (the error bus: ``errors.bridge.sub_port`` on the ErrorBus host).

The records are built once per gateway replica and kept beside the registry view by
:class:`~legacy_gateway.registry_port.RegistryLink`; a real registration under the same name
(an old agent still running, e.g. in delegate mode) wins over the built-in one for as long as
the registry holds it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Final

from actors.registry.models import AgentRecord, Health
from cluster.base.settings import LegacyGatewaySettings, LegacyService

__all__ = ["BUILTIN_SERVICES", "BUILTIN_TAG", "ERROR_BUS", "builtin_records"]

S = LegacyService

#: Legacy name -> (main port's service, its health port's service or None).
BUILTIN_SERVICES: Final[dict[str, tuple[LegacyService, LegacyService | None]]] = {
    "ServiceRegistry": (S.SERVICE_REGISTRY, S.SERVICE_REGISTRY_HEALTH),
    "SystemDigitalTwin": (S.SYSTEM_DIGITAL_TWIN, S.SYSTEM_DIGITAL_TWIN_HEALTH),
    "RequestCoordinator": (S.REQUEST_COORDINATOR, S.REQUEST_COORDINATOR_HEALTH),
    "UnifiedSystemAgent": (S.UNIFIED_SYSTEM, S.UNIFIED_SYSTEM_HEALTH),
    "PredictiveHealthMonitor": (S.PREDICTIVE_HEALTH_MONITOR, None),
    "PerformanceMonitor": (S.PERFORMANCE_MONITOR, None),
    "HealthMonitor": (S.HEALTH_MONITOR, None),
    "PerformanceLoggerAgent": (S.PERFORMANCE_LOGGER, S.PERFORMANCE_LOGGER_HEALTH),
    "SystemHealthManager": (S.SYSTEM_HEALTH_MANAGER, S.SYSTEM_HEALTH_MANAGER_HEALTH),
    "ResourceManager": (S.RESOURCE_MANAGER, None),
    "TaskScheduler": (S.TASK_SCHEDULER, None),
    "AsyncProcessor": (S.ASYNC_PROCESSOR, None),
    # The class registers as "VRAMOptimizerAgent"; clients also ask for "VRAMOptimizer".
    "VRAMOptimizerAgent": (S.VRAM_OPTIMIZER, None),
    "VRAMOptimizer": (S.VRAM_OPTIMIZER, None),
    "AuthenticationAgent": (S.AUTHENTICATION, S.AUTHENTICATION_HEALTH),
    "AgentTrustScorer": (S.TRUST_SCORER, S.TRUST_SCORER_HEALTH),
}
#: The legacy error bus's service name (``ErrorBusService``, name "ErrorBus", section 4.14).
ERROR_BUS: Final = "ErrorBus"
#: Tag of every built-in record (never stored in the registry).
BUILTIN_TAG: Final = "legacy-builtin"


def _address(node_ip: str | None, bind: str) -> str:
    """Where other hosts reach a port bound at ``bind`` on a host with ``node_ip``."""
    if node_ip:
        return node_ip
    try:
        wildcard = ipaddress.ip_address(bind).is_unspecified
    except ValueError:
        wildcard = False
    return "127.0.0.1" if wildcard or not bind else bind


def _record(
    name: str, host: str, port: int, health_port: int | None, location: str, at: float
) -> AgentRecord:
    return AgentRecord(
        agent_id=name,
        agent_type=name,
        host=host,
        port=port,
        health_check_port=health_port,
        capabilities=[],
        tags=[BUILTIN_TAG],
        metadata={"location": location},
        check="none",
        ttl_s=None,
        deregister_critical_after_s=0.0,
        health=Health.PASSING,
        health_note="answered by the aisys legacy gateway",
        registered_at=at,
        last_seen_at=at,
        critical_since=None,
        source=None,
    )


def builtin_records(
    settings: LegacyGatewaySettings,
    own_host: str,
    hosts: tuple[str, str],
    node_ips: Mapping[str, str | None],
    at: float,
    error_bus: tuple[str, int, str] | None = None,
) -> dict[str, AgentRecord]:
    """Every consolidated service's legacy name -> the gateway endpoint that answers it.

    A service bound on several hosts (SystemDigitalTwin on both) resolves to ``own_host``'s
    port when this host binds it, else to the first of ``hosts`` that does. A service no host
    binds has no record.

    Args:
        settings: the ``legacy_gateway`` section (its ``ports`` per host and ``bind``).
        own_host: the host profile of the gateway answering the lookups.
        hosts: the host profiles of MainPC and PC2 (their ``location`` words).
        node_ips: each host profile's ``node_ip`` (None: one machine; the bind address, or
            127.0.0.1 for a wildcard bind, stands in).
        at: the records' registration time (the replica's start).
        error_bus: (host profile, SUB port, bind address) of the 7150 bridge, if any.
    """
    order = [own_host, *hosts, *settings.ports]
    locations = {hosts[0]: "MainPC", hosts[1]: "PC2"}
    records: dict[str, AgentRecord] = {}
    for name, (main, health) in BUILTIN_SERVICES.items():
        host = next((h for h in order if main in settings.ports.get(h, {})), None)
        if host is None:
            continue
        ports = settings.ports[host]
        address = _address(node_ips.get(host), settings.bind)
        health_port = ports.get(health) if health is not None else None
        location = locations.get(host, host)
        records[name] = _record(name, address, ports[main], health_port, location, at)
    if error_bus is not None:
        host, port, bind = error_bus
        address = _address(node_ips.get(host), bind)
        records[ERROR_BUS] = _record(ERROR_BUS, address, port, None, locations.get(host, host), at)
    return records
