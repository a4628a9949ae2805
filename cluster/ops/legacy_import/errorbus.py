"""Read the legacy error bus's SQLite into ErrorBus events.

The bus (``docs/legacy-protocol.md`` §4.14) kept ``errors(id, timestamp, agent, error_type, message,
severity, context)`` — ``timestamp`` mostly ``time.time()``, ``context`` the JSON of the
report's ``details`` — and ``agent_health(id, agent, status, last_heartbeat, error_count)``, a
per-agent summary. Each ``errors`` row is normalised by the 7150 bridge's own reader
(:func:`deployments.errors.normalize.normalize_record`), so an imported error looks like a
bridged one; each ``agent_health`` row becomes one ``legacy_agent_health`` event at its last
heartbeat, keeping the count of errors the legacy bus had seen. Every event's id is derived
from its row (``legacy.<table>:<hash>``), so a second import can be recognised and skipped.

Example::

    read = read_errors(Path("data/error_system.db"), now=time.time())
    read.items[0].id          # "legacy.errors:3f9c..."
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from actors.errors.models import ErrorEvent
from cluster.ops.legacy_import._store import SourceRead, Table, read_sqlite, row_key, validated
from cluster.ops.legacy_import.timestamps import parse_time
from deployments.errors.normalize import normalize_record

__all__ = ["HEALTH_TYPE", "SOURCE", "read_errors"]

SOURCE: Final = "errors"
#: ``error_type`` of the events made from ``agent_health`` rows.
HEALTH_TYPE: Final = "legacy_agent_health"
_ERRORS: Final = "errors"
_HEALTH: Final = "agent_health"
_ERROR_COLUMNS: Final = ("id", "timestamp", "agent", "error_type", "message", "severity", "context")
_HEALTH_COLUMNS: Final = ("id", "agent", "status", "last_heartbeat", "error_count")


def _context(raw: object) -> object:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw  # kept as text under details["context"]
    return raw


def _event(table: str, row: tuple[object, ...], at: float, body: dict[str, Any]) -> ErrorEvent:
    received_at = datetime.fromtimestamp(at, UTC)
    origin = f"legacy error bus database, table {table}"
    try:
        event = normalize_record(body, origin=origin, received_at=received_at)
    except ValidationError as exc:
        problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors()[:2])
        raise ValueError(f"not a valid error event: {problems}") from None
    fields = {**event.model_dump(), "id": f"legacy.{row_key(table, row)}"}
    return validated(ErrorEvent, "error event", fields)


def _error(row: tuple[object, ...], now: float) -> ErrorEvent:
    row_id, timestamp, agent, error_type, message, severity, context = row
    # The bus stamped time.time(); a reporter's own ISO time without a zone is UTC, as the
    # bridge reads it.
    at = parse_time(timestamp, UTC, now=now)
    body = {
        "timestamp": at,
        "agent": agent,
        "error_type": error_type,
        "message": message,
        "severity": severity,
        "details": {"legacy_table": _ERRORS, "legacy_row_id": row_id},
        "context": _context(context),
    }
    return _event(_ERRORS, row, at, body)


def _health(row: tuple[object, ...], now: float) -> ErrorEvent:
    row_id, agent, status, last_heartbeat, error_count = row
    at = parse_time(last_heartbeat, UTC, now=now)
    body = {
        "timestamp": at,
        "agent": agent,
        "error_type": HEALTH_TYPE,
        "severity": "warning" if status == "error" else "info",
        "message": f"legacy error bus: status {status!r} after {error_count} recorded errors",
        "details": {
            "legacy_table": _HEALTH,
            "legacy_row_id": row_id,
            "status": status,
            "error_count": error_count,
        },
    }
    return _event(_HEALTH, row, at, body)


def read_errors(path: Path, now: float) -> SourceRead[ErrorEvent]:
    """Read both tables of the error bus's database at ``path``.

    Args:
        path: the legacy ``error_system.db``.
        now: the time of the import; later timestamps are refused.

    Raises:
        LegacySourceUnreadable: the file is missing, not SQLite, or has neither table.
    """
    tables = [
        Table(_ERRORS, _ERROR_COLUMNS, lambda row: _error(row, now)),
        Table(_HEALTH, _HEALTH_COLUMNS, lambda row: _health(row, now)),
    ]
    return read_sqlite(path, SOURCE, "error bus", tables)
