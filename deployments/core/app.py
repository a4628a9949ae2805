"""CoreOrchestrator (``/core``): the Serve application; today it serves the agent registry.

The deployment only adapts HTTP to the registry actor. Reads are answered from a local
:class:`RegistryView` kept current by the actor's change feed, so a lookup costs no Ray call;
writes go to the actor and return once the local view has seen them.

No ``from __future__ import annotations`` here: FastAPI reads the route annotations at runtime
to tell body models from query parameters.
"""

import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Response
from pydantic import BaseModel, ConfigDict
from ray import serve
from ray.serve import Application

from actors.registry.actor import get_or_create_registry
from actors.registry.follower import RegistryFollower
from actors.registry.models import AgentQuery, AgentRecord, Change, Health, Heartbeat, Registration
from actors.registry.view import RegistryView
from cluster.errors import AgentNotFound, ClusterError
from cluster.settings import CoreSettings
from deployments._http import install_error_handlers

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


class AgentList(BaseModel):
    """Response of ``GET /core/agents``."""

    version: int
    agents: list[AgentRecord]


api = FastAPI(
    title="aisys CoreOrchestrator",
    description="Agent registry with TTL health checks (Consul semantics) and discovery.",
    version="1",
)
install_error_handlers(api)


@serve.deployment
@serve.ingress(api)
class CoreOrchestrator:
    """Serve deployment of CoreOrchestrator."""

    def __init__(self, args: CoreAppArgs) -> None:
        registry = get_or_create_registry(
            args.settings.registry, Path(args.data_dir) / "registry.sqlite3", args.host_tag
        )
        self._registry = registry
        self._follower = RegistryFollower(registry)
        self._follower.start()

    async def check_health(self) -> None:
        if not self._follower.running:
            raise ClusterError("core: the registry change-feed task has stopped")
        if self._follower.last_sync and not self._follower.synced_within(_FEED_STALE_AFTER_S):
            raise ClusterError("core: the registry actor has not answered for a minute")

    async def _view(self) -> RegistryView:
        if not await self._follower.wait_synced():
            raise ClusterError("core: the registry actor has not answered yet; retry shortly")
        return self._follower.view

    async def _settled(self, change: Change) -> AgentRecord | None:
        if not await self._follower.wait_for(change.version):
            logger.warning("local registry view lags behind version %d", change.version)
        return change.record

    @api.post("/agents", summary="Register an agent (idempotent by agent_id)")
    async def register(self, registration: Registration) -> AgentRecord:
        change: Change = await self._registry.register.remote(registration)
        record = await self._settled(change)
        assert record is not None  # an upsert always carries its record
        return record

    @api.put("/agents/{agent_id}/heartbeat", summary="Pass, warn or fail an agent's TTL check")
    async def heartbeat(self, agent_id: str, heartbeat: Heartbeat) -> AgentRecord:
        change: Change = await self._registry.heartbeat.remote(agent_id, heartbeat)
        record = await self._settled(change)
        assert record is not None
        return record

    @api.delete("/agents/{agent_id}", status_code=204, summary="Deregister an agent")
    async def deregister(self, agent_id: str) -> Response:
        change: Change = await self._registry.deregister.remote(agent_id)
        await self._settled(change)
        return Response(status_code=204)

    @api.get("/agents/{agent_id}", summary="Look up one agent")
    async def get_agent(self, agent_id: str) -> AgentRecord:
        record = (await self._view()).get(agent_id)
        if record is None:
            raise AgentNotFound(agent_id)
        return record

    @api.get("/agents", summary="List agents, filtered by capability, host, health, type, tag")
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
        view = await self._view()
        return AgentList(version=view.version, agents=view.list_agents(query))


def build_app(args: dict[str, Any]) -> Application:
    """Serve application builder named by the ``core`` import path of the Serve config.

    Raises:
        pydantic.ValidationError: ``args`` is not a valid :class:`CoreAppArgs`.
    """
    return CoreOrchestrator.bind(CoreAppArgs.model_validate(args))  # type: ignore[attr-defined,no-any-return]
