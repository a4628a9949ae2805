"""SQLite persistence of the registry: every change is committed before it is acknowledged."""

from __future__ import annotations

from pathlib import Path

from actors.registry.models import AgentRecord
from cluster.base.sqlite import open_database, transaction

__all__ = ["SqliteRegistryStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS agents (
    agent_id TEXT PRIMARY KEY,
    record   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

# What moving registry.sqlite3 aside loses (named in DatabaseUnusable).
WHAT = (
    "every agent registration (agents come back as they register or heartbeat again; legacy "
    "agents as they re-register on the legacy ports)"
)


class SqliteRegistryStore:
    """Write-through store of agent records and the registry version.

    WAL mode with ``synchronous=NORMAL`` keeps every committed change through a crash of the
    process (an actor kill); only a power loss can take the last transactions. Used from the
    actor's event loop only. A failed write (:class:`~cluster.base.errors.DatabaseWriteFailed` on a
    full disk) is rolled back and the next one works.

    Raises:
        DatabaseUnusable: (constructor) the file is not a database or is corrupt.
    """

    def __init__(self, path: Path) -> None:
        self._db = open_database(path, _SCHEMA, what=WHAT)

    def load(self) -> tuple[list[AgentRecord], int]:
        """Return every stored record and the last committed version."""
        rows = self._db.execute("SELECT record FROM agents").fetchall()
        records = [AgentRecord.model_validate_json(row[0]) for row in rows]
        row = self._db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        return records, int(row[0]) if row else 0

    def put(self, record: AgentRecord, version: int) -> None:
        with transaction(self._db):
            self._db.execute(
                "INSERT INTO agents (agent_id, record) VALUES (?, ?) "
                "ON CONFLICT(agent_id) DO UPDATE SET record = excluded.record",
                (record.agent_id, record.model_dump_json()),
            )
            self._set_version(version)

    def delete(self, agent_id: str, version: int) -> None:
        with transaction(self._db):
            self._db.execute("DELETE FROM agents WHERE agent_id = ?", (agent_id,))
            self._set_version(version)

    def close(self) -> None:
        self._db.close()

    def _set_version(self, version: int) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES ('version', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (version,),
        )
