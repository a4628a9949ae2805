"""Progress lines for CLI steps that take more than a second."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Writes ``==> step ... done (1.2s)`` lines and periodic waiting updates."""

    def __init__(self, out: TextIO | None = None, quiet: bool = False) -> None:
        self._out = out or sys.stderr
        self._quiet = quiet
        self._last_update = 0.0

    def line(self, text: str) -> None:
        if not self._quiet:
            self._out.write(text + "\n")
            self._out.flush()

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        start = time.monotonic()
        self.line(f"==> {title} ...")
        try:
            yield
        except BaseException:
            self.line(f"    {title}: failed after {time.monotonic() - start:.1f}s")
            raise
        self.line(f"    {title}: done ({time.monotonic() - start:.1f}s)")

    def waiting(self, text: str, every_s: float = 2.0) -> None:
        """Report the state of a wait, at most every ``every_s`` seconds."""
        now = time.monotonic()
        if now - self._last_update >= every_s:
            self._last_update = now
            self.line(f"    ... {text}")
