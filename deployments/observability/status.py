"""The status page's core (no Ray, no HTTP): snapshot assembly, stream tickets, the event stream.

:func:`build_snapshot` asks every source at once and joins their answers into a
:class:`StatusSnapshot`; a source that fails leaves its panels None with the reason in
``unknown``. :class:`TicketBook` hands out single-use, short-lived tickets for the Server-Sent
Events route (``EventSource`` cannot send an ``Authorization`` header, and a bearer token in a
URL ends up in logs and history; a ticket that is spent on connect and dies in seconds does
not matter there). :func:`status_events` is that stream: a snapshot of the rendered panels at
once and every ``refresh_s``, each new error event as it is stored, and a ``bye`` before the
stream's lifetime ends, which stays below Serve's ``request_timeout_s`` (the proxy cuts any
response longer than that).

Example::

    book = TicketBook(ttl_s=30, clock=time.time)
    ticket = book.issue(claims)
    book.redeem(ticket.ticket)  # once; a second time raises TokenRejected
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from actors.errors.models import ErrorPage, StoredEvent
from actors.resources.models import GpuList, GpuMemoryUse, LeaseList
from actors.security.models import Claims
from cluster.base.errors import AisysError, TokenRejected
from deployments.core.models import BreakerView, QueueView
from deployments.core.twin_models import TwinSnapshot
from deployments.observability.alert_models import Alert
from deployments.observability.status_html import render_panels
from deployments.observability.status_models import GpuRow, LeaseShare, StatusSnapshot, StreamTicket

__all__ = [
    "ERRORS_SHOWN",
    "SnapshotCache",
    "StatusSources",
    "TicketBook",
    "build_snapshot",
    "merge_errors",
    "status_events",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: How many of the latest error events the page shows.
ERRORS_SHOWN: Final = 20
#: Tickets a replica keeps at most; the oldest unredeemed one goes first.
_TICKETS_MAX: Final = 1024


@dataclass(frozen=True)
class StatusSources:
    """Where the snapshot's parts come from; each raises :class:`AisysError` when unavailable."""

    twin: Callable[[], Awaitable[TwinSnapshot]]
    gpus: Callable[[], Awaitable[GpuList]]
    leases: Callable[[], Awaitable[LeaseList]]
    errors: Callable[[int], Awaitable[ErrorPage]]
    queue: Callable[[], Awaitable[QueueView]]
    breakers: Callable[[], Awaitable[list[BreakerView]]]
    alerts: Callable[[], Awaitable[list[Alert]]]


class TicketBook:
    """Single-use tickets for the event stream, each bound to the token it was issued for.

    Args:
        ttl_s: how long an unredeemed ticket lives (never past its token's expiry).
        clock: seconds since the epoch.
    """

    def __init__(self, ttl_s: float, clock: Callable[[], float]) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._tickets: OrderedDict[str, tuple[float, Claims | None]] = OrderedDict()

    def issue(self, claims: Claims | None, events_path: str) -> StreamTicket:
        """A new ticket for ``claims`` (None: reads are open, ``security.open_reads``)."""
        now = self._clock()
        self._drop_expired(now)
        while len(self._tickets) >= _TICKETS_MAX:
            self._tickets.popitem(last=False)
        expires_at = now + self._ttl_s
        if claims is not None:
            expires_at = min(expires_at, float(claims.exp))
        ticket = secrets.token_urlsafe(24)
        self._tickets[ticket] = (expires_at, claims)
        return StreamTicket(
            ticket=ticket, expires_at=expires_at, events_url=f"{events_path}?ticket={ticket}"
        )

    def redeem(self, ticket: str) -> Claims | None:
        """Spend ``ticket`` and return the claims it was issued for.

        Raises:
            TokenRejected: unknown, already used or expired.
        """
        entry = self._tickets.pop(ticket, None)
        if entry is None:
            raise TokenRejected("unknown or already used stream ticket; get a new one")
        expires_at, claims = entry
        if expires_at <= self._clock():
            raise TokenRejected("the stream ticket has expired; get a new one")
        return claims

    def _drop_expired(self, now: float) -> None:
        for ticket in [t for t, (exp, _) in self._tickets.items() if exp <= now]:
            del self._tickets[ticket]


def _gpu_rows(
    twin: TwinSnapshot | None, gpus: GpuList | None, leases: LeaseList | None
) -> list[GpuRow]:
    usage = leases.usage if leases is not None else None
    measured = {row.lease_id: row for row in usage.leases} if usage is not None else {}
    unexplained: dict[tuple[str, int], list[GpuMemoryUse]] | None = None
    if usage is not None:
        unexplained = {}
        for process in usage.unexplained:
            unexplained.setdefault((process.host, process.gpu_index), []).append(process)
    shares: dict[tuple[str, int], list[LeaseShare]] = {}
    for lease in leases.granted if leases is not None else []:
        use = measured.get(lease.lease_id)
        shares.setdefault((lease.host, lease.gpu_index), []).append(
            LeaseShare(
                lease_id=lease.lease_id,
                owner=lease.owner,
                vram_mb=lease.vram_mb,
                model_name=lease.model_name,
                used_mb=use.used_mb if use is not None else None,
                over=use is not None and use.over,
            )
        )
    scheduled = {(g.host, g.index): g for g in gpus.gpus} if gpus is not None else {}
    rows: dict[tuple[str, int], GpuRow] = {}
    for host in twin.hosts if twin is not None else []:
        for gpu in host.gpus:
            key = (host.host, gpu.index)
            sched = scheduled.get(key)
            rows[key] = GpuRow(
                host=host.host,
                index=gpu.index,
                uuid=gpu.uuid,
                name=gpu.name,
                source=gpu.source,
                total_mb=gpu.total_mb,
                used_mb=gpu.used_mb,
                free_mb=gpu.free_mb,
                leased_mb=sched.leased_mb if sched is not None else None,
                unseen_mb=sched.unseen_mb if sched is not None else None,
                utilization_percent=gpu.utilization_percent,
                temperature_c=gpu.temperature_c,
                leases=shares.get(key, []) if leases is not None else None,
                unexplained=unexplained.get(key, []) if unexplained is not None else None,
            )
    for key, g in scheduled.items():  # the scheduler sees a GPU the twin has not sampled yet
        if key not in rows:
            rows[key] = GpuRow(
                host=g.host,
                index=g.index,
                uuid=g.uuid,
                name=g.name,
                source=g.source,
                total_mb=g.total_mb,
                used_mb=g.used_mb,
                free_mb=g.free_mb,
                leased_mb=g.leased_mb,
                unseen_mb=g.unseen_mb,
                utilization_percent=g.utilization_percent,
                temperature_c=None,
                leases=shares.get(key, []) if leases is not None else None,
                unexplained=unexplained.get(key, []) if unexplained is not None else None,
            )
    return [rows[key] for key in sorted(rows)]


async def _ask(name: str, call: Awaitable[_T], unknown: dict[str, str]) -> _T | None:
    try:
        return await call
    except AisysError as exc:
        unknown[name] = str(exc)[:500]
        return None


async def build_snapshot(sources: StatusSources, clock: Callable[[], float]) -> StatusSnapshot:
    """Ask every source at once and join the answers; a failed source is named in ``unknown``."""
    unknown: dict[str, str] = {}
    (twin, gpus, leases, errors), (queue, breakers, alerts) = await asyncio.gather(
        asyncio.gather(
            _ask("twin", sources.twin(), unknown),
            _ask("gpus", sources.gpus(), unknown),
            _ask("leases", sources.leases(), unknown),
            _ask("errors", sources.errors(ERRORS_SHOWN), unknown),
        ),
        asyncio.gather(
            _ask("queue", sources.queue(), unknown),
            _ask("breakers", sources.breakers(), unknown),
            _ask("alerts", sources.alerts(), unknown),
        ),
    )
    has_gpus = twin is not None or gpus is not None
    return StatusSnapshot(
        taken_at=clock(),
        hosts=[h.model_copy(update={"history": []}) for h in twin.hosts] if twin else None,
        gpus=_gpu_rows(twin, gpus, leases) if has_gpus else None,
        lease_queue=len(leases.queued) if leases is not None else None,
        services=twin.services if twin is not None else None,
        agents=twin.agents if twin is not None else None,
        alerts=alerts,
        errors=errors.items if errors is not None else None,
        queue=queue,
        breakers=breakers,
        unknown=unknown,
    )


class SnapshotCache:
    """One snapshot shared by every viewer of a replica, rebuilt when older than ``max_age_s``."""

    def __init__(
        self, sources: StatusSources, max_age_s: float, clock: Callable[[], float]
    ) -> None:
        self._sources = sources
        self._max_age_s = max_age_s
        self._clock = clock
        self._lock = asyncio.Lock()
        self._latest: StatusSnapshot | None = None

    async def get(self) -> StatusSnapshot:
        async with self._lock:
            latest = self._latest
            if latest is None or self._clock() - latest.taken_at >= self._max_age_s:
                latest = self._latest = await build_snapshot(self._sources, self._clock)
            return latest


def merge_errors(snapshot: StatusSnapshot, live: dict[int, StoredEvent]) -> StatusSnapshot:
    """The snapshot with the live events it lacks (the index lags the stream), newest first."""
    if not live:
        return snapshot
    merged = {item.seq: item for item in snapshot.errors or []} | live
    latest = [merged[seq] for seq in sorted(merged, reverse=True)[:ERRORS_SHOWN]]
    return snapshot.model_copy(update={"errors": latest})


def _event(name: str, data: object, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _panels_event(name: str, snapshot: StatusSnapshot, last_seq: int | None) -> bytes:
    return _event(
        name,
        {"taken_at": snapshot.taken_at, "after_seq": last_seq, "panels": render_panels(snapshot)},
        last_seq,
    )


async def status_events(
    snapshots: Callable[[], Awaitable[StatusSnapshot]],
    follow: Callable[[int | None], Awaitable[AsyncIterator[StoredEvent | None]]],
    after_seq: int | None,
    refresh_s: float,
    lifetime_s: float,
    clock: Callable[[], float],
) -> AsyncIterator[bytes]:
    """The page's event stream, ``lifetime_s`` long.

    Events: ``snapshot`` (every panel's HTML, at once and every ``refresh_s``), ``errors`` (the
    errors panel again, with the new event's sequence number as the event id), ``notice``
    (live errors are unavailable: why) and ``bye`` (the stream ends now; open the next one with
    ``after_seq``). Each event's data is JSON.

    Args:
        snapshots: the latest snapshot (shared by the viewers of the replica).
        follow: subscribe to error events stored after a sequence number (None: new ones).
        after_seq: the last error event the viewer has; None: the first connection.
    """
    end = clock() + lifetime_s
    yield b"retry: 1000\n: status stream\n\n"
    snapshot = await snapshots()
    newest = max((item.seq for item in snapshot.errors or []), default=None)
    known = [seq for seq in (after_seq, newest) if seq is not None]
    last_seq = max(known) if known else None
    queue: asyncio.Queue[StoredEvent] = asyncio.Queue(maxsize=1000)
    live: dict[int, StoredEvent] = {}
    try:
        events = await follow(last_seq)
    except AisysError as exc:
        events = None
        yield _event("notice", {"message": f"live error events unavailable: {exc}"})
    reader = asyncio.create_task(_pump(events, queue)) if events is not None else None
    try:
        yield _panels_event("snapshot", snapshot, last_seq)
        next_refresh = clock() + refresh_s
        while (now := clock()) < end:
            try:
                item = await asyncio.wait_for(queue.get(), max(0.0, min(next_refresh, end) - now))
            except TimeoutError:
                if clock() >= next_refresh:
                    snapshot = merge_errors(await snapshots(), live)
                    yield _panels_event("snapshot", snapshot, last_seq)
                    next_refresh = clock() + refresh_s
                continue
            if last_seq is not None and item.seq <= last_seq:
                continue
            live[item.seq] = item
            for seq in sorted(live)[:-ERRORS_SHOWN]:
                del live[seq]
            last_seq = item.seq
            snapshot = merge_errors(snapshot, live)
            yield _event(
                "errors",
                {"after_seq": last_seq, "panels": {"errors": render_panels(snapshot)["errors"]}},
                last_seq,
            )
        yield _event("bye", {"after_seq": last_seq})
    finally:
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def _pump(
    events: AsyncIterator[StoredEvent | None], queue: asyncio.Queue[StoredEvent]
) -> None:
    try:
        async for item in events:
            if item is not None:
                await queue.put(item)
    except Exception:
        # Loop boundary: a lost subscription ends live errors for this stream only; the
        # snapshots (which carry the latest errors too) go on, and the next stream subscribes
        # again.
        logger.warning("status stream: following error events stopped", exc_info=True)
