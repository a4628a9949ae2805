"""Routes of the status page on the ObservabilityHub (``/observability/status...``).

``GET /status`` is the page itself (HTML with a login form and no data, so it is open), with its
script and style sheet. The data needs a token with ``read``: ``GET /status/snapshot`` (every
panel's data as JSON), ``POST /status/ticket`` (a single-use ticket for the stream) and
``GET /status/events`` (Server-Sent Events, opened with that ticket: ``EventSource`` cannot send
an ``Authorization`` header). The deployment puts its :class:`StatusPage` on the app's state
with :func:`install_status_page`.

No ``from __future__ import annotations`` here: FastAPI reads the route annotations at runtime.
"""

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final

from fastapi import APIRouter, FastAPI, Header, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from actors.errors.models import StoredEvent
from actors.security.models import Claims, Scope
from cluster.base.constants import APP_ROUTE_PREFIXES, APP_SECURITY
from deployments.auth import AuthFirstRoute, require
from deployments.observability.status import SnapshotCache, TicketBook, status_events
from deployments.observability.status_html import CSP, page_html
from deployments.observability.status_models import StatusSnapshot, StreamTicket

__all__ = ["StatusPage", "install_status_page", "router"]

_STATE_KEY: Final = "aisys_status_page"
_ASSETS: Final = Path(__file__).with_name("status_page")
_MEDIA: Final = {"page.js": "text/javascript", "page.css": "text/css"}
_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass
class StatusPage:
    """What the status routes of one replica share.

    Attributes:
        cache: the latest snapshot.
        tickets: the stream tickets this replica issued.
        follow: subscribes to error events after a sequence number.
        refresh_s: period of the stream's snapshots.
        lifetime_s: how long one stream lasts (below Serve's ``request_timeout_s``).
    """

    cache: SnapshotCache
    tickets: TicketBook
    follow: Callable[[int | None], Awaitable[AsyncIterator[StoredEvent | None]]]
    refresh_s: float
    lifetime_s: float


def install_status_page(api: FastAPI, page: StatusPage) -> None:
    """Make ``page`` the one the status routes of ``api`` use."""
    setattr(api.state, _STATE_KEY, page)


def _page(request: Request) -> StatusPage:
    page: StatusPage = getattr(request.app.state, _STATE_KEY)
    return page


def _base(request: Request) -> str:
    return f"{request.scope.get('root_path', '')}/status"


router = APIRouter(route_class=AuthFirstRoute)


@router.get(
    "/status",
    summary="The status page (HTML; its data needs a login with read)",
    response_class=HTMLResponse,
)
async def status_page(request: Request) -> HTMLResponse:
    html = page_html(_base(request), APP_ROUTE_PREFIXES[APP_SECURITY])
    return HTMLResponse(html, headers=_HEADERS)


@router.get("/status/page.js", summary="The status page's script", response_class=Response)
async def status_script() -> Response:
    return Response(
        (_ASSETS / "page.js").read_bytes(), media_type=_MEDIA["page.js"], headers=_HEADERS
    )


@router.get("/status/page.css", summary="The status page's style sheet", response_class=Response)
async def status_style() -> Response:
    body = (_ASSETS / "page.css").read_bytes()
    return Response(body, media_type=_MEDIA["page.css"], headers=_HEADERS)


@router.get(
    "/status/snapshot",
    summary="Every panel of the status page: hosts, GPUs with leases, services, agents, alerts, "
    "errors, queue and breakers; a source that did not answer is named in unknown",
    dependencies=[require(Scope.READ)],
)
async def status_snapshot(request: Request) -> StatusSnapshot:
    return await _page(request).cache.get()


@router.post(
    "/status/ticket",
    summary="A single-use ticket, valid 30 s, that opens the status event stream once",
)
async def status_ticket(
    request: Request, claims: Annotated[Claims | None, require(Scope.READ)]
) -> StreamTicket:
    return _page(request).tickets.issue(claims, f"{_base(request)}/events")


@router.get(
    "/status/events",
    summary="Follow the status page as Server-Sent Events (snapshot, errors, bye); needs a "
    "ticket from POST /observability/status/ticket instead of a bearer token",
    response_class=StreamingResponse,
)
async def status_event_stream(
    request: Request,
    ticket: Annotated[str, Query(min_length=1, max_length=128)],
    after_seq: Annotated[int | None, Query(ge=0)] = None,
    last_event_id: Annotated[int | None, Header(ge=0)] = None,
) -> StreamingResponse:
    page = _page(request)
    page.tickets.redeem(ticket)  # 401 unless issued here, unused and unexpired
    stream = status_events(
        page.cache.get,
        page.follow,
        last_event_id if last_event_id is not None else after_seq,
        page.refresh_s,
        page.lifetime_s,
        time.time,
    )
    headers = {**_HEADERS, "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)
