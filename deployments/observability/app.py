"""ObservabilityHub (``/observability``): the Serve application over :class:`HubCore`.

The deployment wires the hub's sources (per-host probe actors, per-host log shipper actors, the
registry's change feed, the legacy ZeroMQ health probes, ErrorBus counts) and sinks (alert
events to the ErrorBus, alerts to the configured Alertmanagers), runs one sampling round every
``sample_interval_s`` and adapts HTTP: ``GET /metrics`` renders the hub's own
``CollectorRegistry`` in the Prometheus text format.

No ``from __future__ import annotations`` here: FastAPI reads the route annotations at runtime.
"""

import asyncio
import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import zmq.asyncio
from fastapi import FastAPI, Header, Query, Response
from fastapi.responses import StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry
from pydantic import BaseModel, ConfigDict, ValidationError
from ray import serve
from ray.exceptions import RayError, RayTaskError
from ray.serve import Application
from ray.serve.exceptions import RayServeException

from actors.errors.models import ErrorCounts
from actors.errors.publisher import ErrorPublisher
from actors.errors.spool import Spool
from actors.probe.actor import get_or_create_host_probe
from actors.probe.client import HostProbeClient
from actors.registry.actor import get_or_create_registry
from actors.registry.client import RegistryClient
from actors.registry.follower import RegistryFollower
from actors.registry.models import Heartbeat
from actors.security.models import Scope
from cluster.base.constants import APP_ERRORS
from cluster.base.errors import AgentNotFound, ClusterError, ValidationFailed
from cluster.base.nats_client import NatsClient
from cluster.base.settings import (
    AlertRuleSpec,
    DeclaredGpu,
    ErrorBusSettings,
    LogSeverity,
    ObservabilitySettings,
    RegistrySettings,
)
from cluster.base.tally import ImportTally
from deployments.auth import AuthArgs, Authenticator, auth_first, install_auth, require
from deployments.core.dispatch import LazyPirateClient
from deployments.core.supervision import zmq_health_probe
from deployments.http import install_error_handlers
from deployments.observability.alert_models import (
    Alert,
    AlertHistoryEntry,
    Notification,
    Silence,
    SilenceRequest,
)
from deployments.observability.alert_store import AlertStore
from deployments.observability.alertmanager import AlertmanagerNotifier
from deployments.observability.anomaly import SeriesStatus
from deployments.observability.events import alert_events
from deployments.observability.hub import HubCore, HubSources
from deployments.observability.log_models import (
    CLASS_PATTERN,
    MAX_PAGE,
    TOKEN_PATTERN,
    LogFilter,
    LogPage,
    LogQuery,
)
from deployments.observability.log_sse import sse, stream_limit_s
from deployments.observability.logread import LogReader
from deployments.observability.logship import LogShippers
from deployments.observability.perflog import (
    MetricEntry,
    MetricRecord,
    PerfImport,
    PerfLog,
    PerfQuery,
    UsageEntry,
    UsageRecord,
)
from deployments.observability.probes import AgentProber
from deployments.observability.service_reader import read_services
from deployments.observability.state import HostSample, PerfAggregate
from deployments.observability.status_routes import install_status_page
from deployments.observability.status_routes import router as status_router
from deployments.observability.status_sources import make_status_page
from deployments.observability.webhook import WebhookCollector, WebhookNotifier

__all__ = ["ObservabilityAppArgs", "ObservabilityHub", "build_app"]

logger = logging.getLogger(__name__)

#: The least time between two polls of the registry's change feed (see RegistryFollower).
_REGISTRY_POLL_INTERVAL_S = 0.25

#: The ``agent`` of the hub's own ErrorBus events.
SOURCE = "observability"


class ObservabilityAppArgs(BaseModel):
    """Arguments of the ``observability`` application (the ``args`` of its Serve config)."""

    model_config = ConfigDict(extra="forbid")

    settings: ObservabilitySettings
    data_dir: str
    nats: NatsClient
    errors: ErrorBusSettings
    hosts: dict[str, list[DeclaredGpu]]
    registry: RegistrySettings
    registry_host_tag: str
    auth: AuthArgs
    ray_temp_dir: str
    external_url: str
    request_timeout_s: float | None = None


_Token = Annotated[str | None, Query(pattern=TOKEN_PATTERN)]
_Class = Annotated[str | None, Query(alias="class", pattern=CLASS_PATTERN)]
_Text = Annotated[str | None, Query(min_length=1, max_length=256)]

api = FastAPI(
    title="aisys ObservabilityHub",
    description="Prometheus exporter, agent health probes, performance log, anomaly detection "
    "and breach prediction, alerting with Alertmanager semantics.",
    version="1",
)
install_error_handlers(api)
auth_first(api)  # every scoped route checks its token before the request is parsed
api.include_router(status_router)  # the status page: status_routes.py


@serve.deployment
@serve.ingress(api)
class ObservabilityHub:
    """Serve deployment of the ObservabilityHub."""

    def __init__(self, args: ObservabilityAppArgs) -> None:
        install_auth(api, Authenticator(args.auth))
        settings = args.settings
        self._settings = settings
        self._data_dir = args.data_dir
        data = Path(args.data_dir) / "observability"
        registry = get_or_create_registry(
            args.registry, Path(args.data_dir) / "registry.sqlite3", args.registry_host_tag
        )
        self._registry = RegistryClient(registry)
        # The hub reads the registry for its series and probes, never for a caller's own write:
        # a quarter-second-old view costs nothing there and spares a poll per change in a burst.
        self._follower = RegistryFollower(registry, min_interval_s=_REGISTRY_POLL_INTERVAL_S)
        self._follower.start()
        self._probes = {
            tag: HostProbeClient(get_or_create_host_probe(tag, declared))
            for tag, declared in args.hosts.items()
        }
        shippers = None
        if settings.logs.enabled:
            shippers = LogShippers(
                settings.logs,
                list(args.hosts),
                args.ray_temp_dir,
                args.nats,
                Path(args.data_dir),
                settings.host_timeout_s,
            )
        self._logs = LogReader(args.nats, settings.logs)
        self._request_timeout_s = args.request_timeout_s
        self._zmq = zmq.asyncio.Context()
        probes = settings.probes
        client = LazyPirateClient(self._zmq, probes.probe_timeout_s, probes.probe_attempts)
        probe = zmq_health_probe(client, probes.probe_timeout_s, probes.probe_attempts)
        prober = AgentProber(settings.probes, probe, self._mark)
        self._publisher: ErrorPublisher | None = None
        if settings.publish_alerts:
            spool = Spool(data / "alert-spool.sqlite3", args.errors.spool_max_mb * 1024 * 1024)
            self._publisher = ErrorPublisher(args.nats, args.errors, spool)
            self._publisher.start()
        self._alertmanager: AlertmanagerNotifier | None = None
        if settings.alerting.alertmanager_urls:
            self._alertmanager = AlertmanagerNotifier(
                settings.alerting,
                settings.sample_interval_s,
                f"{args.external_url}/observability/alerts",
            )
            self._alertmanager.start()
        self.metrics = CollectorRegistry()
        self._webhooks: WebhookNotifier | None = None
        if settings.alerting.webhook_urls:
            self._webhooks = WebhookNotifier(settings.alerting, args.external_url)
            self._webhooks.start()
            self.metrics.register(WebhookCollector(self._webhooks))
        sources = HubSources(
            hosts=self._sample_hosts,
            agents=lambda: self._follower.view.list_agents(),
            probe=prober.probe,
            error_counts=self._error_counts,
            notify=self._notify,
            logs=shippers.sample if shippers is not None else None,
            services=lambda: read_services(settings.host_timeout_s, settings.error_rate_window_s),
        )
        self._core = HubCore(
            settings,
            self.metrics,
            PerfLog(data / "perf.sqlite3", settings.perflog),
            AlertStore(data / "alerts.sqlite3"),
            sources,
            clock=time.time,
        )
        self._task = asyncio.get_running_loop().create_task(self._run())
        install_status_page(api, make_status_page(args, lambda: self._core.alerts.alerts()))

    async def check_health(self) -> None:
        if self._task.done():
            raise ClusterError("observability: the sampling loop has stopped")
        if not self._follower.running:
            raise ClusterError("observability: the registry change-feed task has stopped")
        if self._alertmanager is not None and not self._alertmanager.running:
            raise ClusterError("observability: an Alertmanager sender task has stopped")
        if self._webhooks is not None and not self._webhooks.running:
            raise ClusterError("observability: a webhook sender task has stopped")

    async def _run(self) -> None:
        while True:
            try:
                await self._core.tick()
                if self._alertmanager is not None:
                    self._alertmanager.update(self._core.alerts.alerts(), time.time())
            except Exception:
                # Loop boundary: one failed round (an actor restarting) must not end sampling;
                # it is logged with its traceback and the next round runs on time.
                logger.exception("observability sampling round failed")
            await asyncio.sleep(self._settings.sample_interval_s)

    async def _sample_hosts(self) -> list[HostSample]:
        return list(
            await asyncio.gather(*(self._sample_host(t, a) for t, a in self._probes.items()))
        )

    async def _sample_host(self, tag: str, actor: HostProbeClient) -> HostSample:
        try:
            reading, system, counters = await asyncio.wait_for(
                asyncio.gather(
                    actor.read(),
                    actor.system(self._data_dir),
                    actor.counters(),
                ),
                self._settings.host_timeout_s,
            )
        except (RayError, TimeoutError) as exc:
            reason = f"probe of host {tag!r} failed: {type(exc).__name__}: {exc}"
            return HostSample(host=tag, taken_at=time.time(), error=reason[:1000])
        return HostSample(
            host=tag, taken_at=time.time(), reading=reading, system=system, counters=counters
        )

    async def _error_counts(self) -> dict[str, dict[str, int]] | None:
        try:
            handle = serve.get_app_handle(APP_ERRORS)
            counts: ErrorCounts = await asyncio.wait_for(
                handle.counts.remote(None), self._settings.host_timeout_s
            )
        except (RayServeException, RayError, TimeoutError) as exc:
            logger.debug("no ErrorBus counts this round: %s", exc)
            return None
        return {
            agent: {str(severity): n for severity, n in c.by_severity.items()}
            for agent, c in counts.agents.items()
        }

    async def _mark(self, agent_id: str, heartbeat: Heartbeat) -> None:
        try:
            await self._registry.heartbeat(agent_id, heartbeat)
        except RayTaskError as exc:
            # An agent deregistered since the sweep began has nothing left to mark.
            if not isinstance(exc.cause, AgentNotFound):
                raise

    async def _notify(self, notifications: list[Notification]) -> None:
        for notification in notifications:
            logger.info(
                "alert group %s %s: %d alert(s)",
                notification.group_labels,
                notification.status,
                len(notification.alerts),
            )
        if self._webhooks is not None:
            self._webhooks.enqueue(notifications)
        if self._publisher is not None:
            events = [e for n in notifications for e in alert_events(n, SOURCE)]
            await self._publisher.publish(events)

    @api.get(
        "/metrics",
        summary="Prometheus text exposition (read or metrics:read)",
        dependencies=[require(Scope.METRICS_READ)],
    )
    async def prometheus_metrics(self) -> Response:
        return Response(content=generate_latest(self.metrics), media_type=CONTENT_TYPE_LATEST)

    @api.get(
        "/anomalies",
        summary="Every watched series: anomaly score and predicted time to breach",
        dependencies=[require(Scope.READ)],
    )
    async def anomalies(self) -> list[SeriesStatus]:
        return self._core.anomalies.statuses()

    @api.get(
        "/alerts", summary="Pending, firing and resolved alerts", dependencies=[require(Scope.READ)]
    )
    async def alerts(self) -> list[Alert]:
        return self._core.alerts.alerts()

    @api.get(
        "/alerts/history",
        summary="Alert state transitions (pending, firing, resolved, inactive), newest first",
        dependencies=[require(Scope.READ)],
    )
    async def alert_history(
        self, since: float | None = None, limit: Annotated[int, Query(ge=1, le=10_000)] = 1000
    ) -> list[AlertHistoryEntry]:
        return self._core.alerts.history(since, limit)

    @api.get("/rules", summary="Alert rules", dependencies=[require(Scope.READ)])
    async def rules(self) -> list[AlertRuleSpec]:
        return self._core.alerts.rules()

    @api.put(
        "/rules/{name}",
        summary="Add or replace an alert rule",
        dependencies=[require(Scope.ALERTS_WRITE)],
    )
    async def put_rule(self, name: str, rule: AlertRuleSpec) -> AlertRuleSpec:
        if rule.name != name:
            raise ValidationFailed(f"the rule's name {rule.name!r} differs from the path {name!r}")
        problem = self._settings.anomaly.rule_source_problem(rule)
        if problem is not None:
            raise ValidationFailed(problem)
        return self._core.alerts.put_rule(rule, time.time())

    @api.delete(
        "/rules/{name}",
        status_code=204,
        summary="Delete an alert rule",
        dependencies=[require(Scope.ALERTS_WRITE)],
    )
    async def delete_rule(self, name: str) -> None:
        self._core.alerts.delete_rule(name, time.time())

    @api.get("/silences", summary="Active silences", dependencies=[require(Scope.READ)])
    async def silences(self) -> list[Silence]:
        return self._core.alerts.silences(time.time())

    @api.post(
        "/silences",
        status_code=201,
        summary="Silence matching alerts for a while",
        dependencies=[require(Scope.ALERTS_WRITE)],
    )
    async def add_silence(self, request: SilenceRequest) -> Silence:
        return self._core.alerts.add_silence(request, time.time())

    @api.delete(
        "/silences/{silence_id}",
        status_code=204,
        summary="Expire a silence now",
        dependencies=[require(Scope.ALERTS_WRITE)],
    )
    async def expire_silence(self, silence_id: str) -> None:
        self._core.alerts.expire_silence(silence_id)

    @api.post(
        "/perf/metrics",
        status_code=201,
        summary="log_metric: an action and its duration",
        dependencies=[require(Scope.ERRORS_PUBLISH)],
    )
    async def log_metric(self, entry: MetricEntry) -> MetricRecord:
        return self._core.perflog.log_metric(entry, time.time())

    @api.get("/perf/metrics", summary="Logged actions", dependencies=[require(Scope.READ)])
    async def perf_metrics(
        self,
        agent: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
    ) -> list[MetricRecord]:
        query = PerfQuery(agent=agent, since=since, until=until, limit=limit)
        return self._core.perflog.metrics(query)

    @api.post(
        "/perf/usage",
        status_code=201,
        summary="log_resource_usage: an agent's CPU and memory",
        dependencies=[require(Scope.ERRORS_PUBLISH)],
    )
    async def log_usage(self, entry: UsageEntry) -> UsageRecord:
        return self._core.perflog.log_usage(entry, time.time())

    async def import_perf(self, batch: PerfImport) -> ImportTally:
        """Add legacy PerformanceLoggerAgent rows, once each (``aisys import-legacy``).

        Not a route: the CLI calls it through a Serve handle, as a Ray driver holding the
        cluster's token, which is the same trust as an admin.
        """
        return await asyncio.to_thread(self._core.perflog.import_rows, batch, time.time())

    async def perf_aggregates(self, since: float) -> list[PerfAggregate]:
        """Count, mean and max duration per agent and action since ``since``, uncapped.

        Not a route: the legacy PerformanceMonitor port's ``get_metrics`` reads it.
        """
        return await asyncio.to_thread(self._core.perflog.aggregates, since)

    @api.get("/perf/usage", summary="Logged resource usage", dependencies=[require(Scope.READ)])
    async def perf_usage(
        self,
        agent: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
    ) -> list[UsageRecord]:
        query = PerfQuery(agent=agent, since=since, until=until, limit=limit)
        return self._core.perflog.usage(query)

    @api.get(
        "/logs",
        summary="Shipped log lines, newest first; page with next_before_seq",
        dependencies=[require(Scope.READ)],
    )
    async def logs(
        self,
        host: _Token = None,
        source: _Token = None,
        error_class: _Class = None,
        severity: Annotated[LogSeverity | None, Query(description="Minimum severity.")] = None,
        since: datetime | None = None,
        until: datetime | None = None,
        text: _Text = None,
        before_seq: Annotated[int | None, Query(ge=1)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> LogPage:
        try:
            query = LogQuery(
                host=host,
                source=source,
                error_class=error_class,
                min_severity=severity,
                since=since,
                until=until,
                text=text,
                before_seq=before_seq,
                limit=limit,
            )
        except ValidationError as exc:  # the checks across fields (since after until)
            raise ValidationFailed(f"logs: {exc.errors()[0]['msg']}") from None
        return await self._logs.page(query)

    @api.get(
        "/logs/stream",
        summary="Follow new log lines as Server-Sent Events (resume with Last-Event-ID)",
        dependencies=[require(Scope.READ)],
        response_class=StreamingResponse,
    )
    async def logs_stream(
        self,
        host: _Token = None,
        source: _Token = None,
        error_class: _Class = None,
        severity: Annotated[LogSeverity | None, Query(description="Minimum severity.")] = None,
        text: _Text = None,
        after_seq: Annotated[int | None, Query(ge=0)] = None,
        last_event_id: Annotated[int | None, Header(ge=0)] = None,
        x_request_timeout_seconds: Annotated[str | None, Header()] = None,
    ) -> StreamingResponse:
        flt = LogFilter(
            host=host, source=source, error_class=error_class, min_severity=severity, text=text
        )
        after = last_event_id if last_event_id is not None else after_seq
        entries = await self._logs.follow(flt, after)
        limit_s = stream_limit_s(x_request_timeout_seconds, self._request_timeout_s)
        return StreamingResponse(
            sse(entries, limit_s),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )


def build_app(args: dict[str, Any]) -> Application:
    """Serve application builder named by the ``observability`` import path of the Serve config.

    Raises:
        pydantic.ValidationError: ``args`` is not a valid :class:`ObservabilityAppArgs`.
    """
    return ObservabilityHub.bind(ObservabilityAppArgs.model_validate(args))  # type: ignore[attr-defined,no-any-return]
