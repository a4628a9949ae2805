"""HTML of the status page: the shell with its login form, and each panel rendered from a snapshot.

Every value that reaches the page passes :func:`html.escape` here (agent names, error messages
and labels come from anyone on the LAN), and the page's JavaScript only places these fragments;
the Content-Security-Policy (:data:`CSP`) allows no inline script or style as a second line.
A value the snapshot does not have is written ``unknown`` (with the reason where there is one),
never as zero.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from html import escape
from typing import Final

from deployments.observability.status_models import PANELS, GpuRow, StatusSnapshot

__all__ = ["CSP", "page_html", "render_panels", "vram_split"]

#: Same-origin script, style and fetch/EventSource only; nothing inline, no frames, no plugins.
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

_TITLES: Final = {
    "hosts": "Hosts",
    "gpus": "GPUs",
    "services": "Services",
    "agents": "Agents",
    "alerts": "Active alerts",
    "errors": "Latest errors",
    "queue": "Request queue and breakers",
}
#: The sources each panel is built from (their failures are shown on the panel).
_PANEL_SOURCES: Final = {
    "hosts": ("twin",),
    "gpus": ("twin", "gpus", "leases"),
    "services": ("twin",),
    "agents": ("twin",),
    "alerts": ("alerts",),
    "errors": ("errors",),
    "queue": ("queue", "breakers"),
}
_UNKNOWN: Final = '<span class="unknown">unknown</span>'


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _num(value: float | int | None, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return _UNKNOWN
    return _e(f"{value:.{digits}f}{unit}")


def _clock(at: float | None) -> str:
    if at is None:
        return _UNKNOWN
    return _e(time.strftime("%H:%M:%S", time.gmtime(at)) + "Z")


def _ago(at: float | None, now: float) -> str:
    if at is None:
        return _UNKNOWN
    return f'{_clock(at)} <span class="ago">({_e(f"{max(0.0, now - at):.0f}")} s ago)</span>'


def _table(headers: Iterable[str], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f'<p class="empty">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def vram_split(gpu: GpuRow) -> tuple[int | None, int, int]:
    """(leased, used outside leases, free) MiB of ``gpu``, which add up to its total.

    A lease the readings already show as used counts as leased, not twice; leased is None when
    the scheduler did not answer (then used and free are NVML's).
    """
    if gpu.leased_mb is None:
        return None, gpu.used_mb, max(0, gpu.total_mb - gpu.used_mb)
    visible = gpu.leased_mb - (gpu.unseen_mb or 0)
    other = max(0, gpu.used_mb - visible)
    leased = min(gpu.leased_mb, gpu.total_mb)
    return leased, min(other, gpu.total_mb - leased), max(0, gpu.total_mb - leased - other)


def _bar(gpu: GpuRow) -> str:
    leased, used, free = vram_split(gpu)
    total = max(1, gpu.total_mb)
    x = 0.0
    rects = []
    for part, mib in (("leased", leased or 0), ("used", used), ("free", free)):
        width = 100.0 * mib / total
        rects.append(
            f'<rect class="{part}" x="{x:.3f}" y="0" width="{width:.3f}" height="10">'
            f"<title>{part} {mib} MiB</title></rect>"
        )
        x += width
    legend = (
        f'<span class="key leased"></span>leased {_num(leased, " MiB")} '
        f'<span class="key used"></span>used {_e(used)} MiB '
        f'<span class="key free"></span>free {_e(free)} MiB of {_e(gpu.total_mb)} MiB'
    )
    svg = (
        '<svg class="vram" viewBox="0 0 100 10" preserveAspectRatio="none" role="img" '
        f'aria-label="VRAM of {_e(gpu.host)} GPU {_e(gpu.index)}">{"".join(rects)}</svg>'
    )
    return f'{svg}<div class="legend">{legend}</div>'


def _leases(gpu: GpuRow) -> str:
    """Each lease on ``gpu``: leased vs measured (unknown while none of its processes shows)."""
    if gpu.leases is None:
        return f'<p class="meta">leases: {_UNKNOWN}</p>'
    rows = []
    for x in gpu.leases:
        used = _num(x.used_mb, " MiB")
        if x.over:
            used = f'<span class="bad">{used} (over its lease)</span>'
        rows.append([_e(x.owner), _e(x.model_name or ""), _num(x.vram_mb, " MiB"), used])
    return _table(("lease holder", "model", "leased", "used"), rows, "no lease")


def _unexplained(gpu: GpuRow) -> str:
    if gpu.unexplained is None:
        return _UNKNOWN
    shown = [f"pid {_e(p.pid)}: {_num(p.used_mb, ' MiB')}" for p in gpu.unexplained]
    return ", ".join(shown) or "none"


def _gpus(s: StatusSnapshot) -> str:
    assert s.gpus is not None
    if not s.gpus:
        return '<p class="empty">no GPU visible (no NVIDIA driver, or none declared)</p>'
    cards = []
    for gpu in s.gpus:
        cards.append(
            f'<div class="gpu" data-gpu="{_e(gpu.host)}:{_e(gpu.index)}">'
            f"<h3>{_e(gpu.host)} GPU {_e(gpu.index)}: {_e(gpu.name)} "
            f'<span class="source">{_e(gpu.source)}</span></h3>{_bar(gpu)}'
            f'<p class="meta">utilization {_num(gpu.utilization_percent, " %")}, '
            f"temperature {_num(gpu.temperature_c, ' °C')}, "
            f"memory no lease explains: {_unexplained(gpu)}</p>{_leases(gpu)}</div>"
        )
    waiting = _num(s.lease_queue)
    return "".join(cards) + f'<p class="meta">lease requests waiting: {waiting}</p>'


def _hosts(s: StatusSnapshot) -> str:
    assert s.hosts is not None
    rows = [
        [
            _e(h.host),
            f"{_e(h.hostname) if h.hostname else _UNKNOWN} / {_e(h.ip) if h.ip else _UNKNOWN}",
            f"{_num(h.cpu_percent, ' %', 1)} of {_num(h.cpu_count)} cores",
            f"{_num(h.memory_percent, ' %', 1)} of {_num(h.memory_total_mb, ' MiB')}",
            _num(h.disk_percent, " %", 1),
            _ago(h.taken_at, s.taken_at),
            f'<span class="bad">{_e(h.error)}</span>' if h.error else "",
        ]
        for h in s.hosts
    ]
    headers = ("host", "hostname / IP", "CPU", "RAM", "disk", "sampled", "problem")
    return _table(headers, rows, "no host sampled yet")


def _services(s: StatusSnapshot) -> str:
    assert s.services is not None
    rows = []
    for app in s.services:
        for d in app.deployments or []:
            replicas = ", ".join(f"{_e(k)} {_e(v)}" for k, v in sorted(d.replica_states.items()))
            rows.append(
                [
                    _e(app.name),
                    f'<span class="state {_e(app.status.lower())}">{_e(app.status)}</span>',
                    _e(d.name),
                    replicas or "none",
                    _e(d.host_tag) if d.host_tag else _UNKNOWN,
                    ", ".join(_e(ip) for ip in d.node_ips) or "none running",
                ]
            )
    headers = ("application", "status", "deployment", "replicas", "host", "nodes")
    return _table(headers, rows, "no Serve application")


def _agents(s: StatusSnapshot) -> str:
    assert s.agents is not None
    rows = [
        [
            _e(a.agent_id),
            _e(a.agent_type),
            f"{_e(a.host)}:{_e(a.port)}",
            f'<span class="health {_e(a.health.value)}">{_e(a.health.value)}</span>',
            _e(a.health_note),
            _ago(a.last_seen_at, s.taken_at),
        ]
        for a in s.agents
    ]
    headers = ("agent", "type", "address", "health", "note", "last sign of life")
    return _table(headers, rows, "no agent registered")


def _alerts(s: StatusSnapshot) -> str:
    assert s.alerts is not None
    rows = [
        [
            _e(a.rule),
            f'<span class="sev {_e(a.severity)}">{_e(a.severity)}</span>',
            _e(a.state),
            _e(", ".join(f"{k}={v}" for k, v in sorted(a.labels.items()))),
            _e(f"{a.value:g}"),
            _e(a.summary),
            _ago(a.active_at, s.taken_at),
        ]
        for a in s.alerts
        if a.state in ("pending", "firing")
    ]
    headers = ("alert", "severity", "state", "labels", "value", "summary", "since")
    return _table(headers, rows, "no active alert")


def _errors(s: StatusSnapshot) -> str:
    assert s.errors is not None
    rows = [
        [
            _e(item.seq),
            _e(item.event.time.strftime("%Y-%m-%d %H:%M:%SZ")),
            f'<span class="sev {_e(item.event.severity)}">{_e(item.event.severity)}</span>',
            _e(item.event.agent),
            _e(item.event.host) if item.event.host else _UNKNOWN,
            _e(item.event.error_type),
            f'<span class="msg">{_e(item.event.message[:300])}</span>',
        ]
        for item in s.errors
    ]
    headers = ("seq", "time", "severity", "agent", "host", "type", "message")
    return _table(headers, rows, "no error event stored")


def _queue(s: StatusSnapshot) -> str:
    parts = []
    q = s.queue
    if q is None:
        parts.append(f"<p>queue: {_unknown_why(s, ('queue',))}</p>")
    else:
        paused = f", paused until {_clock(q.paused_until)}" if q.paused_until else ""
        parts.append(
            f'<p class="meta">{_e(q.size)} queued of at most {_e(q.max_size)}, '
            f"{_e(q.in_flight)} in flight{paused}</p>"
        )
        rows = [
            [
                _e(x.request_id),
                _e(x.type),
                _e(x.priority),
                _e(x.session_id or ""),
                _ago(x.submitted_at, s.taken_at),
            ]
            for x in q.entries[:20]
        ]
        parts.append(
            _table(("request", "type", "priority", "session", "queued"), rows, "queue empty")
        )
    if s.breakers is None:
        parts.append(f"<p>breakers: {_unknown_why(s, ('breakers',))}</p>")
    else:
        rows = [
            [
                _e(b.downstream),
                f'<span class="breaker {_e(b.state.value)}">{_e(b.state.value)}</span>',
                _e(b.consecutive_failures),
                _clock(b.retry_at) if b.retry_at else "",
            ]
            for b in s.breakers
        ]
        headers = ("downstream", "breaker", "failures in a row", "retry at")
        parts.append(_table(headers, rows, "no downstream called yet"))
    return "".join(parts)


def _unknown_why(s: StatusSnapshot, sources: Iterable[str]) -> str:
    reasons = [f"{name}: {s.unknown[name]}" for name in sources if name in s.unknown]
    why = f' <span class="why">({_e("; ".join(reasons))})</span>' if reasons else ""
    return _UNKNOWN + why


_RENDER: Final[dict[str, Callable[[StatusSnapshot], str]]] = {
    "hosts": _hosts,
    "gpus": _gpus,
    "services": _services,
    "agents": _agents,
    "alerts": _alerts,
    "errors": _errors,
    "queue": _queue,
}
_DATA: Final[dict[str, Callable[[StatusSnapshot], object]]] = {
    "hosts": lambda s: s.hosts,
    "gpus": lambda s: s.gpus,
    "services": lambda s: s.services,
    "agents": lambda s: s.agents,
    "alerts": lambda s: s.alerts,
    "errors": lambda s: s.errors,
    "queue": lambda s: s.queue or s.breakers,
}


def render_panels(snapshot: StatusSnapshot) -> dict[str, str]:
    """Each panel's inner HTML, by panel name (:data:`PANELS`)."""
    panels = {}
    for name in PANELS:
        if _DATA[name](snapshot) is None:
            panels[name] = f"<p>{_unknown_why(snapshot, _PANEL_SOURCES[name])}</p>"
            continue
        html = _RENDER[name](snapshot)
        partial = [n for n in _PANEL_SOURCES[name] if n in snapshot.unknown]
        if partial:
            html = f'<p class="partial">partly {_unknown_why(snapshot, partial)}</p>' + html
        panels[name] = html
    return panels


def page_html(base: str, security: str) -> str:
    """The page: a login form, one section per panel (filled by the stream), no data inline.

    Args:
        base: the page's own path (``/observability/status``).
        security: the SecurityGateway's route prefix (``/security``).
    """
    sections = "".join(
        f'<section class="panel" id="panel-{name}"><h2>{_e(_TITLES[name])}</h2>'
        f'<div class="body" id="{name}" data-panel="{name}">'
        f'<p class="empty">not loaded yet</p></div></section>'
        for name in PANELS
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>aisys: the house</title><link rel="stylesheet" href="{_e(base)}/page.css">'
        f'<script src="{_e(base)}/page.js" defer></script></head>'
        f'<body data-base="{_e(base)}" data-security="{_e(security)}" data-state="login" '
        'data-streams="0"><header><h1>aisys: the house</h1>'
        '<span id="live" class="live">not connected</span>'
        '<button id="logout" type="button" hidden>log out</button></header>'
        '<form id="login" method="post" autocomplete="on"><h2>Log in</h2>'
        '<label>user <input id="username" name="username" autocomplete="username" required '
        'maxlength="128"></label><label>password <input id="password" name="password" '
        'type="password" autocomplete="current-password" required maxlength="1024"></label>'
        '<button id="submit" type="submit">log in</button><p id="login-error" class="bad" '
        'role="alert"></p></form>'
        f'<main id="panels" hidden>{sections}</main></body></html>'
    )
