"""ErrorBus (``/errors``): the Serve application over :class:`ErrorBusCore`.

Routes: ``POST /errors`` (one event or ``{"events": [...]}``), ``GET /errors`` (filters and
paging, newest first), ``GET /errors/stream`` (Server-Sent Events, resumable with
``Last-Event-ID``) and ``GET /errors/counts`` (per-agent counts for the ObservabilityHub).

No ``from __future__ import annotations`` here: FastAPI reads the route annotations at runtime.
"""

import logging
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict
from ray import serve
from ray.serve import Application

from actors.errors.models import (
    SEVERITIES,
    ErrorBatch,
    ErrorCounts,
    ErrorEvent,
    ErrorPage,
    ErrorQuery,
    PublishResult,
    Severity,
    StoredEvent,
    severity_rank,
    subject_token,
)
from actors.security.models import Scope
from cluster.base.constants import ERRORS_SUBJECT_PREFIX
from cluster.base.nats_client import NatsClient
from cluster.base.settings import ErrorBusSettings
from cluster.base.tally import ImportTally
from deployments.auth import AuthArgs, Authenticator, auth_first, install_auth, require
from deployments.errors.core import ErrorBusCore
from deployments.http import install_error_handlers

__all__ = ["ErrorBus", "ErrorBusAppArgs", "build_app"]

logger = logging.getLogger(__name__)


class ErrorBusAppArgs(BaseModel):
    """Arguments of the ``errors`` application (the ``args`` block of its Serve config)."""

    model_config = ConfigDict(extra="forbid")

    settings: ErrorBusSettings
    nats: NatsClient
    errors_dir: str
    auth: AuthArgs


async def _sse(
    events: AsyncIterator[StoredEvent | None], floor: int, agent: str | None
) -> AsyncIterator[bytes]:
    # Defined before the deployment class: Serve ships the class to replicas by value, and a
    # module global defined after it was not found there (NameError).
    # The first chunk goes out at once so the client sees the headers before any event.
    yield b": following\n\n"
    async for item in events:
        if item is None:
            yield b": keep-alive\n\n"
        elif severity_rank(item.event.severity) >= floor and (
            agent is None or item.event.agent == agent
        ):
            data = item.event.model_dump_json()
            yield f"id: {item.seq}\nevent: error\ndata: {data}\n\n".encode()


api = FastAPI(
    title="aisys ErrorBus",
    description="Error events on NATS JetStream: publish, query, follow, count.",
    version="1",
)
install_error_handlers(api)
auth_first(api)  # every scoped route checks its token before the request is parsed

_Text = Annotated[str | None, Query(max_length=256)]


@serve.deployment
@serve.ingress(api)
class ErrorBus:
    """Serve deployment of ErrorBus."""

    def __init__(self, args: ErrorBusAppArgs) -> None:
        install_auth(api, Authenticator(args.auth))
        self._settings = args.settings
        self._core = ErrorBusCore(args.nats, args.settings, Path(args.errors_dir))
        self._core.start()

    async def check_health(self) -> None:
        self._core.check()

    async def __del__(self) -> None:
        await self._core.close()

    @api.post(
        "/",
        summary="Publish one event or a batch; 200 once stored or spooled on disk",
        dependencies=[require(Scope.ERRORS_PUBLISH)],
    )
    async def publish(self, body: ErrorEvent | ErrorBatch) -> PublishResult:
        events = body.events if isinstance(body, ErrorBatch) else [body]
        return await self._core.publish(events)

    async def import_events(self, events: list[ErrorEvent]) -> ImportTally:
        """Publish legacy events ErrorBus has not taken yet (``aisys import-legacy``).

        Not a route: the CLI calls it through a Serve handle, as a Ray driver holding the
        cluster's token, which is the same trust as an admin.
        """
        return await self._core.import_events(events)

    @api.get(
        "/",
        summary="Query events, newest first; page with next_before_seq",
        dependencies=[require(Scope.READ)],
    )
    async def query(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        min_severity: Severity | None = None,
        agent: _Text = None,
        host: _Text = None,
        error_type: _Text = None,
        text: _Text = None,
        before_seq: Annotated[int | None, Query(ge=1)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> ErrorPage:
        query = ErrorQuery(
            since=since,
            until=until,
            min_severity=min_severity,
            agent=agent,
            host=host,
            error_type=error_type,
            text=text,
            before_seq=before_seq,
            limit=limit,
        )
        return self._core.query(query)

    @api.get(
        "/counts", summary="Per-agent error counts by severity", dependencies=[require(Scope.READ)]
    )
    async def counts(self, since: datetime | None = None) -> ErrorCounts:
        return self._core.counts(since)

    @api.get(
        "/stream",
        summary="Follow new events as Server-Sent Events",
        dependencies=[require(Scope.READ)],
    )
    async def stream(
        self,
        min_severity: Severity | None = None,
        agent: _Text = None,
        after_seq: Annotated[int | None, Query(ge=0)] = None,
        last_event_id: Annotated[int | None, Header(ge=0)] = None,
    ) -> StreamingResponse:
        core = self._core
        token = subject_token(agent) if agent else "*"
        events = await core.follow(
            f"{ERRORS_SUBJECT_PREFIX}.*.{token}",
            last_event_id if last_event_id is not None else after_seq,
            self._settings.sse_keepalive_s,
        )
        floor = severity_rank(min_severity or SEVERITIES[0])
        return StreamingResponse(
            _sse(events, floor, agent),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )


def build_app(args: dict[str, Any]) -> Application:
    """Serve application builder named by the ``errors`` import path of the Serve config.

    Raises:
        pydantic.ValidationError: ``args`` is not a valid :class:`ErrorBusAppArgs`.
    """
    return ErrorBus.bind(ErrorBusAppArgs.model_validate(args))  # type: ignore[attr-defined,no-any-return]
