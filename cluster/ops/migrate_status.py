"""``aisys migrate status``: each legacy service's mode and who still calls its ports.

Reads ``GET /legacy/migrate`` from the Serve ingress with a token of ``read`` scope (``--token``
or ``AISYS_TOKEN``; ``aisys token login NAME`` prints one) and prints it as JSON or as tables:
the services not in ``replace`` mode, then per bound port and action the callers (the
``source_agent`` they send, else the name they register, and their address), how often they
called and when last.
"""

from __future__ import annotations

import os
from typing import TextIO

import httpx

from cluster.base.errors import ClusterError, ConfigError
from cluster.base.settings import Settings
from legacy_gateway.migration import MigrationMode, MigrationStatus

__all__ = ["fetch_status", "render_migration", "token_from"]

TOKEN_ENV = "AISYS_TOKEN"


def token_from(given: str | None) -> str:
    """The access token to call the route with.

    Raises:
        ConfigError: none given and ``AISYS_TOKEN`` unset.
    """
    token = given or os.environ.get(TOKEN_ENV)
    if not token:
        raise ConfigError(
            f"aisys migrate status needs an access token of read scope: pass --token or set "
            f"{TOKEN_ENV} (`aisys token login NAME` prints one)"
        )
    return token


def fetch_status(settings: Settings, token: str, timeout_s: float = 30.0) -> MigrationStatus:
    """``GET /legacy/migrate`` from the head's Serve ingress.

    Raises:
        ClusterError: the ingress did not answer, or answered with an error.
    """
    head = settings.hosts[settings.head_host]
    tls = settings.ray
    host = (head.node_ip or "127.0.0.1") if tls.tls_certfile is not None else "127.0.0.1"
    url = f"{tls.http_scheme}://{host}:{settings.ports.http}/legacy/migrate"
    try:
        response = httpx.get(
            url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s,
            verify=tls.http_verify,
        )
    except httpx.HTTPError as exc:
        raise ClusterError(f"GET {url} failed: {exc}; is the system up (`aisys status`)?") from exc
    if response.status_code != 200:
        raise ClusterError(f"GET {url}: HTTP {response.status_code}: {response.text[:300]}")
    return MigrationStatus.model_validate_json(response.content)


def _table(rows: list[tuple[str, ...]], out: TextIO, indent: str = "  ") -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        out.write(indent + line.rstrip() + "\n")


def render_migration(status: MigrationStatus, out: TextIO) -> None:
    """The status as readable tables."""
    moved = [s for s in status.services if s.mode is not MigrationMode.REPLACE]
    replaced = len(status.services) - len(moved)
    out.write(f"SERVICES  {replaced} answered by aisys (replace), {len(moved)} by legacy agents\n")
    if moved:
        rows: list[tuple[str, ...]] = [("SERVICE", "LEGACY AGENT", "MODE", "LEGACY ADDRESS")]
        rows += [(s.service, s.legacy_name, s.mode, s.legacy_address or "") for s in moved]
        _table(rows, out)
    for port in status.ports:
        total = sum(c.calls for c in port.calls)
        out.write(
            f"\n{port.host}:{port.port} {port.service} ({port.legacy_name}, {port.mode}"
            f"{' -> ' + port.legacy_address if port.legacy_address else ''}): {total} calls\n"
        )
        if port.mirror is not None:
            m = port.mirror
            out.write(
                f"  mirror: {m.recorded} recorded, {m.refused} refused by aisys, {m.skipped} "
                f"refused by the legacy agent, {m.failed} failed, {m.dropped} dropped, "
                f"{m.queued}/{m.queue_max} queued"
                f"{'; last problem: ' + m.last_problem if m.last_problem else ''}\n"
            )
        if port.calls:
            calls: list[tuple[str, ...]] = [("ACTION", "CALLER", "ADDRESS", "CALLS", "LAST SEEN")]
            calls += [
                (c.action, c.agent or "?", c.peer or "?", str(c.calls), c.last_seen)
                for c in port.calls
            ]
            _table(calls, out)
        if port.overflowed:
            out.write(
                f"  ({port.overflowed} calls under (other): more callers than "
                "legacy_gateway.usage_max_keys)\n"
            )
