"""SQLite persistence of alerting: rules, silences, active alerts, group routing state and the
history of alert state transitions, so a hub restart neither re-runs ``for`` nor loses a
"resolved" notification.

Rules and silences are written through on every HTTP change; alerts, groups and history rows by
:meth:`AlertStore.sync`, once per evaluation that changed something, in one transaction.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Collection, Sequence
from pathlib import Path

from cluster.base.settings import AlertRuleSpec
from cluster.base.sqlite import open_database, transaction
from deployments.observability.alert_models import (
    AlertHistoryEntry,
    GroupRecord,
    Silence,
    StoredAlert,
)

__all__ = ["AlertStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rules (name TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS silences (
    id TEXT PRIMARY KEY, ends_at REAL NOT NULL, body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS silences_ends_at ON silences (ends_at);
CREATE TABLE IF NOT EXISTS alerts (fingerprint TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alert_groups (key TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alert_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_history_at ON alert_history (at);
"""


# What moving alerts.sqlite3 aside loses (named in DatabaseUnusable).
WHAT = (
    "the alert rules and silences added over HTTP, the active alerts (firing ones fire and "
    "notify again) and the alert history"
)


class AlertStore:
    """Rules by name, silences by id, alerts by fingerprint, groups by key, history by time.

    Every write runs in :func:`~cluster.base.sqlite.transaction` under the lock: a failed one
    (:class:`~cluster.base.errors.DatabaseWriteFailed` on a full disk) stores nothing and the next
    one works.

    Raises:
        DatabaseUnusable: (constructor) the file is not a database or is corrupt.
    """

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = open_database(path, _SCHEMA, what=WHAT)

    def rules(self) -> list[AlertRuleSpec]:
        with self._lock:
            rows = self._db.execute("SELECT body FROM rules ORDER BY name").fetchall()
        return [AlertRuleSpec.model_validate_json(body) for (body,) in rows]

    def save_rule(self, rule: AlertRuleSpec) -> None:
        with self._lock, transaction(self._db):
            self._db.execute(
                "INSERT OR REPLACE INTO rules (name, body) VALUES (?, ?)",
                (rule.name, rule.model_dump_json()),
            )

    def delete_rule(self, name: str) -> bool:
        with self._lock, transaction(self._db):
            return self._db.execute("DELETE FROM rules WHERE name = ?", (name,)).rowcount > 0

    def silences(self, now: float) -> list[Silence]:
        """Silences not yet over at ``now``; expired ones are deleted."""
        with self._lock:
            with transaction(self._db):
                self._db.execute("DELETE FROM silences WHERE ends_at <= ?", (now,))
            rows = self._db.execute("SELECT body FROM silences ORDER BY ends_at").fetchall()
        return [Silence.model_validate_json(body) for (body,) in rows]

    def save_silence(self, silence: Silence) -> None:
        with self._lock, transaction(self._db):
            self._db.execute(
                "INSERT OR REPLACE INTO silences (id, ends_at, body) VALUES (?, ?, ?)",
                (silence.id, silence.ends_at, silence.model_dump_json()),
            )

    def delete_silence(self, silence_id: str) -> bool:
        with self._lock, transaction(self._db):
            cursor = self._db.execute("DELETE FROM silences WHERE id = ?", (silence_id,))
            return cursor.rowcount > 0

    def alerts(self) -> list[StoredAlert]:
        with self._lock:
            rows = self._db.execute("SELECT body FROM alerts ORDER BY fingerprint").fetchall()
        return [StoredAlert.model_validate_json(body) for (body,) in rows]

    def groups(self) -> list[GroupRecord]:
        with self._lock:
            rows = self._db.execute("SELECT body FROM alert_groups ORDER BY key").fetchall()
        return [GroupRecord.model_validate_json(body) for (body,) in rows]

    def sync(
        self,
        alerts: Sequence[StoredAlert],
        gone: Collection[str],
        groups: Sequence[GroupRecord],
        gone_groups: Collection[tuple[str, ...]],
        history: Sequence[AlertHistoryEntry],
    ) -> None:
        """Write changed alerts and groups, delete gone ones, append history, in one go."""
        with self._lock, transaction(self._db):
            self._db.executemany(
                "INSERT OR REPLACE INTO alerts (fingerprint, body) VALUES (?, ?)",
                [(a.fingerprint, a.model_dump_json()) for a in alerts],
            )
            self._db.executemany("DELETE FROM alerts WHERE fingerprint = ?", [(fp,) for fp in gone])
            self._db.executemany(
                "INSERT OR REPLACE INTO alert_groups (key, body) VALUES (?, ?)",
                [(json.dumps(g.key), g.model_dump_json()) for g in groups],
            )
            self._db.executemany(
                "DELETE FROM alert_groups WHERE key = ?",
                [(json.dumps(list(key)),) for key in gone_groups],
            )
            self._db.executemany(
                "INSERT INTO alert_history (at, body) VALUES (?, ?)",
                [(entry.at, entry.model_dump_json()) for entry in history],
            )

    def history(self, since: float | None, limit: int) -> list[AlertHistoryEntry]:
        """State transitions at or after ``since``, newest first, at most ``limit``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM alert_history WHERE at >= ? ORDER BY at DESC, id DESC LIMIT ?",
                (float("-inf") if since is None else since, limit),
            ).fetchall()
        return [AlertHistoryEntry.model_validate_json(body) for (body,) in rows]

    def purge_history(self, before: float) -> int:
        """Delete history rows older than ``before``; return how many."""
        with self._lock, transaction(self._db):
            return self._db.execute("DELETE FROM alert_history WHERE at < ?", (before,)).rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()
