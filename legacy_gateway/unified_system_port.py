"""UnifiedSystemAgent's legacy ports (7125, health 5569; ``docs/legacy-protocol.md`` 4.4).

The Serve applications are its "services": ``list_services`` and ``get_service_status`` read
them from CoreOrchestrator, ``restart_service`` redeploys one and ``start_service`` redeploys
one that is not running. The legacy ``stop_service`` and ``cleanup_system`` were stubs that
answered success; here they are refused with an error, since a legacy port does not take aisys
services down and there is no system-wide cleanup to run. ``get_system_info`` and the health
dict come from the local copy of the digital twin and the registry; the health status is
``error`` while CoreOrchestrator does not answer, ``degraded`` while the registry view or the
twin's figures are missing, else ``ok``.
"""

from __future__ import annotations

import platform
from collections.abc import Awaitable
from typing import Final

from pydantic import JsonValue

from actors.registry.models import Health
from cluster.base.constants import APP_CORE
from cluster.base.errors import ClusterError
from legacy_gateway._codec import Dialect, Reply, error_reply, iso_time
from legacy_gateway._ports import ActionPort, ActionTable, Fields, Services, text
from legacy_gateway.registry_port import RegistryLink
from legacy_gateway.twin_cache import TwinCache, TwinUnavailable

__all__ = ["UnifiedSystemPort"]

_CORE: Final = ("CoreOrchestrator", APP_CORE)


class UnifiedSystemPort(ActionPort):
    """UnifiedSystemAgent: the Serve applications are its "services"."""

    service = "UnifiedSystemAgent"

    def __init__(self, services: Services, twin: TwinCache, link: RegistryLink, host: str) -> None:
        super().__init__()
        self._services = services
        self._twin = twin
        self._link = link
        self._host = host

    def probe(self) -> Awaitable[object]:
        return self._services.deployment(*_CORE).check_health.remote()  # type: ignore[no-any-return]

    def health_reply(self, problem: str | None) -> Reply:
        """``error`` while CoreOrchestrator (its services, their restarts) is down;
        ``degraded`` while the registry view or the twin's host figures are unavailable."""
        extra: dict[str, JsonValue] = {"initialization_complete": True}
        partial: str | None = None
        try:
            records = self._link.records()
            extra["service_metrics"] = {
                "registered_services": len(records),
                "healthy_services": sum(1 for r in records if r.health is Health.PASSING),
                "unhealthy_services": sum(1 for r in records if r.health is Health.CRITICAL),
            }
        except ClusterError as exc:  # the registry view is not loaded: no counts to give
            extra["service_metrics"] = {"error": str(exc)}
            partial = f"{self.service}: {exc}"
        try:
            host = self._twin.host(self._host)
            extra["system_metrics"] = {
                "cpu_percent": host.cpu_percent,
                "memory_percent": host.memory_percent,
                "disk_usage_percent": host.disk_percent,
            }
        except TwinUnavailable as exc:  # health answers even while the twin is unreachable
            extra["system_metrics"] = {"error": str(exc)}
            partial = partial or f"{self.service}: {exc}"
        base = super().health_reply(problem or partial).model_dump()
        if problem is not None:
            base["status"] = "error"
        return Reply.model_validate({**base, **extra})

    def actions(self) -> ActionTable:
        return {
            "list_services": self._list,
            "get_service_status": self._status,
            "restart_service": self._restart,
            "start_service": self._start,
            "stop_service": self._stop,
            "cleanup_system": self._cleanup,
            "get_system_info": self._info,
        }

    async def _apps(self) -> dict[str, dict[str, JsonValue]]:
        services = await self._services.deployment(*_CORE).services.remote()
        return {
            s.name: {
                "status": s.status,
                "message": s.message,
                "route_prefix": s.route_prefix,
                "deployments": {d.name: d.status for d in s.deployments},
            }
            for s in services
        }

    async def _list(self, fields: Fields) -> Reply:  # noqa: ARG002
        return Reply(status="success", services=await self._apps())

    async def _service(self, fields: Fields) -> tuple[str, dict[str, JsonValue]] | Reply:
        """The named service and its description, or the error reply for a missing/unknown one."""
        name = text(fields, "service_name")
        if name is None:
            return error_reply(Dialect.ACTION, "Missing service_name")
        info = (await self._apps()).get(name)
        if info is None:
            return error_reply(Dialect.ACTION, f"Unknown service: {name}")
        return name, info

    async def _status(self, fields: Fields) -> Reply:
        found = await self._service(fields)
        if isinstance(found, Reply):
            return found
        name, info = found
        return Reply(status="success", service=name, info=info)

    async def _restart(self, fields: Fields) -> Reply:
        name = text(fields, "service_name")
        if name is None:
            return error_reply(Dialect.ACTION, "Missing service_name")
        report = await self._services.deployment(*_CORE).restart_service.remote(name)
        return Reply(
            status="success",
            message=f"Restarted service {name}",
            requested_at=iso_time(report.requested_at),
        )

    async def _start(self, fields: Fields) -> Reply:
        found = await self._service(fields)
        if isinstance(found, Reply):
            return found
        name, info = found
        state = info["status"]
        if state in ("RUNNING", "DEPLOYING"):
            return Reply(
                status="success", message=f"Service {name} is already {str(state).lower()}"
            )
        if state == "DELETING":
            return error_reply(Dialect.ACTION, f"Service {name} is being deleted")
        report = await self._services.deployment(*_CORE).restart_service.remote(name)
        return Reply(
            status="success",
            message=f"Started service {name} (redeployed; it was {state})",
            requested_at=iso_time(report.requested_at),
        )

    def _stop(self, fields: Fields) -> Reply:
        name = text(fields, "service_name") or "?"
        return error_reply(
            Dialect.ACTION,
            f"stop_service {name} refused: aisys services are Serve applications that a legacy "
            "port does not take down (restart_service redeploys one; `aisys down` stops a host)",
        )

    def _cleanup(self, fields: Fields) -> Reply:  # noqa: ARG002
        return error_reply(
            Dialect.ACTION,
            "cleanup_system is not supported: aisys has no system-wide cleanup to run (the "
            "ResourceScheduler expires GPU leases and unloads idle models on its own)",
        )

    def _info(self, fields: Fields) -> Reply:  # noqa: ARG002
        host = self._twin.host(self._host)
        return Reply(
            status="success",
            system_info={
                "hostname": host.hostname,
                "platform": platform.system(),
                "cpu_count": host.cpu_count,
                "memory_total": host.memory_total_mb,
            },
        )
