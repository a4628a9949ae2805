"""A bounded on-disk spool of error events waiting for NATS to come back.

One SQLite file (WAL mode) per host: every publisher on the host (ErrorBus replicas, the legacy
bridge) appends to it while NATS is unreachable, and whichever is connected first drains it.
Two publishers draining the same rows is harmless: the stream stores an event id once.

Example::

    spool = Spool(Path("data/errors/spool.sqlite3"), max_bytes=256 * 2**20)
    spool.put([("errors.error.Auth", event_id, payload)])   # raises SpoolFull when it is full
    for subject, event_id, payload in spool.peek(100): ...
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from cluster.base.errors import SpoolFull
from cluster.base.sqlite import open_database, transaction

__all__ = ["Spool", "SpooledEvent"]

#: (subject, event id, JSON payload)
SpooledEvent = tuple[str, str, bytes]

# What moving spool.sqlite3 aside loses (named in DatabaseUnusable).
WHAT = "the error events spooled on this host while NATS was unreachable and not yet published"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    pos INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    subject TEXT NOT NULL,
    payload BLOB NOT NULL
)
"""


class Spool:
    """Events kept on disk in arrival order, at most ``max_bytes`` of payload.

    Args:
        path: the SQLite file; its directory is created.
        max_bytes: total payload bytes the spool holds before :meth:`put` raises SpoolFull.

    Raises:
        DatabaseUnusable: (constructor) the file is not a database or is corrupt.
    """

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db = open_database(path, _SCHEMA, what=WHAT, timeout_s=30)
        # NORMAL with WAL survives a process crash; FULL also survives power loss.
        self._db.execute("PRAGMA synchronous=FULL")

    def size_bytes(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM spool").fetchone()
        return int(row[0])

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM spool").fetchone()[0])

    def put(self, events: Sequence[SpooledEvent], stored: Sequence[str] = ()) -> None:
        """Append all of ``events`` or none of them.

        Args:
            events: what to keep.
            stored: ids of the same request that did reach the stream, named in SpoolFull.

        Raises:
            SpoolFull: they do not fit within ``max_bytes``.
            DatabaseWriteFailed: the disk is full (or the file locked); nothing was stored.
        """
        needed = sum(len(payload) for _, _, payload in events)
        with self._lock, transaction(self._db):
            (used,) = self._db.execute(
                "SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM spool"
            ).fetchone()
            if used + needed > self.max_bytes:
                raise SpoolFull(needed, max(self.max_bytes - used, 0), list(stored))
            self._db.executemany(
                "INSERT OR IGNORE INTO spool (id, subject, payload) VALUES (?, ?, ?)",
                [(event_id, subject, payload) for subject, event_id, payload in events],
            )

    def peek(self, limit: int) -> list[SpooledEvent]:
        """The oldest ``limit`` events, without removing them."""
        with self._lock:
            rows = self._db.execute(
                "SELECT subject, id, payload FROM spool ORDER BY pos LIMIT ?", (limit,)
            ).fetchall()
        return [(str(s), str(i), bytes(p)) for s, i, p in rows]

    def remove(self, event_ids: Iterable[str]) -> None:
        """Forget events the stream has acknowledged."""
        with self._lock, transaction(self._db):
            self._db.executemany("DELETE FROM spool WHERE id = ?", [(i,) for i in event_ids])

    def close(self) -> None:
        with self._lock:
            self._db.close()
