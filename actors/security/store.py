"""SQLite persistence of identities, refresh tokens, revocations and trust (write-through)."""

from __future__ import annotations

import contextlib
import functools
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from actors.security.trust import TrustState
from cluster.base.errors import DatabaseWriteFailed
from cluster.base.sqlite import open_database, transaction

__all__ = [
    "SecurityStore",
    "SpentRefresh",
    "StoredAgent",
    "StoredRefresh",
    "StoredUser",
    "TrustEvent",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, password_hash TEXT NOT NULL, roles TEXT NOT NULL, created_at REAL
);
CREATE TABLE IF NOT EXISTS agents (
    agent_id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL, scopes TEXT NOT NULL, created_at REAL
);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash TEXT PRIMARY KEY, subject TEXT NOT NULL, kind TEXT NOT NULL,
    scopes TEXT NOT NULL, expires_at REAL NOT NULL
);
-- Identities the legacy AuthenticationAgent `register` created: legacy ports only, no scope
-- until an admin gives them roles.
CREATE TABLE IF NOT EXISTS legacy_identities (
    name TEXT PRIMARY KEY, password_hash TEXT NOT NULL, roles TEXT NOT NULL, created_at REAL
);
-- The access tokens of each refresh-token family (one login and its refreshes), so reusing a
-- spent refresh token can revoke all of them.
CREATE TABLE IF NOT EXISTS family_access (
    family TEXT NOT NULL, jti TEXT NOT NULL, exp INTEGER NOT NULL, PRIMARY KEY (family, jti)
);
CREATE TABLE IF NOT EXISTS revoked (jti TEXT PRIMARY KEY, exp INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS trust (
    agent TEXT PRIMARY KEY, alpha REAL NOT NULL, beta REAL NOT NULL, at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS trust_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, agent TEXT NOT NULL, at REAL NOT NULL,
    kind TEXT NOT NULL, success INTEGER NOT NULL, latency_s REAL NOT NULL, score REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS trust_history_agent ON trust_history (agent, id);
CREATE INDEX IF NOT EXISTS trust_history_agent_at ON trust_history (agent, at);
-- Legacy evidence already folded in (`aisys import-legacy`), so a second import adds nothing.
CREATE TABLE IF NOT EXISTS trust_imports (
    key TEXT PRIMARY KEY, agent TEXT NOT NULL, at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

StoredUser = tuple[str, list[str], float]  # password hash, roles, created_at
StoredAgent = tuple[str, list[str], float]  # secret hash, scopes, created_at
StoredRefresh = tuple[str, str, list[str], float]  # subject, kind, scopes, expires_at
SpentRefresh = tuple[StoredRefresh, str, bool]  # the token, its family, whether used before
TrustEvent = tuple[float, str, bool, float, float]  # at, kind, success, latency_s, score
# What moving security.sqlite3 aside loses (named in DatabaseUnusable).
WHAT = (
    "every user and agent identity (the admin user is created again), legacy identity, "
    "refresh token, revocation and trust score of the SecurityGateway"
)
# Keys per IN (...) query: far below SQLite's limit on bound parameters.
_KEY_CHUNK = 500


class SecurityStore:
    """Every write commits before it returns (WAL, survives a process kill).

    One connection, used from the actor's event loop and from the threads that check
    passwords (``asyncio.to_thread``): each public method holds ``lock``, so their
    transactions never interleave. Every write runs in :func:`~cluster.base.sqlite.transaction`,
    so a failed one (disk full: :class:`~cluster.base.errors.DatabaseWriteFailed`) is rolled back
    and the next write works.

    Raises:
        DatabaseUnusable: (constructor) the file is not a database or is corrupt.
    """

    def __init__(self, path: Path) -> None:
        self.lock = threading.RLock()
        self._db = open_database(path, _SCHEMA, what=WHAT)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(refresh_tokens)")}
        if "family" not in columns:  # a store from before refresh-token families
            with transaction(self._db):
                self._db.execute("ALTER TABLE refresh_tokens ADD COLUMN family TEXT")
                self._db.execute(
                    "ALTER TABLE refresh_tokens ADD COLUMN used INTEGER NOT NULL DEFAULT 0"
                )

    # identities

    def user(self, name: str) -> StoredUser | None:
        row = self._db.execute(
            "SELECT password_hash, roles, created_at FROM users WHERE name = ?", (name,)
        ).fetchone()
        return (row[0], json.loads(row[1]), row[2]) if row else None

    def users(self) -> dict[str, StoredUser]:
        rows = self._db.execute("SELECT name, password_hash, roles, created_at FROM users")
        return {r[0]: (r[1], json.loads(r[2]), r[3]) for r in rows}

    def add_user(self, name: str, password_hash: str, roles: list[str], at: float) -> None:
        with transaction(self._db):
            self._db.execute(
                "INSERT INTO users VALUES (?, ?, ?, ?)",
                (name, password_hash, json.dumps(roles), at),
            )

    def agent(self, agent_id: str) -> StoredAgent | None:
        row = self._db.execute(
            "SELECT secret_hash, scopes, created_at FROM agents WHERE agent_id = ?", (agent_id,)
        ).fetchone()
        return (row[0], json.loads(row[1]), row[2]) if row else None

    def add_agent(self, agent_id: str, secret_hash: str, scopes: list[str], at: float) -> None:
        with transaction(self._db):
            self._db.execute(
                "INSERT INTO agents VALUES (?, ?, ?, ?)",
                (agent_id, secret_hash, json.dumps(scopes), at),
            )

    def delete_agent(self, agent_id: str) -> bool:
        """Remove an agent's identity, refresh tokens and trust in one transaction."""
        found = 0
        with transaction(self._db):
            for sql in (
                "DELETE FROM agents WHERE agent_id = ?",
                "DELETE FROM refresh_tokens WHERE subject = ? AND kind = 'agent'",
                "DELETE FROM trust WHERE agent = ?",
                "DELETE FROM trust_history WHERE agent = ?",
            ):
                found += self._db.execute(sql, (agent_id,)).rowcount
        return found > 0

    # legacy identities

    def legacy_identity(self, name: str) -> StoredUser | None:
        row = self._db.execute(
            "SELECT password_hash, roles, created_at FROM legacy_identities WHERE name = ?",
            (name,),
        ).fetchone()
        return (row[0], json.loads(row[1]), row[2]) if row else None

    def legacy_identities(self) -> dict[str, StoredUser]:
        rows = self._db.execute(
            "SELECT name, password_hash, roles, created_at FROM legacy_identities ORDER BY name"
        )
        return {r[0]: (r[1], json.loads(r[2]), r[3]) for r in rows}

    def add_legacy_identity(self, name: str, password_hash: str, at: float, limit: int) -> bool:
        """Insert an identity without roles unless ``limit`` exist already (atomic)."""
        with transaction(self._db):
            (count,) = self._db.execute("SELECT COUNT(*) FROM legacy_identities").fetchone()
            if count >= limit:
                return False
            self._db.execute(
                "INSERT INTO legacy_identities VALUES (?, ?, '[]', ?)", (name, password_hash, at)
            )
        return True

    def set_legacy_roles(self, name: str, roles: list[str]) -> bool:
        with transaction(self._db):
            cursor = self._db.execute(
                "UPDATE legacy_identities SET roles = ? WHERE name = ?", (json.dumps(roles), name)
            )
        return cursor.rowcount > 0

    def delete_legacy_identity(self, name: str) -> bool:
        with transaction(self._db):
            cursor = self._db.execute("DELETE FROM legacy_identities WHERE name = ?", (name,))
        return cursor.rowcount > 0

    # refresh tokens and revocations

    def add_refresh(
        self, token_hash: str, refresh: StoredRefresh, family: str, access: tuple[str, int]
    ) -> None:
        """Store a refresh token of ``family`` and record the access token issued with it."""
        subject, kind, scopes, expires_at = refresh
        jti, exp = access
        with transaction(self._db):
            self._db.execute(
                "INSERT INTO refresh_tokens (token_hash, subject, kind, scopes, expires_at, "
                "family, used) VALUES (?, ?, ?, ?, ?, ?, 0)",
                (token_hash, subject, kind, json.dumps(scopes), expires_at, family),
            )
            self._db.execute(
                "INSERT OR IGNORE INTO family_access VALUES (?, ?, ?)", (family, jti, exp)
            )

    def add_family_access(self, family: str, jti: str, exp: int) -> None:
        """Record an access token issued without a refresh token (a legacy login)."""
        with transaction(self._db):
            self._db.execute(
                "INSERT OR IGNORE INTO family_access VALUES (?, ?, ?)", (family, jti, exp)
            )

    def spend_refresh(self, token_hash: str) -> SpentRefresh | None:
        """Mark a refresh token used; return it, its family and whether it was used before.

        A spent token is kept (until it expires) so that a second presentation is recognised
        as reuse rather than as an unknown token.
        """
        with transaction(self._db):
            row = self._db.execute(
                "SELECT subject, kind, scopes, expires_at, family, used FROM refresh_tokens "
                "WHERE token_hash = ?",
                (token_hash,),
            ).fetchone()
            if row is not None:
                self._db.execute(
                    "UPDATE refresh_tokens SET used = 1 WHERE token_hash = ?", (token_hash,)
                )
        if row is None:
            return None
        stored = (row[0], row[1], json.loads(row[2]), row[3])
        return stored, row[4] or token_hash, bool(row[5])

    def delete_refresh(self, token_hash: str) -> bool:
        with transaction(self._db):
            cursor = self._db.execute(
                "DELETE FROM refresh_tokens WHERE token_hash = ?", (token_hash,)
            )
        return cursor.rowcount > 0

    def revoke_family(self, family: str, version: int) -> int:
        """Delete the family's refresh tokens and revoke its access tokens; how many of them."""
        with transaction(self._db):
            self._db.execute("DELETE FROM refresh_tokens WHERE family = ?", (family,))
            rows = self._db.execute(
                "DELETE FROM family_access WHERE family = ? RETURNING jti, exp", (family,)
            ).fetchall()
            self._db.executemany("INSERT OR IGNORE INTO revoked VALUES (?, ?)", rows)
            self._set_version(version)
        return len(rows)

    def prune_refresh(self, now: float) -> None:
        """Forget expired refresh tokens and the access tokens of families long expired."""
        with transaction(self._db):
            self._db.execute("DELETE FROM refresh_tokens WHERE expires_at < ?", (now,))
            self._db.execute("DELETE FROM family_access WHERE exp < ?", (now - 3600,))

    def revoke(self, jti: str, exp: int, version: int) -> None:
        with transaction(self._db):
            self._db.execute("INSERT OR IGNORE INTO revoked VALUES (?, ?)", (jti, exp))
            self._set_version(version)

    def revoked(self, now: float) -> dict[str, int]:
        """The revoked token ids and their expiry; forgets those expired over an hour ago.

        Forgetting is best effort: on a full disk the feed still carries every revocation.
        """
        with contextlib.suppress(DatabaseWriteFailed), transaction(self._db):
            self._db.execute("DELETE FROM revoked WHERE exp < ?", (now - 3600,))
        return dict(self._db.execute("SELECT jti, exp FROM revoked"))

    def version(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        return int(row[0]) if row else 0

    def set_version(self, version: int) -> None:
        with transaction(self._db):
            self._set_version(version)

    def _set_version(self, version: int) -> None:
        self._db.execute(
            "INSERT INTO meta VALUES ('version', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (version,),
        )

    # trust

    def trust(self, agent: str) -> TrustState | None:
        row = self._db.execute(
            "SELECT alpha, beta, at FROM trust WHERE agent = ?", (agent,)
        ).fetchone()
        return TrustState(alpha=row[0], beta=row[1], at=row[2]) if row else None

    def trust_count(self) -> int:
        """Agents (legacy ``model_id``s) with a trust row."""
        row = self._db.execute("SELECT COUNT(*) FROM trust").fetchone()
        return int(row[0])

    def trust_all(self) -> dict[str, TrustState]:
        rows = self._db.execute("SELECT agent, alpha, beta, at FROM trust")
        return {r[0]: TrustState(alpha=r[1], beta=r[2], at=r[3]) for r in rows}

    def put_trust(
        self, agent: str, state: TrustState, event: tuple[str, bool, float, float], limit: int
    ) -> None:
        kind, success, latency_s, score = event
        with transaction(self._db):
            self._db.execute(
                "INSERT INTO trust VALUES (?, ?, ?, ?) ON CONFLICT(agent) DO UPDATE SET "
                "alpha = excluded.alpha, beta = excluded.beta, at = excluded.at",
                (agent, state.alpha, state.beta, state.at),
            )
            self._db.execute(
                "INSERT INTO trust_history (agent, at, kind, success, latency_s, score) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (agent, state.at, kind, int(success), latency_s, score),
            )
            self._prune_history(agent, limit)

    def imported_keys(self, keys: list[str]) -> set[str]:
        """The keys of ``keys`` whose legacy evidence is already folded in."""
        found: set[str] = set()
        for start in range(0, len(keys), _KEY_CHUNK):
            chunk = keys[start : start + _KEY_CHUNK]
            marks = ", ".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT key FROM trust_imports WHERE key IN ({marks})", chunk)
            found.update(row[0] for row in rows)
        return found

    def put_imported(
        self,
        agent: str,
        state: TrustState,
        events: list[TrustEvent],
        keys: list[tuple[str, float]],
        limit: int,
    ) -> None:
        """Store ``agent``'s new state, its imported outcomes and their keys, atomically."""
        with transaction(self._db):
            self._db.execute(
                "INSERT INTO trust VALUES (?, ?, ?, ?) ON CONFLICT(agent) DO UPDATE SET "
                "alpha = excluded.alpha, beta = excluded.beta, at = excluded.at",
                (agent, state.alpha, state.beta, state.at),
            )
            self._db.executemany(
                "INSERT INTO trust_history (agent, at, kind, success, latency_s, score) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(agent, at, kind, int(ok), lat, score) for at, kind, ok, lat, score in events],
            )
            self._db.executemany(
                "INSERT INTO trust_imports VALUES (?, ?, ?)", [(k, agent, at) for k, at in keys]
            )
            self._prune_history(agent, limit)

    def _prune_history(self, agent: str, limit: int) -> None:
        # By time, not by id: imported legacy outcomes arrive after newer live ones.
        self._db.execute(
            "DELETE FROM trust_history WHERE agent = ? AND id NOT IN (SELECT id FROM "
            "trust_history WHERE agent = ? ORDER BY at DESC, id DESC LIMIT ?)",
            (agent, agent, limit),
        )

    def trust_history(self, agent: str, limit: int) -> list[dict[str, float | str | bool]]:
        rows = self._db.execute(
            "SELECT at, kind, success, latency_s, score FROM trust_history WHERE agent = ? "
            "ORDER BY at DESC, id DESC LIMIT ?",
            (agent, limit),
        )
        return [
            {"at": r[0], "kind": r[1], "success": bool(r[2]), "latency_s": r[3], "score": r[4]}
            for r in rows
        ]


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def run(self: SecurityStore, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return method(self, *args, **kwargs)

    return run


for _name, _method in list(vars(SecurityStore).items()):
    if callable(_method) and not _name.startswith("_"):
        setattr(SecurityStore, _name, _locked(_method))
