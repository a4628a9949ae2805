"""Read the legacy PerformanceLoggerAgent's SQLite into performance-log rows.

The logger (``docs/legacy-protocol.md`` §4.8) kept ``metrics(metric_id, agent, action, duration,
timestamp, metadata)`` and ``resource_usage(usage_id, agent, cpu_percent, memory_mb, timestamp,
metadata)``; ``timestamp`` is whatever the client sent (an ISO string from ``datetime.now()``,
the PC's local time, or epoch seconds) and ``metadata`` is ``json.dumps`` of a dict, kept with
the row in both tables.

Example::

    read = read_perf(Path("performance_metrics.db"), local_zone=None, now=time.time())
"""

from __future__ import annotations

import json
from datetime import tzinfo
from pathlib import Path
from typing import Final

from pydantic import JsonValue

from cluster.ops.legacy_import._store import SourceRead, Table, read_sqlite, row_key, validated
from cluster.ops.legacy_import.timestamps import parse_time
from deployments.observability.perflog import ImportedMetric, ImportedUsage

__all__ = ["SOURCE", "read_perf"]

SOURCE: Final = "perf"
_METRICS: Final = "metrics"
_USAGE: Final = "resource_usage"
_METRIC_COLUMNS: Final = ("metric_id", "agent", "action", "duration", "timestamp", "metadata")
_USAGE_COLUMNS: Final = ("usage_id", "agent", "cpu_percent", "memory_mb", "timestamp", "metadata")

Row = ImportedMetric | ImportedUsage


def _metadata(raw: object) -> dict[str, JsonValue]:
    """The legacy metadata as a dict; text that is not a JSON object is kept, not dropped."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            return {"legacy_metadata": raw}
        return value if isinstance(value, dict) else {"legacy_metadata": value}
    return {"legacy_metadata": str(raw)}


def _metric(row: tuple[object, ...], zone: tzinfo | None, now: float) -> ImportedMetric:
    _, agent, action, duration, timestamp, metadata = row
    fields = {"agent": agent, "action": action, "duration_s": duration}
    fields.update(metadata=_metadata(metadata), at=parse_time(timestamp, zone, now=now))
    return validated(ImportedMetric, "metric", {"key": row_key(_METRICS, row), **fields})


def _usage(row: tuple[object, ...], zone: tzinfo | None, now: float) -> ImportedUsage:
    _, agent, cpu, memory, timestamp, metadata = row
    fields = {"agent": agent, "cpu_percent": cpu, "memory_mb": memory}
    fields.update(metadata=_metadata(metadata), at=parse_time(timestamp, zone, now=now))
    return validated(ImportedUsage, "usage sample", {"key": row_key(_USAGE, row), **fields})


def read_perf(path: Path, local_zone: tzinfo | None, now: float) -> SourceRead[Row]:
    """Read both tables of the logger's database at ``path``.

    Args:
        path: the legacy ``performance_metrics.db``.
        local_zone: zone of naive timestamps (None: this machine's zone).
        now: the time of the import; later timestamps are refused.

    Raises:
        LegacySourceUnreadable: the file is missing, not SQLite, or has neither table.
    """
    tables: list[Table[Row]] = [
        Table(_METRICS, _METRIC_COLUMNS, lambda row: _metric(row, local_zone, now)),
        Table(_USAGE, _USAGE_COLUMNS, lambda row: _usage(row, local_zone, now)),
    ]
    return read_sqlite(path, SOURCE, "PerformanceLoggerAgent", tables)
