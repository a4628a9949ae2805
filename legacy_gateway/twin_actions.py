"""SystemDigitalTwin's metric, load and VRAM actions (``docs/legacy-protocol.md`` 3.2 and 4.2).

The registry side of 7120 is :class:`legacy_gateway.registry_port.DigitalTwinPort`; these are
the rest of the twin's dialects, answered from the local copy of CoreOrchestrator's twin (host
figures measured on each host, GPUs from NVML) instead of the legacy constants:

* ``command`` ``GET_METRICS`` (VRAMOptimizer's VRAM poll) and ``REPORT_MODEL_VRAM``
  (ModelManagerAgent's report after every load/unload, which feeds the ResourceScheduler's
  ledger of MMA's models);
* ``action`` ``get_metrics``, ``get_history``, ``simulate_load`` (``value``, or the ``value_mb``
  VRAMOptimizer really sends), ``get_ok_agents``, ``update_vram_metrics`` and the simple
  ``register_agent`` (``agent_name`` + ``status``), which becomes a heartbeat of that agent;
* ``report_error`` (BaseAgent's ErrorReport) and ``publish_event`` (its SystemEvent), which the
  old SDT only logged: both are published to ErrorBus, the event at severity ``info``;
* the agent-status replies (``get_all_agents``, ``get_registered_agents``, ``get_agent_info``,
  raw ``GET_ALL_STATUS``), built from registry records with the legacy status words.

Every method runs on the port's thread; what calls a service returns a coroutine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import JsonValue, ValidationError

from actors.registry.models import AgentRecord, Heartbeat
from cluster.base.constants import APP_CORE, APP_ERRORS
from deployments.core.twin_models import HostTwin, SimulateLoadRequest, SimulateLoadResult
from deployments.errors.normalize import normalize_record
from legacy_gateway._codec import Dialect, Reply, error_reply, iso_time
from legacy_gateway._ports import Fields, Services, guarded, legacy_status, number, text
from legacy_gateway.server import Outcome
from legacy_gateway.twin_cache import TwinCache

__all__ = ["TwinActions", "agent_info", "agent_status", "all_status", "registered_agent"]

_SERVICE: Final = "SystemDigitalTwin"
#: The simple ``register_agent``'s status words and the registry check state they mean.
_STATUS: Final[dict[str, Any]] = {
    "ok": "passing",
    "healthy": "passing",
    "running": "passing",
    "active": "passing",
    "success": "passing",
    "initializing": "warning",
    "degraded": "warning",
    "warning": "warning",
    "error": "critical",
    "failed": "critical",
    "stopped": "critical",
    "unhealthy": "critical",
}
_LOAD_FIELDS: Final = {"vram": "vram_mb", "cpu": "cpu_percent", "ram": "ram_mb"}


def agent_status(record: AgentRecord) -> dict[str, JsonValue]:
    """An agent's entry in the old SDT's status table: ``location``, ``status``, ``last_seen``."""
    return {
        "location": record.metadata.get("location", record.host),
        "status": legacy_status(record.health),
        "last_seen": iso_time(record.last_seen_at),
    }


def all_status(records: list[AgentRecord]) -> dict[str, JsonValue]:
    """``{agent: {location, status, last_seen}}`` (``get_all_agents``, ``GET_ALL_STATUS``)."""
    return {r.agent_id: agent_status(r) for r in records}


def registered_agent(record: AgentRecord) -> dict[str, JsonValue]:
    """One entry of ``get_registered_agents`` (section 4.2)."""
    status = agent_status(record)
    return {
        "name": record.agent_id,
        "status": status["status"],
        "location": status["location"],
        "last_updated": status["last_seen"],
        "host": record.host,
        "port": record.port,
        "health_check_port": record.health_check_port,
        "agent_type": record.agent_type,
        "capabilities": list(record.capabilities),
        "script_path": record.metadata.get("script_path", ""),
    }


def agent_info(link: Any, fields: Fields) -> Reply:
    """``get_agent_info`` (what Error_Management_System asks) from ``link``'s view."""
    name = text(fields, "agent_name")
    if name is None:
        return error_reply(Dialect.ACTION, "Missing or invalid agent_name parameter")
    record: AgentRecord | None = link.lookup(name)
    if record is None:
        return error_reply(Dialect.ACTION, f"Agent {name} not found in registry")
    info = agent_status(record)
    info.update(
        host=record.host,
        port=record.port,
        health_check_port=record.health_check_port,
        script_path=record.metadata.get("script_path", ""),
    )
    return Reply(status="success", agent_info=info)


def _vram_figures(host: HostTwin | None) -> tuple[int | None, int | None, int | None]:
    """Total, used and free VRAM of a host; None where unknown: a host the twin does not
    know, or used/free of declared GPUs (nothing measures them)."""
    if host is None:
        return None, None, None
    total = sum(g.total_mb for g in host.gpus)
    if any(g.source == "declared" for g in host.gpus):
        return total, None, None
    return total, sum(g.used_mb for g in host.gpus), sum(g.free_mb for g in host.gpus)


def _ram_used_mb(host: HostTwin) -> float | None:
    if host.memory_total_mb is None or host.memory_available_mb is None:
        return None
    return float(host.memory_total_mb - host.memory_available_mb)


class TwinActions:
    """The twin's host-figure and VRAM actions for the 7120 port of host ``host``."""

    def __init__(
        self, twin: TwinCache, services: Services, link: Any, host: str, hosts: tuple[str, str]
    ) -> None:
        self._twin = twin
        self._services = services
        self._link = link  # RegistryLink (typed loosely: registry_port imports this module)
        self._host = host
        self._mainpc, self._pc2 = hosts

    # command dialect

    def get_metrics_command(self, payload: Fields) -> Reply:
        wanted = payload.get("metrics", [])
        snapshot = self._twin.snapshot()
        by_tag = {h.host: h for h in snapshot.hosts}
        figures: dict[str, JsonValue] = {}
        for prefix, tag in (("mainpc", self._mainpc), ("pc2", self._pc2)):
            host = by_tag.get(tag)
            total, used, free = _vram_figures(host)
            figures[f"{prefix}_vram_total_mb"] = total
            figures[f"{prefix}_vram_used_mb"] = used
            figures[f"{prefix}_vram_free_mb"] = free
            # "nvml", "nvml-double" (the test double), "declared", comma-joined; "" without GPUs
            figures[f"{prefix}_gpu_source"] = ",".join(
                sorted({g.source for g in host.gpus} if host else ())
            )
        figures["last_update"] = iso_time(snapshot.taken_at)
        if not wanted or (isinstance(wanted, list) and "cpu_usage" in wanted):
            here = by_tag.get(self._host)
            figures["cpu_usage"] = here.cpu_percent if here is not None else None
        return Reply(status="SUCCESS", payload=figures)

    def report_model_vram(self, payload: Fields, dialect: Dialect) -> Outcome:
        total, used = number(payload, "total_vram_mb"), number(payload, "total_vram_used_mb")
        models = payload.get("loaded_models", {})
        if total is None or total <= 0 or used is None or not isinstance(models, dict):
            return error_reply(
                dialect,
                "payload needs total_vram_mb > 0, total_vram_used_mb and loaded_models {}",
            )
        loaded: dict[str, JsonValue] = {}
        for name, model in models.items():
            size = number(model, "vram_usage_mb") if isinstance(model, dict) else None
            if size is None:
                return error_reply(dialect, f"loaded_models[{name!r}] needs vram_usage_mb")
            last = model.get("last_used") if isinstance(model, dict) else None
            loaded[name] = {"vram_mb": int(size), "last_used": last or time.time()}
        frame = {
            "action": "update_vram_status",
            "current_vram_mb": int(used),
            "total_vram_mb": int(total),
            "loaded_models": loaded,
        }
        ok = "SUCCESS" if dialect is Dialect.COMMAND else "success"

        async def send() -> Reply:
            await self._services.resources().model_manager(frame)
            return Reply(status=ok, message="VRAM metrics updated successfully")

        return guarded(_SERVICE, dialect, send())

    # action dialect

    def action(self, name: str) -> Callable[[Fields], Outcome] | None:
        """The handler of action ``name``, if it is one of the twin's."""
        table: dict[str, Callable[[Fields], Outcome]] = {
            "get_metrics": self.get_metrics,
            "get_history": self.get_history,
            "simulate_load": self.simulate_load,
            "get_ok_agents": self.get_ok_agents,
            "report_error": self.report_error,
            "publish_event": self.publish_event,
        }
        return table.get(name)

    def get_metrics(self, fields: Fields) -> Reply:  # noqa: ARG002
        host = self._twin.host(self._host)
        _, vram_used, _ = _vram_figures(host)
        metrics: dict[str, JsonValue] = {
            "cpu_usage": host.cpu_percent,
            "vram_usage_mb": vram_used,
            "ram_usage_mb": _ram_used_mb(host),
            "timestamps": iso_time(host.taken_at or time.time()),
        }
        return Reply(status="success", metrics=metrics)

    def get_history(self, fields: Fields) -> Reply:  # noqa: ARG002
        host = self._twin.host(self._host)
        points = host.history[-60:]
        total = host.memory_total_mb
        history: dict[str, JsonValue] = {
            "timestamps": [iso_time(p.taken_at) for p in points],
            "cpu_usage": [p.cpu_percent for p in points],
            "vram_usage_mb": [p.vram_used_mb for p in points],
            "ram_usage_mb": [
                round(p.memory_percent * total / 100.0, 1) if total else None for p in points
            ],
        }
        return Reply(status="success", history=history)

    def simulate_load(self, fields: Fields) -> Outcome:
        kind = fields.get("load_type")
        if not isinstance(kind, str):
            return Reply(
                status="error",
                error="load_type must be a string",
                message="load_type must be a string",
                recommendation="error_invalid_request",
            )
        value = number(fields, "value")
        if value is None:
            value = number(fields, "value_mb")  # what VRAMOptimizer really sends
        if kind not in _LOAD_FIELDS or value is None or value < 0:
            reason = (
                f"Unknown load_type: {kind}"
                if kind not in _LOAD_FIELDS
                else "value must be a number"
            )
            return Reply(
                status="error", error=reason, message=reason, recommendation="error_invalid_request"
            )
        request = SimulateLoadRequest.model_validate(
            {"host": self._host, _LOAD_FIELDS[kind]: value}
        )

        async def ask() -> Reply:
            core = self._services.deployment("CoreOrchestrator", APP_CORE)
            result: SimulateLoadResult = await core.simulate_load.remote(request)
            check = next((c for c in result.checks if c.resource == kind), None)
            reply: dict[str, Any] = {
                "status": "success",
                "timestamp": iso_time(result.taken_at),
                "load_type": kind,
                "requested_value": value,
                "recommendation": result.recommendation,
                "reasons": result.reasons,
            }
            if result.reasons:
                reply["reason"] = "; ".join(result.reasons)
            if check is not None:
                unit = "percent" if kind == "cpu" else "mb"
                reply[f"projected_{kind}_{unit}"] = check.projected
                if check.capacity is not None:
                    reply[f"{kind}_capacity_mb"] = check.capacity
            return Reply.model_validate(reply)

        return guarded(_SERVICE, Dialect.ACTION, ask())

    def get_ok_agents(self, fields: Fields) -> Reply:  # noqa: ARG002
        names = [r.agent_id for r in self._link.directory() if legacy_status(r.health) == "ok"]
        return Reply(status="success", count=len(names), agents=names)

    def register_status(self, fields: Fields) -> Outcome:
        """The simple ``register_agent``: ``agent_name`` and a status word."""
        name, status = text(fields, "agent_name"), text(fields, "status")
        if name is None or status is None:
            return error_reply(Dialect.ACTION, "Missing or invalid agent_name parameter")
        state = _STATUS.get(status.lower())
        if state is None:
            known = ", ".join(sorted(_STATUS))
            return error_reply(Dialect.ACTION, f"status {status!r} is not one of {known}")
        if self._link.registered(name) is None:
            return error_reply(
                Dialect.ACTION,
                f"Agent {name} is not registered; register it with registration_data first",
            )
        heartbeat = Heartbeat(status=state, note=f"legacy status {status!r}")

        async def beat() -> Reply:
            await self._link.heartbeat(name, heartbeat)
            return Reply(status="success", message=f"Updated {name} status to {status}", agent=name)

        return guarded(_SERVICE, Dialect.ACTION, beat())

    # events for ErrorBus (section 2.4)

    def report_error(self, fields: Fields) -> Outcome:
        """``report_error``: the ErrorReport, read as the 7150 bridge reads a legacy error."""
        report = fields.get("error")
        if not isinstance(report, dict):
            return error_reply(Dialect.ACTION, "Missing required parameter: error")
        return self._publish(report, "sdt_report_error", "Error", "error_id")

    def publish_event(self, fields: Fields) -> Outcome:
        """``publish_event``: the SystemEvent as an ``info`` event of its ``event_type``."""
        event = fields.get("event")
        if not isinstance(event, dict):
            return error_reply(Dialect.ACTION, "Missing required parameter: event")
        kind = text(event, "event_type")
        if kind is None:
            return error_reply(Dialect.ACTION, "event needs an event_type")
        source = text(event, "source_agent") or "unknown"
        body: dict[str, Any] = {
            "error_id": event.get("event_id"),
            "agent": source,
            "error_type": kind,
            "severity": "info",
            "message": f"event {kind} from {source}",
            "timestamp": event.get("timestamp"),
            "details": {
                "data": event.get("data", {}),
                "propagate": event.get("propagate", False),
                "ttl": event.get("ttl", 3),
            },
        }
        return self._publish(body, "sdt_publish_event", "Event", "event_id")

    def _publish(self, body: dict[str, Any], origin: str, noun: str, id_key: str) -> Outcome:
        try:
            event = normalize_record(
                body, origin=origin, received_at=datetime.now(UTC), peer=self._host
            )
        except ValidationError as exc:
            problems = "; ".join(e["msg"] for e in exc.errors()[:3])
            return error_reply(Dialect.ACTION, f"{noun} fields out of range: {problems}")
        verb = "recorded" if noun == "Error" else "published"

        async def send() -> Reply:
            bus = self._services.deployment("ErrorBus", APP_ERRORS)
            await bus.publish.remote(event)  # answered once stored or spooled on disk
            return Reply.model_validate(
                {
                    "status": "success",
                    "message": f"{noun} {event.id} {verb} successfully",
                    id_key: event.id,
                }
            )

        return guarded(_SERVICE, Dialect.ACTION, send())
