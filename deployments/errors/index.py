"""The query index of ErrorBus: an SQLite copy of the ``ERRORS`` stream, fed by a durable consumer.

The stream is the source of truth; this index only makes ``GET /errors`` filters, paging and
per-agent counts cheap. Rows older than the stream's first sequence are pruned, so the index
follows the stream's retention. Several replicas on one host share the file (WAL mode).

Example::

    index = ErrorIndex(Path("data/errors/index.sqlite3"))
    index.add([StoredEvent(seq=1, event=event)])
    index.query(ErrorQuery(agent="MemoryClient", min_severity="error")).items
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from actors.errors.models import (
    SEVERITIES,
    AgentCounts,
    ErrorCounts,
    ErrorEvent,
    ErrorPage,
    ErrorQuery,
    Severity,
    StoredEvent,
    severity_rank,
)
from cluster.base.sqlite import open_database, transaction

__all__ = ["ErrorIndex"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    time REAL NOT NULL,
    rank INTEGER NOT NULL,
    agent TEXT NOT NULL,
    host TEXT NOT NULL,
    error_type TEXT NOT NULL,
    message TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
CREATE INDEX IF NOT EXISTS events_agent ON events (agent, seq);
-- Ids of events imported from the legacy error bus (`aisys import-legacy`). Unlike the rows
-- above they are never pruned: a second import after the stream's retention adds nothing.
CREATE TABLE IF NOT EXISTS imported (id TEXT PRIMARY KEY, at REAL NOT NULL);
"""
# What moving index.sqlite3 aside loses (named in DatabaseUnusable): the events stay in the
# stream, but the index's durable consumer has acknowledged them, so they are not indexed again.
WHAT = (
    "GET /errors filters and counts over the events indexed so far (the events themselves stay "
    "in the ERRORS stream, and events published from then on are indexed) and the record of "
    "legacy events already imported (a second aisys import-legacy would publish them again)"
)
# Ids per IN (...) query: far below SQLite's limit on bound parameters.
_ID_CHUNK = 500


class ErrorIndex:
    """Filterable, pageable copy of the error stream in one SQLite file.

    Every write runs in :func:`~cluster.base.sqlite.transaction` under the lock: a failed one
    (:class:`~cluster.base.errors.DatabaseWriteFailed` on a full disk) stores nothing and the next
    one works.

    Raises:
        DatabaseUnusable: (constructor) the file is not a database or is corrupt.
    """

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = open_database(path, _SCHEMA, what=WHAT, timeout_s=30)

    def add(self, items: Sequence[StoredEvent]) -> None:
        """Index events; an event id seen before (a duplicate beyond the window) is skipped."""
        rows = [
            (
                item.seq,
                item.event.id,
                item.event.time.timestamp(),
                severity_rank(item.event.severity),
                item.event.agent,
                item.event.host,
                item.event.error_type,
                item.event.message,
                item.event.model_dump_json(),
            )
            for item in items
        ]
        with self._lock, transaction(self._db):
            self._db.executemany(
                "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )

    def known_ids(self, ids: Sequence[str], *, imported: bool = True) -> set[str]:
        """The ids of ``ids`` that are indexed (or, with ``imported``, were ever imported)."""
        tables = ("events", "imported") if imported else ("events",)
        found: set[str] = set()
        with self._lock:
            for start in range(0, len(ids), _ID_CHUNK):
                chunk = list(ids[start : start + _ID_CHUNK])
                marks = ", ".join("?" * len(chunk))
                for table in tables:
                    rows = self._db.execute(f"SELECT id FROM {table} WHERE id IN ({marks})", chunk)
                    found.update(row[0] for row in rows)
        return found

    def remember_imported(self, ids: Sequence[str], at: float) -> None:
        """Record that the events ``ids`` were imported (stored or spooled) at ``at``."""
        with self._lock, transaction(self._db):
            self._db.executemany(
                "INSERT OR IGNORE INTO imported VALUES (?, ?)", [(i, at) for i in ids]
            )

    def query(self, query: ErrorQuery) -> ErrorPage:
        """Events matching ``query``, newest first, at most ``query.limit``."""
        where, params = _where(query)
        sql = f"SELECT seq, body FROM events {where} ORDER BY seq DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, [*params, query.limit + 1]).fetchall()
        items = [
            StoredEvent(seq=seq, event=ErrorEvent.model_validate_json(body))
            for seq, body in rows[: query.limit]
        ]
        more = len(rows) > query.limit
        return ErrorPage(items=items, next_before_seq=items[-1].seq if more else None)

    def counts(self, since: datetime | None) -> ErrorCounts:
        """Per-agent event counts by severity, since ``since`` (all time when None)."""
        sql = "SELECT agent, rank, COUNT(*) FROM events"
        params: list[Any] = []
        if since is not None:
            sql += " WHERE time >= ?"
            params.append(since.timestamp())
        with self._lock:
            rows = self._db.execute(sql + " GROUP BY agent, rank", params).fetchall()
        agents: dict[str, AgentCounts] = {}
        for agent, rank, count in rows:
            entry = agents.setdefault(agent, AgentCounts(total=0, by_severity={}))
            severity: Severity = SEVERITIES[rank]
            entry.by_severity[severity] = count
            entry.total += count
        return ErrorCounts(since=since, agents=agents)

    def prune_before(self, first_seq: int) -> int:
        """Drop rows the stream no longer holds; return how many."""
        with self._lock, transaction(self._db):
            cursor = self._db.execute("DELETE FROM events WHERE seq < ?", (first_seq,))
        return cursor.rowcount

    def clear_events(self) -> int:
        """Empty the events table, keeping the record of imports; return how many rows went.

        ``aisys restore`` re-publishes the stream, whose messages then number from 1 again: rows
        keyed on the old numbers would make new events look indexed already. The index's
        consumer lives in the stream and goes with it, so ErrorBus refills the table from the
        new stream's first message.
        """
        with self._lock, transaction(self._db):
            cursor = self._db.execute("DELETE FROM events")
        return cursor.rowcount

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _where(query: ErrorQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if query.since is not None:
        clauses.append("time >= ?")
        params.append(query.since.timestamp())
    if query.until is not None:
        clauses.append("time < ?")
        params.append(query.until.timestamp())
    if query.min_severity is not None:
        clauses.append("rank >= ?")
        params.append(severity_rank(query.min_severity))
    for column in ("agent", "host", "error_type"):
        value = getattr(query, column)
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if query.text:
        clauses.append("(instr(lower(message), ?) > 0 OR instr(lower(error_type), ?) > 0)")
        params += [query.text.lower(), query.text.lower()]
    if query.before_seq is not None:
        clauses.append("seq < ?")
        params.append(query.before_seq)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params
