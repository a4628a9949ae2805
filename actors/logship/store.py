"""Committed log positions on disk (SQLite), so a restarted shipper neither loses nor repeats.

One row per followed file and source, keyed by ``(source, device, inode)``. The shipper writes
a batch's positions only after the stream acknowledged the batch; a crash in between leaves the
older positions, the lines are published again with the same ``Nats-Msg-Id`` and JetStream
stores them once. WAL with ``synchronous=NORMAL`` keeps each commit through a process crash.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from actors.logship.tail import FileKey, Position
from cluster.base.sqlite import open_database, transaction

__all__ = ["PositionStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS positions (
    source      TEXT NOT NULL,
    dev         INTEGER NOT NULL,
    ino         INTEGER NOT NULL,
    path        TEXT NOT NULL,
    offset      INTEGER NOT NULL,
    skipping    INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    fp_len      INTEGER NOT NULL,
    PRIMARY KEY (source, dev, ino)
);
"""


# What moving the positions file aside loses (named in DatabaseUnusable).
WHAT = (
    "how far each log file of this host was shipped (the shipper starts again from the start "
    "of every file it follows: lines still in the stream's duplicate window are stored once, "
    "older ones again)"
)


class PositionStore:
    """Write-through store of every source's :class:`Position` s.

    Raises:
        DatabaseUnusable: (constructor) the file is not a database or is corrupt.
    """

    def __init__(self, path: Path) -> None:
        self._db = open_database(path, _SCHEMA, what=WHAT)

    def load(self, source: str) -> list[Position]:
        rows = self._db.execute(
            "SELECT path, dev, ino, offset, skipping, fingerprint, fp_len FROM positions "
            "WHERE source = ?",
            (source,),
        ).fetchall()
        return [
            Position(path, FileKey(dev, ino), offset, bool(skipping), fingerprint, fp_len)
            for path, dev, ino, offset, skipping, fingerprint, fp_len in rows
        ]

    def save(self, source: str, positions: Iterable[Position], gone: Iterable[FileKey]) -> None:
        """Store ``positions`` and forget ``gone`` files in one transaction.

        Raises:
            DatabaseWriteFailed: the disk is full (nothing stored; the next save works).
        """
        with transaction(self._db):
            self._db.executemany(
                "INSERT INTO positions VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(source, dev, ino) DO UPDATE SET path = excluded.path, "
                "offset = excluded.offset, skipping = excluded.skipping, "
                "fingerprint = excluded.fingerprint, fp_len = excluded.fp_len",
                [
                    (source, p.key.dev, p.key.ino, p.path, p.offset, int(p.skipping))
                    + (p.fingerprint, p.fp_len)
                    for p in positions
                ],
            )
            self._db.executemany(
                "DELETE FROM positions WHERE source = ? AND dev = ? AND ino = ?",
                [(source, key.dev, key.ino) for key in gone],
            )

    def close(self) -> None:
        self._db.close()
