"""RequestJournal: accepted, unfinished user requests, on disk until they finish.

``POST /core/requests`` answers 202 only after the request is written here; a finished request
is removed. A restarted coordinator re-queues what is left, in the original order, so an
acknowledged request is never lost (it may be dispatched again if the crash came after its
dispatch and before its result: at-least-once).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from pydantic import TypeAdapter

from cluster.base.sqlite import open_database, transaction
from deployments.core.models import UserRequest

__all__ = ["JournalEntry", "RequestJournal"]

_REQUEST: TypeAdapter[UserRequest] = TypeAdapter(UserRequest)
# What moving coordinator-journal.sqlite3 aside loses (named in DatabaseUnusable).
WHAT = "the accepted user requests that had not finished (their clients must submit them again)"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS pending (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "request_id TEXT UNIQUE NOT NULL, priority INTEGER NOT NULL, "
    "submitted_at REAL NOT NULL, request TEXT NOT NULL)"
)


class JournalEntry(NamedTuple):
    request_id: str
    priority: int
    submitted_at: float
    request: UserRequest


class RequestJournal:
    """SQLite (WAL) table of pending requests; every write commits before it returns.

    A failed write (:class:`~cluster.base.errors.DatabaseWriteFailed` on a full disk: the request is
    refused with 503) is rolled back and the next one works.

    Raises:
        DatabaseUnusable: (constructor) the file is not a database or is corrupt.
    """

    def __init__(self, path: Path) -> None:
        self._db = open_database(path, _SCHEMA, what=WHAT)

    def add(self, entry: JournalEntry) -> None:
        with transaction(self._db):
            self._db.execute(
                "INSERT INTO pending (request_id, priority, submitted_at, request) "
                "VALUES (?, ?, ?, ?)",
                (
                    entry.request_id,
                    entry.priority,
                    entry.submitted_at,
                    _REQUEST.dump_json(entry.request).decode(),
                ),
            )

    def remove(self, request_id: str) -> None:
        with transaction(self._db):
            self._db.execute("DELETE FROM pending WHERE request_id = ?", (request_id,))

    def pending(self) -> list[JournalEntry]:
        """Every unfinished request, in the order they were accepted."""
        rows = self._db.execute(
            "SELECT request_id, priority, submitted_at, request FROM pending ORDER BY seq"
        )
        return [JournalEntry(r[0], r[1], r[2], _REQUEST.validate_json(r[3])) for r in rows]

    def close(self) -> None:
        self._db.close()
