"""CoreOrchestrator (``/core``): agent registry, digital twin, request coordinator, supervision.

The deployment only adapts HTTP and gRPC to plain-Python cores: registry reads are answered
from a local :class:`RegistryView` kept current by the actor's change feed (no Ray call per
lookup), writes go to the actor and return once the local view has seen them. Requests go to
:class:`RequestCoordinator`, host figures to :class:`DigitalTwin` (fed by :class:`HostSampler`),
agent health probes to :class:`HealthSweep`; the gRPC methods come from
:class:`CoreGrpcMethods`.

No ``from __future__ import annotations`` here: FastAPI reads the route annotations at runtime
to tell body models from query parameters.
"""

import asyncio
import logging
import time
from pathlib import Path
from typing import Annotated, Any

import zmq.asyncio
from fastapi import FastAPI, Query, Response
from pydantic import BaseModel, ConfigDict, ValidationError
from ray import serve
from ray.exceptions import RayTaskError
from ray.serve import Application

from actors.probe.actor import get_or_create_host_probe
from actors.probe.client import HostProbeClient
from actors.registry.actor import get_or_create_registry
from actors.registry.client import RegistryClient
from actors.registry.follower import RegistryFollower
from actors.registry.models import AgentQuery, AgentRecord, Health, Heartbeat, Registration
from actors.registry.view import RegistryView
from actors.security.models import Scope
from cluster.base.errors import AgentNotFound, ClusterError, DispatchFailed
from cluster.base.settings import CoreSettings, DeclaredGpu
from deployments.auth import AuthArgs, Authenticator, auth_first, install_auth, require
from deployments.core.coordinator import DeploymentTarget, RequestCoordinator, Target
from deployments.core.dispatch import LazyPirateClient
from deployments.core.grpc_ingress import CoreGrpcMethods
from deployments.core.journal import RequestJournal
from deployments.core.metrics import CoordinatorMetrics
from deployments.core.models import (
    AgentResponse,
    BreakerView,
    InterruptReport,
    InterruptRequest,
    QueueView,
    RequestStatus,
    SubmitReceipt,
    TaskDefinition,
    UserRequest,
)
from deployments.core.sampler import HostSampler, scheduler_leases
from deployments.core.serve_control import (
    RestartReport,
    redeploy_app,
    send_to_deployment,
    serve_details,
)
from deployments.core.supervision import HealthSweep, zmq_health_probe
from deployments.core.trust_link import TrustLink
from deployments.core.twin import DigitalTwin, services_from_details
from deployments.core.twin_models import (
    ServiceTwin,
    SimulateLoadRequest,
    SimulateLoadResult,
    TwinSnapshot,
)
from deployments.http import install_error_handlers

__all__ = ["AgentList", "CoreAppArgs", "CoreOrchestrator", "build_app"]

logger = logging.getLogger(__name__)

#: A replica whose change feed has not answered for this long reports itself unhealthy.
_FEED_STALE_AFTER_S = 60.0


class CoreAppArgs(BaseModel):
    """Arguments of the ``core`` application (the ``args`` block of its Serve config)."""

    model_config = ConfigDict(extra="forbid")

    settings: CoreSettings
    data_dir: str
    host_tag: str
    host_tags: list[str]
    declared_gpus: dict[str, list[DeclaredGpu]]
    auth: AuthArgs


class AgentList(BaseModel):
    """Response of ``GET /core/agents``."""

    version: int
    agents: list[AgentRecord]


api = FastAPI(
    title="aisys CoreOrchestrator",
    description="Agent registry with TTL health checks (Consul semantics) and discovery, "
    "digital twin, request coordinator and supervision.",
    version="1",
)
install_error_handlers(api)
auth_first(api)  # every scoped route checks its token before the request is parsed


@serve.deployment
@serve.ingress(api)
class CoreOrchestrator(CoreGrpcMethods):
    """Serve deployment of CoreOrchestrator."""

    def __init__(self, args: CoreAppArgs) -> None:
        self._authenticator = Authenticator(args.auth)
        install_auth(api, self._authenticator)
        settings = args.settings
        registry = get_or_create_registry(
            settings.registry, Path(args.data_dir) / "registry.sqlite3", args.host_tag
        )
        self._follower = RegistryFollower(registry)
        self._registry = RegistryClient(registry, self._follower)
        self._follower.start()
        coordinator = settings.coordinator
        self._zmq = zmq.asyncio.Context()
        self._dispatch_timeout_s = coordinator.dispatch_timeout_s
        self._client = LazyPirateClient(
            self._zmq, coordinator.dispatch_timeout_s, coordinator.dispatch_attempts
        )
        self._trust = TrustLink(self._authenticator.security)
        metrics = CoordinatorMetrics()

        def finished(status: RequestStatus) -> None:
            metrics.record(status)
            self._trust.report(status)

        self._coordinator = RequestCoordinator(
            coordinator,
            lambda capability: self._follower.view.list_agents(AgentQuery(capability=capability)),
            self._send,
            on_finished=finished,
            trust=self._trust.score,
            journal=RequestJournal(Path(args.data_dir) / "coordinator-journal.sqlite3"),
        )
        self._twin = DigitalTwin(settings.twin, args.host_tags)
        probes = {
            tag: HostProbeClient(get_or_create_host_probe(tag, args.declared_gpus.get(tag, [])))
            for tag in args.host_tags
        }
        sampler = HostSampler(self._twin, probes, settings.twin, args.data_dir, scheduler_leases)
        supervision = settings.supervision
        probe = zmq_health_probe(
            self._client, supervision.probe_timeout_s, supervision.probe_attempts
        )
        self._sweep = HealthSweep(settings.supervision, probe, self._mark)
        self._sweep_interval_s = settings.supervision.sweep_interval_s
        loop = asyncio.get_running_loop()
        self._tasks = {
            "coordinator": loop.create_task(self._coordinator.run()),
            "twin sampler": loop.create_task(sampler.run()),
            "health sweep": loop.create_task(self._sweep_forever()),
            "trust scores": loop.create_task(self._trust.refresh_forever()),
            "trust outcomes": loop.create_task(self._trust.flush_forever()),
        }

    @property
    def authenticator(self) -> Authenticator:
        return self._authenticator

    async def check_health(self) -> None:
        if not self._follower.running:
            raise ClusterError("core: the registry change-feed task has stopped")
        if self._follower.last_sync and not self._follower.synced_within(_FEED_STALE_AFTER_S):
            raise ClusterError("core: the registry actor has not answered for a minute")
        for name, task in self._tasks.items():
            if task.done():
                raise ClusterError(f"core: the {name} task has stopped")

    async def _send(self, target: Target, task: TaskDefinition) -> AgentResponse:
        if isinstance(target, DeploymentTarget):
            return await send_to_deployment(target, task, self._dispatch_timeout_s)
        raw = await self._client.request(target.endpoint, task.model_dump_json().encode())
        try:
            return AgentResponse.model_validate_json(raw)
        except ValidationError as exc:
            reason = f"reply is not an AgentResponse JSON object: {raw[:200]!r}"
            raise DispatchFailed(target.downstream, reason) from exc

    async def _mark(self, agent_id: str, heartbeat: Heartbeat) -> None:
        try:
            await self._registry.heartbeat(agent_id, heartbeat)
        except RayTaskError as exc:
            # An agent deregistered since the sweep began has nothing left to mark.
            if not isinstance(exc.cause, AgentNotFound):
                raise

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval_s)
            try:
                report = await self._sweep.sweep(self._follower.view.list_agents())
            except Exception:
                # Loop boundary: one failed sweep (registry restarting) must not end the
                # supervision; it is logged with its traceback and the next one runs on time.
                logger.exception("agent health sweep failed")
                continue
            if report.marked_critical or report.marked_passing:
                logger.info("health sweep: %s", report)

    async def _view(self) -> RegistryView:
        if not await self._follower.wait_synced():
            raise ClusterError("core: the registry actor has not answered yet; retry shortly")
        return self._follower.view

    @api.post(
        "/agents",
        summary="Register an agent (idempotent by agent_id)",
        dependencies=[require(Scope.REGISTRY_WRITE)],
    )
    async def register(self, registration: Registration) -> AgentRecord:
        record = (
            await self._registry.visible(self._registry.register_batched(registration))
        ).record
        assert record is not None  # an upsert always carries its record
        return record

    @api.put(
        "/agents/{agent_id}/heartbeat",
        summary="Pass, warn or fail an agent's TTL check",
        dependencies=[require(Scope.REGISTRY_WRITE)],
    )
    async def heartbeat(self, agent_id: str, heartbeat: Heartbeat) -> AgentRecord:
        record = (
            await self._registry.visible(self._registry.heartbeat(agent_id, heartbeat))
        ).record
        assert record is not None
        return record

    @api.delete(
        "/agents/{agent_id}",
        status_code=204,
        summary="Deregister an agent",
        dependencies=[require(Scope.REGISTRY_WRITE)],
    )
    async def deregister(self, agent_id: str) -> Response:
        await self._registry.visible(self._registry.deregister(agent_id))
        return Response(status_code=204)

    @api.get("/agents/{agent_id}", summary="Look up one agent", dependencies=[require(Scope.READ)])
    async def get_agent(self, agent_id: str) -> AgentRecord:
        record = (await self._view()).get(agent_id)
        if record is None:
            raise AgentNotFound(agent_id)
        return record

    @api.get(
        "/agents",
        summary="List agents, filtered by capability, host, health, type, tag",
        dependencies=[require(Scope.READ)],
    )
    async def list_agents(
        self,
        capability: Annotated[str | None, Query(max_length=64)] = None,
        host: Annotated[str | None, Query(max_length=253)] = None,
        health: Health | None = None,
        agent_type: Annotated[str | None, Query(max_length=128)] = None,
        tag: Annotated[str | None, Query(max_length=64)] = None,
    ) -> AgentList:
        query = AgentQuery(
            capability=capability, host=host, health=health, agent_type=agent_type, tag=tag
        )
        version, agents = await self._query(query)
        return AgentList(version=version, agents=agents)

    async def _query(self, query: AgentQuery) -> tuple[int, list[AgentRecord]]:
        view = await self._view()
        return view.version, view.list_agents(query)

    # -- request coordinator ----------------------------------------------------------------

    @api.post(
        "/requests",
        status_code=202,
        summary="Queue a user request; poll its id",
        dependencies=[require(Scope.REQUESTS_SUBMIT)],
    )
    async def submit(self, request: UserRequest) -> SubmitReceipt:
        return self._coordinator.submit(request)

    @api.post(
        "/requests/wait",
        summary="Queue a user request and answer its result (202 with its id on timeout)",
        dependencies=[require(Scope.REQUESTS_SUBMIT)],
        responses={202: {"description": "Not finished within timeout_s; poll its request_id"}},
    )
    async def submit_and_wait(
        self,
        request: UserRequest,
        response: Response,
        timeout_s: Annotated[float, Query(gt=0, le=30)] = 10,
    ) -> RequestStatus:
        """Accepted like ``POST /requests``; 200 once finished, else 202 and a ``Location``."""
        status = await self._submit_and_wait(request, timeout_s)
        if status.finished_at is None:
            response.status_code = 202
            response.headers["Location"] = f"/core/requests/{status.request_id}"
        return status

    async def _submit_and_wait(self, request: UserRequest, timeout_s: float) -> RequestStatus:
        return await self._coordinator.submit_and_wait(request, timeout_s)

    @api.get(
        "/requests/{request_id}",
        summary="Status and result of a request",
        dependencies=[require(Scope.READ)],
    )
    async def request_status(
        self, request_id: str, wait_s: Annotated[float, Query(ge=0, le=30)] = 0
    ) -> RequestStatus:
        """With ``wait_s``, answer as soon as the request finishes (at most that long)."""
        if wait_s > 0:
            return await self._coordinator.wait_finished(request_id, wait_s)
        return self._coordinator.status(request_id)

    @api.get(
        "/queue", summary="Queued requests in dispatch order", dependencies=[require(Scope.READ)]
    )
    async def queue(self) -> QueueView:
        return self._coordinator.queue_view()

    @api.get(
        "/breakers",
        summary="Circuit breaker of every downstream",
        dependencies=[require(Scope.READ)],
    )
    async def breakers(self) -> list[BreakerView]:
        return self._coordinator.breaker_views()

    @api.post(
        "/interrupt",
        summary="Pause dispatch and cancel a session's queued requests",
        dependencies=[require(Scope.REQUESTS_SUBMIT)],
    )
    async def interrupt(self, interrupt: InterruptRequest) -> InterruptReport:
        return self._coordinator.interrupt(interrupt)

    @api.delete(
        "/interrupt",
        status_code=204,
        summary="Resume dispatch now",
        dependencies=[require(Scope.REQUESTS_SUBMIT)],
    )
    async def resume(self) -> Response:
        self._coordinator.resume()
        return Response(status_code=204)

    # -- digital twin and supervision -------------------------------------------------------

    @api.get(
        "/twin",
        summary="Hosts (with GPUs and history), services and agents",
        dependencies=[require(Scope.READ)],
    )
    async def twin(self) -> TwinSnapshot:
        agents = (await self._view()).list_agents()
        health: dict[str, int] = {}
        for agent in agents:
            health[agent.health.value] = health.get(agent.health.value, 0) + 1
        return TwinSnapshot(
            taken_at=time.time(),
            hosts=self._twin.hosts(),
            services=await self.services(),
            agents=agents,
            agent_health=health,
        )

    @api.post(
        "/twin/simulate_load",
        summary="Would an agent of this size fit on a host now?",
        dependencies=[require(Scope.READ)],
    )
    async def simulate_load(self, request: SimulateLoadRequest) -> SimulateLoadResult:
        return self._twin.simulate_load(request)

    @api.get(
        "/services",
        summary="Serve applications, deployments and replicas",
        dependencies=[require(Scope.READ)],
    )
    async def services(self) -> list[ServiceTwin]:
        return services_from_details(await serve_details(), set(self._twin.host_tags))

    @api.post(
        "/services/{app}/restart",
        status_code=202,
        summary="Redeploy one application",
        dependencies=[require(Scope.ADMIN)],
    )
    async def restart_service(self, app: str) -> RestartReport:
        return await redeploy_app(app)


def build_app(args: dict[str, Any]) -> Application:
    """Serve application builder named by the ``core`` import path of the Serve config.

    Raises:
        pydantic.ValidationError: ``args`` is not a valid :class:`CoreAppArgs`.
    """
    return CoreOrchestrator.bind(CoreAppArgs.model_validate(args))  # type: ignore[attr-defined,no-any-return]
