"""Which replicas applied which security feed version, as their long-polls report it.

Every verifier long-polls ``wait_changes(since=<the version it applied>, follower=<name>)``,
so each poll tells the security actor the caller's applied version. A replica that has not
polled for ``alive_s`` is gone or cut off; a cut-off one fails closed by itself
(:class:`cluster.base.errors.RevocationStale`), so only the live ones are waited for.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FollowerLedger", "Propagation"]


@dataclass(frozen=True)
class Propagation:
    """The live followers that have applied a version and those that have not (yet)."""

    applied: list[str]
    pending: list[str]


class FollowerLedger:
    """Last reported version and time per follower name.

    Args:
        alive_s: a follower not heard from for this long is no longer counted (and forgotten).
    """

    def __init__(self, alive_s: float) -> None:
        self._alive_s = alive_s
        self._seen: dict[str, tuple[int, float]] = {}

    def report(self, follower: str, version: int, now: float) -> None:
        self._seen[follower] = (version, now)

    def propagation(self, version: int, now: float) -> Propagation:
        """Which live followers have applied ``version`` (sorted names)."""
        for name, (_, at) in list(self._seen.items()):
            if now - at > self._alive_s:
                del self._seen[name]
        applied = sorted(n for n, (v, _) in self._seen.items() if v >= version)
        pending = sorted(n for n, (v, _) in self._seen.items() if v < version)
        return Propagation(applied=applied, pending=pending)
