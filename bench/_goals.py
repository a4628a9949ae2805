"""Goals of the benchmarks: each row's ratio against its floor, checked, printed, turned into
the exit status, so ``make bench`` fails when a row misses its goal.

A row is "at most" (a cost ratio, aisys / floor: latency) or "at least" (a share of the floor,
aisys / floor: throughput). Every benchmark collects its rows and ends with
``return verdict(title, rows)``.

Example::

    rows = [Goal("lookup p50 / no-op p50", 1.07, 1.2, AT_MOST)]
    sys.exit(verdict("registry_lookup", rows))
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from typing import Literal

__all__ = ["AT_LEAST", "AT_MOST", "Goal", "load_note", "verdict"]

AT_MOST: Literal["<="] = "<="
AT_LEAST: Literal[">="] = ">="


@dataclass(frozen=True)
class Goal:
    """One measured ratio and the goal it is held to."""

    name: str
    ratio: float
    goal: float
    kind: Literal["<=", ">="]

    @property
    def met(self) -> bool:
        return self.ratio <= self.goal if self.kind == AT_MOST else self.ratio >= self.goal


def load_note() -> str:
    """The 1, 5 and 15 minute load averages and the core count, for the record."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except OSError:
        return "?"
    return out.stdout.strip() or "?"


def verdict(title: str, rows: list[Goal]) -> int:
    """Print every row with its ratio, goal and PASS/FAIL; 0 when all met, else 1."""
    print()
    print(f"{title}: goals ({load_note()}, commit {_commit()})")
    width = max(len(row.name) for row in rows)
    for row in rows:
        mark = "PASS" if row.met else "FAIL"
        print(f"  {row.name:<{width}}  {row.ratio:>7.2f}  goal {row.kind} {row.goal:<5g} {mark}")
    missed = [row.name for row in rows if not row.met]
    print(f"{title}: {'FAIL: ' + ', '.join(missed) if missed else 'PASS'}")
    return 1 if missed else 0
