"""Read the timestamps the legacy stores hold, in every form they were written.

The legacy agents wrote times three ways: ISO strings (``datetime.now().isoformat()``, or
``str(datetime)`` through :mod:`sqlite3`'s default adapter, ``2025-07-15 09:12:01.123456``),
epoch seconds from ``time.time()`` (a REAL, or the same number as text), and SQLite's
``CURRENT_TIMESTAMP`` (``2025-07-15 09:12:01``). A time without a zone is read in the zone its
writer used: the ServiceRegistry and the error bus stamped UTC (``utcnow()``, ``time.time()``);
the trust scorer and the performance logger stamped the PC's local time (``datetime.now()``).

Example::

    parse_time("2025-07-15 09:12:01", UTC)   # 1752570721.0
    parse_time(1752570721.5, None)            # 1752570721.5 (epoch: no zone needed)
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, tzinfo
from typing import Final

__all__ = ["EARLIEST", "UnreadableTime", "iso_utc", "parse_time"]

#: Earliest time accepted (1990-01-01): a smaller epoch is a zero, a counter or a typo.
EARLIEST: Final = 631_152_000.0
#: Epoch values above this are taken as milliseconds (``int(time.time() * 1000)``).
_MILLIS_ABOVE: Final = 1e11
#: How far in the future a legacy time may lie (clock skew between the PCs).
_FUTURE_SLACK_S: Final = 86_400.0


class UnreadableTime(ValueError):
    """A legacy timestamp that cannot be read; the message says why (for the skip report)."""


def parse_time(value: object, naive_zone: tzinfo | None, *, now: float | None = None) -> float:
    """Return ``value`` as seconds since the epoch.

    Args:
        value: what the legacy store holds (text, number, bytes or None).
        naive_zone: the zone of times written without one; None is this machine's local zone.
        now: when given, a time more than a day after it is refused (a wrong zone or clock).

    Raises:
        UnreadableTime: empty, not a time, before 1990, or in the future.
    """
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise UnreadableTime("timestamp is not UTF-8 text") from None
    if value is None or (isinstance(value, str) and not value.strip()):
        raise UnreadableTime("no timestamp")
    if isinstance(value, bool):
        raise UnreadableTime(f"timestamp {value!r} is a boolean")
    if isinstance(value, int | float):
        seconds = _from_epoch(float(value))
    elif isinstance(value, str):
        seconds = _from_text(value.strip(), naive_zone)
    else:
        raise UnreadableTime(f"timestamp of type {type(value).__name__}")
    if now is not None and seconds > now + _FUTURE_SLACK_S:
        raise UnreadableTime(f"timestamp {value!r} lies in the future")
    return seconds


def _from_epoch(value: float) -> float:
    if not math.isfinite(value):
        raise UnreadableTime(f"timestamp {value!r} is not a finite number")
    seconds = value / 1000.0 if value > _MILLIS_ABOVE else value
    if seconds < EARLIEST:
        raise UnreadableTime(f"epoch timestamp {value!r} is before 1990")
    return seconds


def _from_text(text: str, naive_zone: tzinfo | None) -> float:
    try:
        number = float(text)
    except ValueError:
        number = None  # not a number: an ISO or SQLite date-time
    if number is not None:
        return _from_epoch(number)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise UnreadableTime(f"timestamp {text[:64]!r} is neither ISO 8601 nor epoch") from None
    if parsed.tzinfo is None:
        # None means local time: datetime.timestamp() reads a naive value that way.
        parsed = parsed if naive_zone is None else parsed.replace(tzinfo=naive_zone)
    seconds = parsed.timestamp()
    if seconds < EARLIEST:
        raise UnreadableTime(f"timestamp {text[:64]!r} is before 1990")
    return seconds


def iso_utc(seconds: float) -> str:
    """``seconds`` as an ISO 8601 UTC string (how imported times are shown)."""
    return datetime.fromtimestamp(seconds, UTC).isoformat()
