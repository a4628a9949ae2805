"""Performance log (legacy PerformanceLoggerAgent): action durations and resource usage.

Two SQLite tables with an index on ``(agent, at)`` and one on ``at`` each; rows older than the
retention (30 days for metrics, 7 for usage, configurable) are deleted by :meth:`PerfLog.purge`,
which the hub calls every sampling round.

Example::

    log = PerfLog(Path("perf.sqlite3"), settings.perflog)
    log.log_metric(MetricEntry(agent="tts", action="speak", duration_s=0.21), now=clock())
    log.metrics(PerfQuery(agent="tts", since=clock() - 3600))
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from cluster.base.settings import PerfLogSettings
from cluster.base.sqlite import open_database, transaction
from cluster.base.tally import ImportTally
from deployments.observability.state import PerfAggregate

__all__ = [
    "ImportedMetric",
    "ImportedUsage",
    "MetricEntry",
    "MetricRecord",
    "PerfImport",
    "PerfLog",
    "PerfQuery",
    "UsageEntry",
    "UsageRecord",
]

_DAY_S = 86_400.0

# duration_s is NULL for a metric that is not a duration (PerformanceMonitor's error, request,
# queue_size and throughput figures, kept in metadata).
_METRICS_TABLE = """
CREATE TABLE IF NOT EXISTS metrics (
    id INTEGER PRIMARY KEY, agent TEXT NOT NULL, action TEXT NOT NULL,
    duration_s REAL, metadata TEXT NOT NULL, at REAL NOT NULL, legacy_key TEXT
)"""
_METRICS_INDEXES = """
CREATE INDEX IF NOT EXISTS metrics_agent_at ON metrics (agent, at);
CREATE INDEX IF NOT EXISTS metrics_at ON metrics (at);
"""
_SCHEMA = (
    f"{_METRICS_TABLE};\n{_METRICS_INDEXES}"
    + """
CREATE TABLE IF NOT EXISTS usage (
    id INTEGER PRIMARY KEY, agent TEXT NOT NULL, cpu_percent REAL NOT NULL,
    memory_mb REAL NOT NULL, at REAL NOT NULL, legacy_key TEXT,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS usage_agent_at ON usage (agent, at);
CREATE INDEX IF NOT EXISTS usage_at ON usage (at);
"""
)
#: Columns added after the first release: a log created before them gets them on open.
_ADDED_COLUMNS: Final = (
    ("metrics", "legacy_key", "TEXT"),
    ("usage", "legacy_key", "TEXT"),
    ("usage", "metadata", "TEXT NOT NULL DEFAULT '{}'"),
)
# Rows imported by `aisys import-legacy` carry the key of their legacy row; the unique index
# makes a second import of the same row a no-op. Live rows have none.
_LEGACY_KEY_INDEXES = """
CREATE UNIQUE INDEX IF NOT EXISTS metrics_legacy_key ON metrics (legacy_key)
    WHERE legacy_key IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS usage_legacy_key ON usage (legacy_key)
    WHERE legacy_key IS NOT NULL;
"""
_IMPORT_SQL: Final = {
    "metrics": "INSERT OR IGNORE INTO metrics "
    "(agent, action, duration_s, metadata, at, legacy_key) VALUES (?, ?, ?, ?, ?, ?)",
    "usage": "INSERT OR IGNORE INTO usage "
    "(agent, cpu_percent, memory_mb, metadata, at, legacy_key) VALUES (?, ?, ?, ?, ?, ?)",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_Name = Field(min_length=1, max_length=128)


class MetricEntry(_Model):
    """``log_metric``: one action of an agent and how long it took."""

    agent: str = _Name
    action: str = _Name
    duration_s: float | None = Field(
        ge=0, description="None: the metric is not a duration (its figure is in metadata)."
    )
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    at: float | None = Field(default=None, description="Epoch seconds; None means now.")


class UsageEntry(_Model):
    """``log_resource_usage``: an agent's CPU and memory at one moment."""

    agent: str = _Name
    cpu_percent: float = Field(ge=0)
    memory_mb: float = Field(ge=0)
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    at: float | None = Field(default=None, description="Epoch seconds; None means now.")


class MetricRecord(MetricEntry):
    id: int
    at: float


class UsageRecord(UsageEntry):
    id: int
    at: float


class ImportedMetric(MetricEntry):
    """A legacy PerformanceLoggerAgent ``metrics`` row (``aisys import-legacy``)."""

    duration_s: float = Field(ge=0)  # every legacy row is a duration
    key: str = Field(min_length=1, max_length=128, description="Unique per legacy row.")
    at: float


class ImportedUsage(UsageEntry):
    """A legacy PerformanceLoggerAgent ``resource_usage`` row (``aisys import-legacy``)."""

    key: str = Field(min_length=1, max_length=128)
    at: float


class PerfImport(_Model):
    """One batch of legacy rows for :meth:`PerfLog.import_rows`."""

    metrics: list[ImportedMetric] = Field(default_factory=list)
    usage: list[ImportedUsage] = Field(default_factory=list)


class PerfQuery(_Model):
    """Rows of one agent (or all) in ``[since, until)``, newest first."""

    agent: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = Field(default=1000, ge=1)


# What moving perf.sqlite3 aside loses (named in DatabaseUnusable).
WHAT = "the performance log: every metric and usage row logged or imported so far"


class PerfLog:
    """The SQLite performance log; safe to call from several threads (one lock).

    Every write runs in :func:`~cluster.base.sqlite.transaction`: a failed one
    (:class:`~cluster.base.errors.DatabaseWriteFailed` on a full disk) stores nothing and the next
    one works.

    Raises:
        DatabaseUnusable: (constructor) the file is not a database or is corrupt.
    """

    def __init__(self, path: Path, settings: PerfLogSettings) -> None:
        self._s = settings
        self._lock = threading.Lock()
        self._db = open_database(path, _SCHEMA, what=WHAT)
        self._add_columns()

    def _add_columns(self) -> None:
        # Logs created before legacy imports (legacy_key) or usage metadata existed lack those
        # columns; replicas sharing the file may open it at once, so check and add in one write
        # transaction.
        with transaction(self._db):
            for table, column, kind in _ADDED_COLUMNS:
                columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
                if column not in columns:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            self._allow_null_durations()
        self._db.executescript(_LEGACY_KEY_INDEXES)

    def _allow_null_durations(self) -> None:
        # Logs created when every metric was a duration have duration_s NOT NULL, which SQLite
        # cannot drop in place: the table is rebuilt once, its rows and ids kept.
        not_null = {row[1]: row[3] for row in self._db.execute("PRAGMA table_info(metrics)")}
        if not not_null.get("duration_s"):
            return
        self._db.execute("ALTER TABLE metrics RENAME TO metrics_before_null_durations")
        self._db.execute(_METRICS_TABLE)
        columns = "id, agent, action, duration_s, metadata, at, legacy_key"
        self._db.execute(
            f"INSERT INTO metrics ({columns}) SELECT {columns} FROM metrics_before_null_durations"
        )
        self._db.execute("DROP TABLE metrics_before_null_durations")
        for statement in filter(str.strip, _METRICS_INDEXES.split(";")):
            self._db.execute(statement)

    def import_rows(self, batch: PerfImport, now: float) -> ImportTally:
        """Add legacy rows at their own times, once each, in one transaction.

        Rows already past the retention are skipped: :meth:`purge` would delete them at the
        next round, and a second import would then add them again.
        """
        tally = ImportTally()
        metrics = [
            (m.key, m.at, (m.agent, m.action, m.duration_s, json.dumps(m.metadata), m.at, m.key))
            for m in batch.metrics
        ]
        usage = [
            (
                u.key,
                u.at,
                (u.agent, u.cpu_percent, u.memory_mb, json.dumps(u.metadata), u.at, u.key),
            )
            for u in batch.usage
        ]
        with self._lock, transaction(self._db):
            self._insert_new(tally, "metrics", metrics, self._s.metrics_retention_days, now)
            self._insert_new(tally, "usage", usage, self._s.usage_retention_days, now)
        return tally

    def _insert_new(
        self,
        tally: ImportTally,
        table: Literal["metrics", "usage"],
        rows: Sequence[tuple[str, float, tuple[object, ...]]],
        retention_days: float,
        now: float,
    ) -> None:
        cutoff = now - retention_days * _DAY_S
        for key, at, values in rows:
            if at < cutoff:
                tally.skip(f"older than the {table} retention of {retention_days:g} days", key)
                continue
            cursor = self._db.execute(_IMPORT_SQL[table], values)
            if cursor.rowcount:
                tally.add(table)
            else:
                tally.skip("already imported", key)

    def log_metric(self, entry: MetricEntry, now: float) -> MetricRecord:
        at = now if entry.at is None else entry.at
        with self._lock, transaction(self._db):
            cursor = self._db.execute(
                "INSERT INTO metrics (agent, action, duration_s, metadata, at) "
                "VALUES (?, ?, ?, ?, ?)",
                (entry.agent, entry.action, entry.duration_s, json.dumps(entry.metadata), at),
            )
        assert cursor.lastrowid is not None
        return MetricRecord(**{**entry.model_dump(), "id": cursor.lastrowid, "at": at})

    def log_usage(self, entry: UsageEntry, now: float) -> UsageRecord:
        at = now if entry.at is None else entry.at
        with self._lock, transaction(self._db):
            cursor = self._db.execute(
                "INSERT INTO usage (agent, cpu_percent, memory_mb, metadata, at) "
                "VALUES (?, ?, ?, ?, ?)",
                (entry.agent, entry.cpu_percent, entry.memory_mb, json.dumps(entry.metadata), at),
            )
        assert cursor.lastrowid is not None
        return UsageRecord(**{**entry.model_dump(), "id": cursor.lastrowid, "at": at})

    def metrics(self, query: PerfQuery) -> list[MetricRecord]:
        where, params = self._where(query)
        with self._lock:
            rows = self._db.execute(
                "SELECT id, agent, action, duration_s, metadata, at FROM metrics"
                f"{where} ORDER BY at DESC, id DESC LIMIT ?",
                (*params, self._limit(query)),
            ).fetchall()
        return [
            MetricRecord(id=i, agent=a, action=act, duration_s=d, metadata=json.loads(m), at=at)
            for i, a, act, d, m, at in rows
        ]

    def usage(self, query: PerfQuery) -> list[UsageRecord]:
        where, params = self._where(query)
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, agent, cpu_percent, memory_mb, metadata, at FROM usage{where} "
                "ORDER BY at DESC, id DESC LIMIT ?",
                (*params, self._limit(query)),
            ).fetchall()
        return [
            UsageRecord(id=i, agent=a, cpu_percent=c, memory_mb=m, metadata=json.loads(d), at=at)
            for i, a, c, m, d, at in rows
        ]

    def aggregates(self, since: float) -> list[PerfAggregate]:
        """Count, mean and max duration per agent and action since ``since`` (durations only)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT agent, action, COUNT(*), AVG(duration_s), MAX(duration_s) FROM metrics "
                "WHERE at >= ? AND duration_s IS NOT NULL "
                "GROUP BY agent, action ORDER BY agent, action",
                (since,),
            ).fetchall()
        return [
            PerfAggregate(agent=a, action=act, count=n, mean_duration_s=mean, max_duration_s=top)
            for a, act, n, mean, top in rows
        ]

    def purge(self, now: float) -> tuple[int, int]:
        """Delete rows past retention; return how many metrics and usage rows went."""
        metrics_cutoff = now - self._s.metrics_retention_days * _DAY_S
        usage_cutoff = now - self._s.usage_retention_days * _DAY_S
        with self._lock, transaction(self._db):
            metrics = self._db.execute("DELETE FROM metrics WHERE at < ?", (metrics_cutoff,))
            usage = self._db.execute("DELETE FROM usage WHERE at < ?", (usage_cutoff,))
        return metrics.rowcount, usage.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _limit(self, query: PerfQuery) -> int:
        return min(query.limit, self._s.max_query_rows)

    @staticmethod
    def _where(query: PerfQuery) -> tuple[str, tuple[object, ...]]:
        clauses: list[str] = []
        params: list[object] = []
        if query.agent is not None:
            clauses.append("agent = ?")
            params.append(query.agent)
        if query.since is not None:
            clauses.append("at >= ?")
            params.append(query.since)
        if query.until is not None:
            clauses.append("at < ?")
            params.append(query.until)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)
