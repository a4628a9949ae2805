"""SQLite persistence of alert rules and silences, so HTTP changes survive a restart."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from cluster.settings import AlertRuleSpec
from deployments.observability.alert_models import Silence

__all__ = ["AlertStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rules (name TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS silences (
    id TEXT PRIMARY KEY, ends_at REAL NOT NULL, body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS silences_ends_at ON silences (ends_at);
"""


class AlertStore:
    """Rules by name and silences by id, written through on every change."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def rules(self) -> list[AlertRuleSpec]:
        with self._lock:
            rows = self._db.execute("SELECT body FROM rules ORDER BY name").fetchall()
        return [AlertRuleSpec.model_validate_json(body) for (body,) in rows]

    def save_rule(self, rule: AlertRuleSpec) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO rules (name, body) VALUES (?, ?)",
                (rule.name, rule.model_dump_json()),
            )

    def delete_rule(self, name: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM rules WHERE name = ?", (name,)).rowcount > 0

    def silences(self, now: float) -> list[Silence]:
        """Silences not yet over at ``now``; expired ones are deleted."""
        with self._lock:
            self._db.execute("DELETE FROM silences WHERE ends_at <= ?", (now,))
            rows = self._db.execute("SELECT body FROM silences ORDER BY ends_at").fetchall()
        return [Silence.model_validate_json(body) for (body,) in rows]

    def save_silence(self, silence: Silence) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO silences (id, ends_at, body) VALUES (?, ?, ?)",
                (silence.id, silence.ends_at, silence.model_dump_json()),
            )

    def delete_silence(self, silence_id: str) -> bool:
        with self._lock:
            cursor = self._db.execute("DELETE FROM silences WHERE id = ?", (silence_id,))
            return cursor.rowcount > 0

    def close(self) -> None:
        with self._lock:
            self._db.close()
