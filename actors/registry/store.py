"""SQLite persistence of the registry: every change is committed before it is acknowledged."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from actors.registry.models import AgentRecord

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


class SqliteRegistryStore:
    """Write-through store of agent records and the registry version.

    WAL mode with ``synchronous=NORMAL`` keeps every committed change through a crash of the
    process (an actor kill); only a power loss can take the last transactions.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def load(self) -> tuple[list[AgentRecord], int]:
        """Return every stored record and the last committed version."""
        rows = self._db.execute("SELECT record FROM agents").fetchall()
        records = [AgentRecord.model_validate_json(row[0]) for row in rows]
        row = self._db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        return records, int(row[0]) if row else 0

    def put(self, record: AgentRecord, version: int) -> None:
        with self._transaction():
            self._db.execute(
                "INSERT INTO agents (agent_id, record) VALUES (?, ?) "
                "ON CONFLICT(agent_id) DO UPDATE SET record = excluded.record",
                (record.agent_id, record.model_dump_json()),
            )
            self._set_version(version)

    def delete(self, agent_id: str, version: int) -> None:
        with self._transaction():
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

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._db.execute("ROLLBACK" if exc_type is not None else "COMMIT")
