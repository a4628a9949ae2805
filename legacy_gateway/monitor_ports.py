"""The monitoring agents' legacy ports, translated to the ObservabilityHub and the registry.

* PerformanceLoggerAgent (5632 where clients connect, 7128 declared; health 5633): the four
  actions of docs/legacy-protocol.md 4.8 on the hub's SQLite performance log.
  LearningAdjusterAgent sends ``get_agent_metrics``/``get_agent_resource_usage`` with ISO
  ``start_time``/``end_time``.
* PerformanceMonitor (7103, 4.6): ``get_metrics`` (host figures from the twin, per-service
  response times from the performance log), ``get_alerts`` (the hub's firing alerts) and
  ``log_metric``.
* HealthMonitor (7114, 4.7): ``get_status`` answers every agent's health from the registry,
  which the hub's probes keep current, in the legacy words (``ok``, ``degraded``, ``error``,
  ``unknown``; :func:`legacy_gateway._ports.legacy_status`).
* SystemHealthManager (7117, 4.9): ``get_system_status`` reports the memory agents' health.
* PredictiveHealthMonitor (5613, 4.5): its health dict with the monitored-agent counts, and
  ``get_anomalies``/``get_predictions`` from the hub's detectors and breach predictor.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import JsonValue

from actors.registry.models import AgentRecord, Health
from cluster.base.constants import APP_OBSERVABILITY
from deployments.observability.perflog import MetricEntry, MetricRecord, UsageEntry
from deployments.observability.state import PerfAggregate
from legacy_gateway._codec import HEALTH_VERBS, Dialect, Reply, error_reply, iso_time
from legacy_gateway._ports import (
    ActionPort,
    ActionTable,
    Fields,
    Services,
    legacy_status,
    number,
    text,
)
from legacy_gateway.registry_port import RegistryLink
from legacy_gateway.server import Outcome
from legacy_gateway.twin_cache import TwinCache, TwinUnavailable

__all__ = [
    "HealthMonitorPort",
    "PerformanceLoggerHealthPort",
    "PerformanceLoggerPort",
    "PerformanceMonitorPort",
    "PredictiveHealthMonitorPort",
    "SystemHealthManagerPort",
    "epoch_seconds",
]

_HUB: Final = ("ObservabilityHub", APP_OBSERVABILITY)
_QUERY_LIMIT: Final = 1000
#: PerformanceMonitor's window for response times and throughput (seconds).
_WINDOW_S: Final = 3600.0
#: Agents SystemHealthManager watched (``docs/legacy-protocol.md`` 4.9).
_MEMORY_AGENTS: Final = {
    "orchestrator": "MemoryOrchestratorService",
    "scheduler": "MemoryScheduler",
}


def epoch_seconds(value: JsonValue) -> float | None:
    """A legacy timestamp (epoch number, or ISO text; naive means UTC) as epoch seconds."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _metadata(fields: Fields) -> dict[str, JsonValue]:
    value = fields.get("metadata")
    return value if isinstance(value, dict) else {}


def _nested(fields: Fields, key: str) -> Fields | None:
    value = fields.get(key)
    return value if isinstance(value, dict) else None


class PerformanceLoggerPort(ActionPort):
    """PerformanceLoggerAgent on the hub's performance log."""

    service = "PerformanceLoggerAgent"

    def __init__(self, services: Services) -> None:
        super().__init__()
        self._services = services

    def _hub(self) -> Any:
        return self._services.deployment(*_HUB)

    def probe(self) -> Awaitable[object]:
        return self._hub().check_health.remote()  # type: ignore[no-any-return]

    def actions(self) -> ActionTable:
        return {
            "log_metric": self._log_metric,
            "log_resource_usage": self._log_usage,
            "get_agent_metrics": self._metrics,
            "get_agent_resource_usage": self._usage,
        }

    async def _log_metric(self, fields: Fields) -> Reply:
        metric = _nested(fields, "metric")
        if metric is None:
            return error_reply(Dialect.ACTION, "Missing 'metric' object")
        duration = number(metric, "duration")
        agent, action = text(metric, "agent"), text(metric, "action")
        if agent is None or action is None or duration is None:
            return error_reply(Dialect.ACTION, "metric needs agent, action and a numeric duration")
        at = epoch_seconds(metric.get("timestamp")) if "timestamp" in metric else None
        entry = MetricEntry(
            agent=agent, action=action, duration_s=duration, metadata=_metadata(metric), at=at
        )
        await self._hub().log_metric.remote(entry)
        return Reply(status="success")

    async def _log_usage(self, fields: Fields) -> Reply:
        usage = _nested(fields, "usage")
        if usage is None:
            return error_reply(Dialect.ACTION, "Missing 'usage' object")
        agent = text(usage, "agent")
        cpu, memory = number(usage, "cpu_percent"), number(usage, "memory_mb")
        if agent is None or cpu is None or memory is None:
            return error_reply(Dialect.ACTION, "usage needs agent, cpu_percent and memory_mb")
        at = epoch_seconds(usage.get("timestamp")) if "timestamp" in usage else None
        entry = UsageEntry(
            agent=agent, cpu_percent=cpu, memory_mb=memory, metadata=_metadata(usage), at=at
        )
        await self._hub().log_usage.remote(entry)
        return Reply(status="success")

    def _range(self, fields: Fields) -> tuple[str, float | None, float | None] | Reply:
        agent = text(fields, "agent")
        if agent is None:
            return error_reply(Dialect.ACTION, "Missing 'agent'")
        bounds: list[float | None] = []
        for key in ("start_time", "end_time"):
            raw = fields.get(key)
            value = None if raw is None else epoch_seconds(raw)
            if raw is not None and value is None:
                return error_reply(Dialect.ACTION, f"{key} must be an ISO time, got {raw!r:.60}")
            bounds.append(value)
        return agent, bounds[0], bounds[1]

    async def _rows(self, fields: Fields, method: str) -> list[Any] | Reply:
        """The hub's rows of one agent in the request's time range, or the error reply."""
        query = self._range(fields)
        if isinstance(query, Reply):
            return query
        rows: list[Any] = await getattr(self._hub(), method).remote(*query, _QUERY_LIMIT)
        return rows

    async def _metrics(self, fields: Fields) -> Reply:
        rows = await self._rows(fields, "perf_metrics")
        if isinstance(rows, Reply):
            return rows
        metrics = [
            {
                "action": r.action,
                "duration": r.duration_s,
                "timestamp": iso_time(r.at),
                "metadata": r.metadata,
            }
            for r in rows
        ]
        return Reply(status="success", metrics=metrics)

    async def _usage(self, fields: Fields) -> Reply:
        rows = await self._rows(fields, "perf_usage")
        if isinstance(rows, Reply):
            return rows
        usage = [
            {
                "cpu_percent": r.cpu_percent,
                "memory_mb": r.memory_mb,
                "timestamp": iso_time(r.at),
                "metadata": r.metadata,
            }
            for r in rows
        ]
        return Reply(status="success", usage=usage)


class PerformanceLoggerHealthPort:
    """PerformanceLoggerAgent's health port (5633): any message gets its health dict."""

    service = "PerformanceLoggerAgent"

    def __init__(self, main: PerformanceLoggerPort) -> None:
        self._main = main

    def handle(self, request: object, received: object) -> Outcome:  # noqa: ARG002
        """``ok``, or ``degraded`` while the hub behind the main port is (its health reading)."""
        health = self._main.health()
        if isinstance(health, Reply):
            return self._reply(health)
        assert not isinstance(health, bytes)
        pending = health

        async def answer() -> Reply:
            reply = await pending
            assert isinstance(reply, Reply)
            return self._reply(reply)

        return answer()

    def _reply(self, health: Reply) -> Reply:
        return Reply(
            agent=self.service,
            status=health.status,
            timestamp=iso_time(time.time()),
            uptime=round(time.time() - self._main.started_at, 3),
        )


def _host_resources(twin: TwinCache, host: str) -> dict[str, JsonValue]:
    figures = twin.host(host)
    return {
        "cpu_percent": figures.cpu_percent,
        "memory_percent": figures.memory_percent,
        "timestamp": figures.taken_at,
    }


class PerformanceMonitorPort(ActionPort):
    """PerformanceMonitor: host figures, per-service response times, alerts, ``log_metric``."""

    service = "PerformanceMonitor"
    _METRIC_TYPES: Final = frozenset(
        {"response_time", "error", "request", "queue_size", "throughput"}
    )

    def __init__(self, services: Services, twin: TwinCache, host: str) -> None:
        super().__init__()
        self._services = services
        self._twin = twin
        self._host = host

    def _hub(self) -> Any:
        return self._services.deployment(*_HUB)

    def probe(self) -> Awaitable[object]:
        return self._hub().check_health.remote()  # type: ignore[no-any-return]

    def actions(self) -> ActionTable:
        return {
            "get_metrics": self._get_metrics,
            "get_alerts": self._get_alerts,
            "log_metric": self._log_metric,
        }

    async def _get_metrics(self, fields: Fields) -> Reply:
        resources = _host_resources(self._twin, self._host)
        wanted = text(fields, "service")
        since = time.time() - _WINDOW_S
        # Counts and means over the whole window (no row cap); the newest rows for "current".
        aggregates: list[PerfAggregate] = await self._hub().perf_aggregates.remote(since)
        rows: list[MetricRecord] = await self._hub().perf_metrics.remote(
            wanted, since, None, _QUERY_LIMIT
        )
        services = _service_metrics(aggregates, rows, wanted)
        if wanted is not None:
            return Reply(status="success", metrics=services.get(wanted, {}))
        snapshot = {
            "timestamp": iso_time(time.time()),
            "resources": resources,
            "services": services,
        }
        return Reply(status="success", metrics=snapshot)

    async def _get_alerts(self, fields: Fields) -> Reply:  # noqa: ARG002
        alerts: list[JsonValue] = []
        for alert in await self._hub().alerts.remote():
            if alert.state != "firing":
                continue
            agent = alert.labels.get("agent")
            entry: dict[str, JsonValue] = {
                "type": "service" if agent else "resource",
                "level": "error" if alert.severity == "critical" else "warning",
                "message": alert.summary or alert.rule,
                "details": dict(alert.labels),
            }
            if agent:
                entry["service"] = agent
            alerts.append(entry)
        return Reply(status="success", alerts=alerts)

    async def _log_metric(self, fields: Fields) -> Reply:
        service, kind = text(fields, "service"), text(fields, "metric_type")
        value = number(fields, "value")
        if service is None or kind is None or value is None:
            return error_reply(Dialect.ACTION, "Missing required parameters")
        if kind not in self._METRIC_TYPES:
            known = ", ".join(sorted(self._METRIC_TYPES))
            return error_reply(Dialect.ACTION, f"metric_type must be one of {known}")
        if kind == "response_time" and value < 0:
            return error_reply(Dialect.ACTION, "a response_time value is seconds, >= 0")
        entry = MetricEntry(
            agent=service,
            action=f"monitor:{kind}",
            # Only a response time is a duration; the other figures stay in metadata.
            duration_s=value if kind == "response_time" else None,
            metadata={"metric_type": kind, "value": value},
        )
        await self._hub().log_metric.remote(entry)
        return Reply(status="success", message="Metric logged")


def _service_metrics(
    aggregates: list[PerfAggregate], rows: list[MetricRecord], wanted: str | None
) -> dict[str, JsonValue]:
    """PerformanceMonitor's per-service figures over the window; None where nothing is known.

    ``response_time.average`` and ``throughput`` (durations logged per second) come from the
    uncapped aggregates, ``response_time.current`` from the newest ten durations among the rows
    read, ``reported`` holds the latest non-duration figure of each type ``log_metric`` took.
    """
    totals: dict[str, tuple[int, float]] = {}
    for agg in aggregates:
        if wanted is None or agg.agent == wanted:
            count, total = totals.get(agg.agent, (0, 0.0))
            totals[agg.agent] = (count + agg.count, total + agg.count * agg.mean_duration_s)
    newest: dict[str, list[float]] = {}
    reported: dict[str, dict[str, JsonValue]] = {}
    for row in rows:  # newest first
        if row.duration_s is not None:
            newest.setdefault(row.agent, []).append(row.duration_s)
            continue
        kind = row.metadata.get("metric_type")
        if row.action.startswith("monitor:") and isinstance(kind, str):
            reported.setdefault(row.agent, {}).setdefault(kind, row.metadata.get("value"))
    services: dict[str, JsonValue] = {}
    for agent in sorted(set(totals) | set(reported)):
        count, total = totals.get(agent, (0, 0.0))
        last = newest.get(agent, [])[:10]
        services[agent] = {
            "response_time": {
                "current": sum(last) / len(last) if last else None,
                "average": total / count if count else None,
            },
            "throughput": count / _WINDOW_S,
            "reported": reported.get(agent, {}),
        }
    return services


def _health_counts(records: list[AgentRecord]) -> dict[str, int]:
    healthy = sum(1 for r in records if r.health is Health.PASSING)
    unknown = sum(1 for r in records if r.health is Health.UNKNOWN)
    return {
        "monitored_agents_count": len(records),
        "healthy_agents_count": healthy,
        "unhealthy_agents_count": len(records) - healthy - unknown,
    }


class HealthMonitorPort(ActionPort):
    """HealthMonitor: every registered agent's health, as the hub's probes last saw it."""

    service = "HealthMonitor"
    health_verbs = HEALTH_VERBS - {"ping"}  # its ping answers "pong"

    def __init__(self, link: RegistryLink, port: int) -> None:
        super().__init__()
        self._link = link
        self._port = port

    def health(self) -> Reply:  # H3
        return Reply(
            status="ok" if self._link.healthy else "initializing",
            service=self.service,
            initialization_status="complete" if self._link.healthy else "in_progress",
            port=self._port,
            health_port=self._port,
            timestamp=iso_time(time.time()),
        )

    def actions(self) -> ActionTable:
        return {"get_status": self._status, "ping": self._pong}

    def _pong(self, fields: Fields) -> Reply:  # noqa: ARG002
        return Reply(status="success", message="pong")

    def _status(self, fields: Fields) -> Reply:  # noqa: ARG002
        agents = {r.agent_id: legacy_status(r.health) for r in self._link.records()}
        return Reply(status="success", agent_status=agents, timestamp=iso_time(time.time()))


class SystemHealthManagerPort(ActionPort):
    """SystemHealthManager: the memory agents' health from the registry.

    Its health is ``error`` while the registry view is not loaded or its feed is lost (it has
    nothing to report), ``degraded`` while the ObservabilityHub, whose probes keep that health
    current, does not answer.
    """

    service = "SystemHealthManager"

    def __init__(self, link: RegistryLink, services: Services) -> None:
        super().__init__()
        self._link = link
        self._services = services

    def probe(self) -> Awaitable[object]:
        return self._services.deployment(*_HUB).check_health.remote()  # type: ignore[no-any-return]

    def health_reply(self, problem: str | None) -> Reply:
        if self._link.healthy:
            return super().health_reply(problem)
        lost = f"{self.service}: the agent registry view is not loaded or its feed is lost"
        base = super().health_reply(lost).model_dump()
        return Reply.model_validate({**base, "status": "error"})

    def actions(self) -> ActionTable:
        return {"get_system_status": self._system_status}

    def _system_status(self, fields: Fields) -> Reply:  # noqa: ARG002
        system: dict[str, JsonValue] = {}
        for role, agent in _MEMORY_AGENTS.items():
            record = self._link.lookup(agent)
            if record is None:
                system[role] = {"status": "error", "message": f"{agent} is not registered"}
                continue
            health = legacy_status(record.health)
            system[role] = {
                "status": "success" if record.health is Health.PASSING else health,
                "agent": agent,
                "health": health,
                "note": record.health_note,
                "last_seen": iso_time(record.last_seen_at),
            }
        return Reply(status="success", memory_system=system)


class PredictiveHealthMonitorPort(ActionPort):
    """PredictiveHealthMonitor: health with the monitored-agent counts; the hub's detectors."""

    service = "PredictiveHealthMonitor"

    def __init__(self, services: Services, link: RegistryLink, twin: TwinCache, host: str) -> None:
        super().__init__()
        self._services = services
        self._link = link
        self._twin = twin
        self._host = host

    def probe(self) -> Awaitable[object]:
        return self._services.deployment(*_HUB).check_health.remote()  # type: ignore[no-any-return]

    def health_reply(self, problem: str | None) -> Reply:
        """``ok`` only while the hub is healthy and the twin's figures are current."""
        metrics: dict[str, JsonValue] = dict(_health_counts(self._link.records()))
        try:
            metrics["system_metrics"] = _host_resources(self._twin, self._host)
        except TwinUnavailable as exc:  # the health reply must not fail on stale figures
            metrics["system_metrics"] = {"error": str(exc)}
            problem = problem or f"{self.service}: {exc}"
        base = super().health_reply(problem)
        return Reply.model_validate({**base.model_dump(), "agent_specific_metrics": metrics})

    def actions(self) -> ActionTable:
        return {"get_anomalies": self._anomalies, "get_predictions": self._anomalies}

    async def _anomalies(self, fields: Fields) -> Reply:  # noqa: ARG002
        statuses = await self._services.deployment(*_HUB).anomalies.remote()
        return Reply(status="success", series=[s.model_dump(mode="json") for s in statuses])
