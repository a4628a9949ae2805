"""SQLite persistence of the lease ledger: every grant, queueing, release and expiry.

The ``leases`` table holds what is live (granted leases and queued requests) and is what a
restarted scheduler reloads; ``lease_events`` is the append-only history, trimmed to the last
:data:`EVENTS_KEPT` rows.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import TypeAdapter

from actors.resources.models import EndedLease, LeaseGrant, QueuedLease
from cluster.base.sqlite import open_database, transaction

__all__ = ["EVENTS_KEPT", "SqliteLeaseStore"]

#: History rows kept in ``lease_events``; older ones are deleted as new ones arrive.
EVENTS_KEPT = 10_000
_TRIM_EVERY = 1_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    lease_id TEXT PRIMARY KEY,
    state    TEXT NOT NULL,
    record   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS lease_events (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    at       REAL NOT NULL,
    lease_id TEXT NOT NULL,
    event    TEXT NOT NULL,
    record   TEXT NOT NULL
);
"""

# What moving resources.sqlite3 aside loses (named in DatabaseUnusable).
WHAT = (
    "the VRAM leases granted and queued on this host (their holders must ask again; running "
    "work is not stopped, but its VRAM is no longer accounted) and the lease history"
)

_LIVE = TypeAdapter(LeaseGrant | QueuedLease)


class SqliteLeaseStore:
    """Write-through store; each method commits before it returns (WAL, ``synchronous=NORMAL``,
    so a killed process loses nothing that was acknowledged).

    Every write runs in :func:`~cluster.base.sqlite.transaction`: a failed one
    (:class:`~cluster.base.errors.DatabaseWriteFailed` on a full disk) stores nothing and the next
    one works.

    Raises:
        DatabaseUnusable: (constructor) the file is not a database or is corrupt.
    """

    def __init__(self, path: Path) -> None:
        self._db = open_database(path, _SCHEMA, what=WHAT)
        self._since_trim = 0

    def load(self) -> tuple[list[LeaseGrant], list[QueuedLease]]:
        """Return the granted leases and the queued requests."""
        granted: list[LeaseGrant] = []
        queued: list[QueuedLease] = []
        for (record,) in self._db.execute("SELECT record FROM leases"):
            item = _LIVE.validate_json(record)
            if isinstance(item, LeaseGrant):
                granted.append(item)
            else:
                queued.append(item)
        return granted, queued

    def granted(self, lease: LeaseGrant) -> None:
        """Record a grant (replacing its queued request, if it waited)."""
        self._put(lease.lease_id, "granted", lease.model_dump_json(), lease.granted_at)

    def queued(self, entry: QueuedLease) -> None:
        self._put(entry.lease_id, "queued", entry.model_dump_json(), entry.requested_at)

    def renewed(self, lease: LeaseGrant) -> None:
        """Store a heartbeat's new expiry; no history row (heartbeats are frequent)."""
        with transaction(self._db):
            self._db.execute(
                "UPDATE leases SET record = ? WHERE lease_id = ?",
                (lease.model_dump_json(), lease.lease_id),
            )

    def ended(self, ended: EndedLease) -> None:
        """Remove a lease or queued request and record why it ended."""
        with transaction(self._db):
            self._db.execute("DELETE FROM leases WHERE lease_id = ?", (ended.lease_id,))
            self._event(ended.lease_id, ended.state, ended.model_dump_json(), ended.ended_at)

    def history(self, lease_id: str) -> list[str]:
        """Event names recorded for ``lease_id``, oldest first."""
        rows = self._db.execute(
            "SELECT event FROM lease_events WHERE lease_id = ? ORDER BY seq", (lease_id,)
        )
        return [row[0] for row in rows]

    def close(self) -> None:
        self._db.close()

    def _put(self, lease_id: str, state: str, record: str, at: float) -> None:
        with transaction(self._db):
            self._db.execute(
                "INSERT INTO leases (lease_id, state, record) VALUES (?, ?, ?) "
                "ON CONFLICT(lease_id) DO UPDATE SET state = excluded.state, "
                "record = excluded.record",
                (lease_id, state, record),
            )
            self._event(lease_id, state, record, at)

    def _event(self, lease_id: str, event: str, record: str, at: float) -> None:
        self._db.execute(
            "INSERT INTO lease_events (at, lease_id, event, record) VALUES (?, ?, ?, ?)",
            (at, lease_id, event, record),
        )
        self._since_trim += 1
        if self._since_trim >= _TRIM_EVERY:
            self._since_trim = 0
            self._db.execute(
                "DELETE FROM lease_events WHERE seq <= (SELECT MAX(seq) FROM lease_events) - ?",
                (EVENTS_KEPT,),
            )
