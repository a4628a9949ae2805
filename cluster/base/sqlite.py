"""Opening a service's SQLite file and writing to it so that a failure leaves it usable.

Every store opens its file with :func:`open_database` and makes each write (one statement or
several) inside :func:`transaction`: ``BEGIN IMMEDIATE`` … ``COMMIT``, ``ROLLBACK`` on any
exception. A failed write therefore never leaves the connection inside a transaction (where
every later ``BEGIN`` would fail with "cannot start a transaction within a transaction").

SQLite's own errors become :class:`~cluster.base.errors.StorageError`\\ s that name the file and the
fix: a file that is not a database or is corrupt is :class:`~cluster.base.errors.DatabaseUnusable`
(restore it or move it aside); a full disk, a file locked by another process or an I/O error
is :class:`~cluster.base.errors.DatabaseWriteFailed` (HTTP 503, the write was rolled back, retrying
later is safe).

A :class:`Database` is one ``sqlite3`` connection opened with ``check_same_thread=False``; a
store used from several threads serialises its calls with a lock (one transaction at a time on
the connection), as Python's ``sqlite3`` module requires.
"""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cluster.base.errors import DatabaseUnusable, DatabaseWriteFailed, StorageError

__all__ = ["Database", "open_database", "storage_error", "transaction"]

# Primary result codes (the low byte of sqlite_errorcode).
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_NOTADB = 26


class Database(sqlite3.Connection):
    """A connection that knows its file and what a service loses without it."""

    path: Path
    what: str


def open_database(
    path: Path, schema: str = "", *, what: str, timeout_s: float = 5.0, wal: bool = True
) -> Database:
    """Open (create) ``path`` in autocommit mode, WAL, and run ``schema`` (idempotent DDL).

    ``what`` says what the file holds, in words a user reads in the error when it is unusable
    ("the SecurityGateway's users, agents, refresh tokens, revocations and trust scores"):
    moving the file aside loses exactly that.

    Raises:
        DatabaseUnusable: the file is not a SQLite database, is corrupt or cannot be opened.
        DatabaseWriteFailed: the schema could not be written (disk full, file locked).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db: Database | None = None
    try:
        db = sqlite3.connect(
            path,
            timeout=timeout_s,
            isolation_level=None,
            check_same_thread=False,
            factory=Database,
        )
        db.path = path
        db.what = what
        if wal:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        # Reads the header and the schema: a file of garbage fails here, not at the first query.
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if schema:
            db.executescript(schema)
    except sqlite3.Error as exc:
        if db is not None:
            db.close()
        error = _classify(path, what, exc, opening=True)
        if error is None:
            raise
        raise error from exc
    return db


def storage_error(db: Database, exc: sqlite3.Error) -> StorageError | None:
    """The :class:`StorageError` that ``exc`` (raised by ``db``) means, if it is one."""
    return _classify(db.path, db.what, exc, opening=False)


@contextmanager
def transaction(db: Database) -> Iterator[Database]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``; on any exception ``ROLLBACK`` and re-raise.

    A SQLite error that is about the file (full disk, lock, corruption) is re-raised as a
    :class:`StorageError` naming the file and the fix; the connection is usable afterwards.
    Not re-entrant: a store holds its lock around the whole transaction.
    """
    if db.in_transaction:  # left open by code that bypassed transaction(): never commit it
        db.execute("ROLLBACK")
    try:
        db.execute("BEGIN IMMEDIATE")
        yield db
        db.execute("COMMIT")
    except BaseException as exc:
        if db.in_transaction:  # SQLite rolls back by itself after some errors (SQLITE_FULL)
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the original error says more; in_transaction is False after this
        if isinstance(exc, sqlite3.Error):
            error = storage_error(db, exc)
            if error is not None:
                raise error from exc
        raise


def _classify(path: Path, what: str, exc: sqlite3.Error, *, opening: bool) -> StorageError | None:
    code = getattr(exc, "sqlite_errorcode", -1) & 0xFF
    text = str(exc)
    host = socket.gethostname()
    if code in (_SQLITE_NOTADB, _SQLITE_CORRUPT) or (
        "not a database" in text or "malformed" in text
    ):
        return DatabaseUnusable(str(path), f"{text} (it holds {what})", _unusable_fix(path, what))
    if code == _SQLITE_FULL or "disk is full" in text:
        return DatabaseWriteFailed(
            str(path),
            f"the disk is full ({text}); nothing of this write was stored",
            f"free disk space on {host} (the file system of {path.parent}), then retry",
        )
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED) or "locked" in text:
        return DatabaseWriteFailed(
            str(path),
            f"another connection holds the file's write lock ({text}); nothing was stored",
            "retry; if it persists, stop any other process that has this file open on "
            f"{host} (only its own service should)",
        )
    if code == _SQLITE_READONLY or code == _SQLITE_CANTOPEN or (opening and code == _SQLITE_IOERR):
        return (DatabaseUnusable if opening else DatabaseWriteFailed)(
            str(path),
            text,
            f"make {path} and {path.parent} readable and writable by the user aisys runs as "
            f"on {host} (and check the disk: dmesg)",
        )
    if code == _SQLITE_IOERR:
        return DatabaseWriteFailed(
            str(path), f"{text}; nothing of this write was stored", f"check the disk of {host}"
        )
    return None


def _unusable_fix(path: Path, what: str) -> str:
    return (
        f"the service cannot start until the file is replaced: stop aisys (aisys down), then "
        f"either restore this host's state from an archive of aisys backup (aisys restore "
        f"<archive> --force, which replaces all of this host's state with the archive's), or "
        f"move the file aside (mv {path} {path}.corrupt, and its -wal and -shm files) so the "
        f"service starts with an empty one, losing {what}"
    )
