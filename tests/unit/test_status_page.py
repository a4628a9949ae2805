"""The status page's core: snapshot assembly, stream tickets, the event stream, escaping."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from actors.errors.models import ErrorEvent, ErrorPage, StoredEvent
from actors.resources.models import (
    GpuList,
    GpuMemoryUse,
    GpuStatus,
    LeaseGrant,
    LeaseList,
    LeaseUsage,
    UsageReport,
)
from actors.security.models import Claims
from cluster.base.errors import ClusterError, TokenRejected
from deployments.core.models import BreakerState, BreakerView, QueueView
from deployments.core.twin_models import GpuTwin, HostTwin, TwinSnapshot
from deployments.observability.alert_models import Alert
from deployments.observability.status import (
    StatusSources,
    TicketBook,
    build_snapshot,
    merge_errors,
    status_events,
)
from deployments.observability.status_html import page_html, render_panels, vram_split
from deployments.observability.status_models import PANELS, GpuRow
from tests.unit._observability_helpers import Clock, agent

NOW = 1_700_000_000.0
EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def claims(exp: float) -> Claims:
    return Claims.model_validate(
        {
            "sub": "admin",
            "iss": "aisys",
            "aud": "aisys",
            "exp": int(exp),
            "iat": int(NOW),
            "nbf": int(NOW),
            "jti": "j1",
            "scope": "read",
            "kind": "user",
        }
    )


def twin() -> TwinSnapshot:
    gpu = GpuTwin(
        index=0,
        uuid="GPU-0",
        name="RTX 3060",
        total_mb=12288,
        used_mb=3000,
        free_mb=9288,
        utilization_percent=10,
        temperature_c=50,
        source="nvml-double",
    )
    host = HostTwin(
        host="pc2",
        ip="10.0.0.2",
        hostname="pc2-box",
        taken_at=NOW - 2,
        cpu_count=4,
        cpu_percent=12.5,
        memory_total_mb=16000,
        memory_percent=40.0,
        memory_available_mb=9000,
        disk_percent=None,
        disk_free_mb=None,
        gpus=[gpu],
        gpu_error=None,
        error=None,
        history=[],
    )
    return TwinSnapshot(
        taken_at=NOW,
        hosts=[host],
        services=[],
        agents=[agent(EVIL, last_seen_at=NOW - 7)],
        agent_health={"passing": 1},
    )


def gpu_list(leased: int = 2048, unseen: int = 1024) -> GpuList:
    status = GpuStatus(
        host="pc2",
        index=0,
        uuid="GPU-0",
        name="RTX 3060",
        source="nvml-double",
        total_mb=12288,
        used_mb=3000,
        free_mb=9288,
        leased_mb=leased,
        unseen_mb=unseen,
        available_mb=8000,
        utilization_percent=10,
        processes=[],
        leases=["l1"],
    )
    return GpuList(gpu_devices=1, gpus=[status], hosts=[])


def lease() -> LeaseGrant:
    return LeaseGrant(
        lease_id="l1",
        owner=EVIL,
        vram_mb=2048,
        priority=10,
        exclusive=False,
        host="pc2",
        gpu_index=0,
        gpu_uuid="GPU-0",
        num_gpus=0.1,
        resources={"pc2": 0.001},
        requested_at=NOW,
        granted_at=NOW,
        ttl_s=60,
        expires_at=NOW + 60,
        last_used_at=NOW,
    )


def stored(seq: int, message: str = "boom") -> StoredEvent:
    event = ErrorEvent(agent="tts", message=message, time=datetime(2026, 1, 1, tzinfo=UTC))
    return StoredEvent(seq=seq, event=event)


def sources(*, fail: set[str] | None = None, errors: list[StoredEvent] | None = None):
    down = fail or set()

    def answer(name: str, value: object):
        async def call(*_: object) -> object:
            if name in down:
                raise ClusterError(f"{name} did not answer")
            return value

        return call

    return StatusSources(
        twin=answer("twin", twin()),
        gpus=answer("gpus", gpu_list()),
        leases=answer("leases", LeaseList(granted=[lease()], queued=[])),
        errors=answer("errors", ErrorPage(items=errors or [stored(1)], next_before_seq=None)),
        queue=answer(
            "queue", QueueView(size=0, max_size=100, in_flight=0, paused_until=None, entries=[])
        ),
        breakers=answer(
            "breakers",
            [
                BreakerView(
                    downstream="nlu",
                    state=BreakerState.OPEN,
                    consecutive_failures=3,
                    opened_at=NOW,
                    retry_at=NOW + 5,
                )
            ],
        ),
        alerts=answer("alerts", list[Alert]()),
    )


def test_a_ticket_opens_the_stream_once() -> None:
    clock = Clock(NOW)
    book = TicketBook(ttl_s=30, clock=clock)
    ticket = book.issue(claims(NOW + 3600), "/observability/status/events")
    assert ticket.events_url.endswith(f"?ticket={ticket.ticket}")
    assert book.redeem(ticket.ticket) is not None
    with pytest.raises(TokenRejected, match="already used"):
        book.redeem(ticket.ticket)


def test_a_ticket_expires_and_never_outlives_its_token() -> None:
    clock = Clock(NOW)
    book = TicketBook(ttl_s=30, clock=clock)
    ticket = book.issue(claims(NOW + 5), "/e")
    assert ticket.expires_at == NOW + 5
    clock.advance(6)
    with pytest.raises(TokenRejected, match="expired"):
        book.redeem(ticket.ticket)
    with pytest.raises(TokenRejected):
        book.redeem("made-up")


def test_the_snapshot_joins_the_twin_with_the_lease_accounting() -> None:
    snapshot = asyncio.run(build_snapshot(sources(), Clock(NOW)))
    assert snapshot.unknown == {}
    assert snapshot.hosts is not None and snapshot.hosts[0].cpu_percent == 12.5
    (gpu,) = snapshot.gpus or []
    assert (gpu.leased_mb, gpu.unseen_mb, gpu.temperature_c) == (2048, 1024, 50)
    assert gpu.leases is not None and gpu.leases[0].owner == EVIL
    assert snapshot.lease_queue == 0


def usage(used_mb: int | None, over: bool) -> UsageReport:
    row = LeaseUsage(
        lease_id="l1",
        owner=EVIL,
        host="pc2",
        gpu_index=0,
        leased_mb=2048,
        used_mb=used_mb,
        pids=[] if used_mb is None else [7],
        over=over,
    )
    others = [
        GpuMemoryUse(host="pc2", gpu_index=0, pid=99, used_mb=300),
        GpuMemoryUse(host="pc2", gpu_index=0, pid=2210, used_mb=None),
    ]
    return UsageReport(leases=[row], unexplained=others, learned_peaks={})


def with_leases(leases: LeaseList) -> StatusSources:
    async def answer() -> LeaseList:
        return leases

    base: StatusSources = sources()
    return dataclasses.replace(base, leases=answer)


def test_the_gpu_panel_shows_leased_vs_used_per_lease_and_what_no_lease_explains() -> None:
    measured = LeaseList(granted=[lease()], queued=[], usage=usage(2600, True))
    snapshot = asyncio.run(build_snapshot(with_leases(measured), Clock(NOW)))
    (gpu,) = snapshot.gpus or []
    assert gpu.leases is not None
    assert (gpu.leases[0].vram_mb, gpu.leases[0].used_mb, gpu.leases[0].over) == (2048, 2600, True)
    assert gpu.unexplained is not None and [p.pid for p in gpu.unexplained] == [99, 2210]
    html = render_panels(snapshot)["gpus"]
    assert "<td>2048 MiB</td>" in html
    assert '<span class="bad">2600 MiB (over its lease)</span>' in html
    assert 'pid 99: 300 MiB, pid 2210: <span class="unknown">unknown</span>' in html
    assert "<script" not in html and "&lt;script&gt;" in html
    # Not measured yet (no process of the holder on the GPU): unknown, never 0.
    unmeasured = LeaseList(granted=[lease()], queued=[], usage=usage(None, False))
    html = render_panels(asyncio.run(build_snapshot(with_leases(unmeasured), Clock(NOW))))["gpus"]
    assert '<td>2048 MiB</td><td><span class="unknown">unknown</span></td>' in html
    # A scheduler that reports no usage at all: what no lease explains is unknown too.
    html = render_panels(asyncio.run(build_snapshot(sources(), Clock(NOW))))["gpus"]
    assert 'memory no lease explains: <span class="unknown">unknown</span>' in html
    assert ">0 MiB<" not in html


def test_a_source_that_fails_is_unknown_not_zero() -> None:
    snapshot = asyncio.run(build_snapshot(sources(fail={"leases", "queue"}), Clock(NOW)))
    assert set(snapshot.unknown) == {"leases", "queue"}
    (gpu,) = snapshot.gpus or []
    assert gpu.leases is None and snapshot.lease_queue is None and snapshot.queue is None
    panels = render_panels(snapshot)
    assert "unknown" in panels["queue"] and "queue did not answer" in panels["queue"]
    assert 'lease requests waiting: <span class="unknown">unknown' in panels["gpus"]
    assert "open" in panels["queue"]  # the breakers still show


def test_every_panel_is_unknown_when_nothing_answers() -> None:
    down = {"twin", "gpus", "leases", "errors", "queue", "breakers", "alerts"}
    snapshot = asyncio.run(build_snapshot(sources(fail=down), Clock(NOW)))
    panels = render_panels(snapshot)
    assert set(panels) == set(PANELS)
    for html in panels.values():
        assert "unknown" in html and ">0<" not in html


def test_vram_split_counts_a_visible_lease_once() -> None:
    row = GpuRow(
        host="pc2",
        index=0,
        uuid="u",
        name="n",
        source="nvml",
        total_mb=12000,
        used_mb=3000,
        free_mb=9000,
        leased_mb=2000,
        unseen_mb=500,  # 1500 of the lease already shows as used
        utilization_percent=None,
        temperature_c=None,
        leases=[],
    )
    leased, used, free = vram_split(row)
    assert (leased, used, free) == (2000, 1500, 8500)
    assert 2000 + used + free == row.total_mb
    unknown = row.model_copy(update={"leased_mb": None, "unseen_mb": None})
    assert vram_split(unknown) == (None, 3000, 9000)


def test_attacker_controlled_text_is_escaped() -> None:
    snapshot = asyncio.run(build_snapshot(sources(errors=[stored(4, EVIL)]), Clock(NOW)))
    html = "".join(render_panels(snapshot).values())
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "7 s ago" in html  # the agent's last sign of life


def test_the_page_has_a_login_form_and_no_inline_script() -> None:
    html = page_html("/observability/status", "/security")
    assert '<form id="login"' in html and 'type="password"' in html
    assert '<script src="/observability/status/page.js" defer></script>' in html
    assert html.count("<script") == 1 and "style=" not in html
    for name in PANELS:
        assert f'id="{name}" data-panel="{name}"' in html


def test_live_errors_are_merged_newest_first() -> None:
    snapshot = asyncio.run(build_snapshot(sources(errors=[stored(3), stored(1)]), Clock(NOW)))
    merged = merge_errors(snapshot, {5: stored(5), 3: stored(3)})
    assert [item.seq for item in merged.errors or []] == [5, 3, 1]


def _parse(chunks: list[bytes]) -> list[tuple[str, dict[str, object]]]:
    events = []
    for block in b"".join(chunks).decode().split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if not line.startswith(":")
        )
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_the_stream_sends_snapshots_new_errors_and_bye_before_its_lifetime() -> None:
    snap = asyncio.run(build_snapshot(sources(errors=[stored(2)]), time.time))
    followed: list[int | None] = []

    async def snapshots():
        return snap

    async def follow(after: int | None) -> AsyncIterator[StoredEvent | None]:
        followed.append(after)

        async def events() -> AsyncIterator[StoredEvent | None]:
            yield stored(2)  # already shown: skipped
            yield None
            yield stored(3, EVIL)
            await asyncio.sleep(3600)

        return events()

    async def run() -> tuple[list[bytes], float]:
        start = time.monotonic()
        chunks = [c async for c in status_events(snapshots, follow, None, 0.2, 0.7, time.time)]
        return chunks, time.monotonic() - start

    chunks, took = asyncio.run(run())
    assert chunks[0].startswith(b"retry: ")
    events = _parse(chunks)
    names = [name for name, _ in events]
    assert names[0] == "snapshot" and names[-1] == "bye" and names.count("errors") == 1
    assert followed == [2]  # resumes after the newest event the snapshot showed
    errors = dict(events)["errors"]
    assert errors["after_seq"] == 3
    assert "&lt;script&gt;" in str(errors["panels"])
    assert events[-1][1] == {"after_seq": 3}
    assert names.count("snapshot") >= 2  # refreshed within the lifetime
    assert took < 2.0


def test_the_stream_says_when_live_errors_are_unavailable() -> None:
    snap = asyncio.run(build_snapshot(sources(), time.time))

    async def snapshots():
        return snap

    async def follow(_after: int | None) -> AsyncIterator[StoredEvent | None]:
        raise ClusterError("NATS down")

    async def run() -> list[bytes]:
        return [c async for c in status_events(snapshots, follow, 7, 5.0, 0.2, time.time)]

    events = _parse(asyncio.run(run()))
    assert [name for name, _ in events] == ["notice", "snapshot", "bye"]
    assert events[-1][1] == {"after_seq": 7}
