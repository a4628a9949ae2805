"""What one ``aisys import-legacy`` step imported and what it skipped, with the reasons.

Readers (rows that cannot be read) and targets (rows already present, rows past a retention)
both fill an :class:`ImportTally`; the CLI merges them per source and prints them. It crosses
Ray calls, so it is a plain pydantic model.

Example::

    tally = ImportTally()
    tally.add("outcomes")
    tally.skip("already imported", "performance_logs #17")
    tally.imported_total()      # 1
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, Field

__all__ = ["MAX_EXAMPLES", "ImportTally", "SkipGroup"]

#: Keys kept per skip reason; the rest are counted only (a store can skip 100,000 rows).
MAX_EXAMPLES: Final = 10


class SkipGroup(BaseModel):
    """Rows skipped for one reason: how many, and the first few of them."""

    count: int = 0
    examples: list[str] = Field(default_factory=list)


class ImportTally(BaseModel):
    """Counts of what was imported (by kind) and skipped (by reason)."""

    imported: dict[str, int] = Field(default_factory=dict)
    skipped: dict[str, SkipGroup] = Field(default_factory=dict)

    def add(self, kind: str, count: int = 1) -> None:
        """Count ``count`` rows of ``kind`` as imported."""
        self.imported[kind] = self.imported.get(kind, 0) + count

    def skip(self, reason: str, key: str) -> None:
        """Count the row ``key`` as skipped because of ``reason``."""
        group = self.skipped.setdefault(reason, SkipGroup())
        group.count += 1
        if len(group.examples) < MAX_EXAMPLES:
            group.examples.append(key)

    def merge(self, other: ImportTally) -> None:
        """Add ``other``'s counts (and examples, up to the limit) to this tally."""
        for kind, count in other.imported.items():
            self.add(kind, count)
        for reason, group in other.skipped.items():
            mine = self.skipped.setdefault(reason, SkipGroup())
            mine.count += group.count
            room = MAX_EXAMPLES - len(mine.examples)
            mine.examples.extend(group.examples[: max(room, 0)])

    def imported_total(self) -> int:
        return sum(self.imported.values())

    def skipped_total(self) -> int:
        return sum(group.count for group in self.skipped.values())
