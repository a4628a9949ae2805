"""What every legacy reader shares: opening a legacy SQLite file read-only, and row keys.

A reader never writes to a legacy store (``mode=ro``), reads each table it knows by its legacy
columns, and gives every row a key derived from the table, the row's legacy id and its content:
the same row read from a copy of the file, days later, has the same key, so the targets can
tell it is already imported.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from pydantic import BaseModel, ValidationError

from cluster.base.errors import LegacySourceUnreadable
from cluster.base.tally import ImportTally

__all__ = ["SourceRead", "Table", "open_sqlite", "read_sqlite", "row_key", "validated"]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


@dataclass
class SourceRead(Generic[T]):
    """What a reader got from one store: the rows to import, and what it could not read."""

    location: str
    items: list[T] = field(default_factory=list)
    #: Rows read per table (or keys, for Redis), importable or not.
    read: dict[str, int] = field(default_factory=dict)
    #: Rows skipped while reading, by reason.
    tally: ImportTally = field(default_factory=ImportTally)
    #: Tables that could not be read at all; any of these makes the import exit non-zero.
    problems: list[str] = field(default_factory=list)
    #: What was changed on the way in, with counts (imported rows that lost a field).
    notes: dict[str, int] = field(default_factory=dict)

    def note(self, text: str) -> None:
        self.notes[text] = self.notes.get(text, 0) + 1


def open_sqlite(path: Path, source: str) -> sqlite3.Connection:
    """Open a legacy SQLite file read-only.

    Raises:
        LegacySourceUnreadable: the path is missing, not a file, unreadable or not SQLite.
    """
    if not path.exists():
        raise LegacySourceUnreadable(source, str(path), "the file does not exist")
    if not path.is_file():
        raise LegacySourceUnreadable(source, str(path), "not a regular file")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise LegacySourceUnreadable(source, str(path), f"cannot open: {exc}") from exc
    try:
        db.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.DatabaseError as exc:
        db.close()
        raise LegacySourceUnreadable(source, str(path), f"not an SQLite database: {exc}") from exc
    return db


def _present_tables(
    db: sqlite3.Connection, wanted: Sequence[str], source: str, location: str, what: str
) -> list[str]:
    """Return which of ``wanted`` the file has.

    Raises:
        LegacySourceUnreadable: it has none of them, so it is not a store of ``what``.
    """
    names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    present = [table for table in wanted if table in names]
    if not present:
        raise LegacySourceUnreadable(
            source, location, f"no table {' or '.join(wanted)}: not a legacy {what} database"
        )
    return present


@dataclass(frozen=True)
class Table(Generic[T]):
    """How to read one legacy table: its columns (id first) and how a row becomes an item."""

    name: str
    columns: tuple[str, ...]
    #: Turns a row into an item, or raises ValueError whose message is the skip reason.
    make: Callable[[tuple[object, ...]], T]
    #: A note to count for a row that was imported with a change (None: no change).
    note: Callable[[tuple[object, ...]], str | None] = lambda _row: None


def read_sqlite(path: Path, source: str, what: str, tables: Sequence[Table[T]]) -> SourceRead[T]:
    """Read ``tables`` of the legacy database at ``path``, in order, oldest row first.

    A missing table, or one that fails to read, is a problem of the source (and nothing of it
    is imported: a re-run after the fix imports it whole); a row that cannot be read is skipped
    with its reason.

    Raises:
        LegacySourceUnreadable: the file is missing, not SQLite, or has none of the tables.
    """
    result: SourceRead[T] = SourceRead(location=str(path))
    db = open_sqlite(path, source)
    try:
        names = [table.name for table in tables]
        present = _present_tables(db, names, source, str(path), what)
        for table in tables:
            if table.name not in present:
                result.problems.append(f"table {table.name} is missing")
                continue
            try:
                result.items.extend(_read_table(db, table, result))
            except sqlite3.Error as exc:
                result.problems.append(f"table {table.name} cannot be read: {exc}")
    finally:
        db.close()
    return result


def _read_table(db: sqlite3.Connection, table: Table[T], result: SourceRead[T]) -> list[T]:
    cursor = db.execute(
        f"SELECT {', '.join(table.columns)} FROM {table.name} ORDER BY {table.columns[0]}"
    )
    items: list[T] = []
    count = 0
    while batch := cursor.fetchmany(1000):
        for row in batch:
            count += 1
            try:
                items.append(table.make(row))
            except ValueError as exc:
                result.tally.skip(str(exc), f"{table.name} #{row[0]}")
                continue
            note = table.note(row)
            if note is not None:
                result.note(note)
    result.read[f"{table.name} rows"] = count
    return items


def _canonical(value: object) -> object:
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    return value


def row_key(table: str, row: Sequence[object]) -> str:
    """A key for one legacy row: a hash of its table, legacy id and content (no file path)."""
    text = json.dumps([table, *(_canonical(v) for v in row)], default=str, separators=(",", ":"))
    return f"{table}:{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def validated(model: type[M], what: str, fields: dict[str, object]) -> M:
    """``model`` made of ``fields``, or ValueError naming the first problems (a skip reason)."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()[:3]
        )
        raise ValueError(f"not a valid {what}: {problems}") from None
