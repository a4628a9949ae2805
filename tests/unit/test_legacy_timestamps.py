"""Legacy timestamps in every form the legacy stores hold them, and the ones refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from cluster.ops.legacy_import.timestamps import UnreadableTime, iso_utc, parse_time

MANILA = timezone(timedelta(hours=8))
T = datetime(2025, 7, 15, 9, 12, 1, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("value", "zone", "expected"),
    [
        ("2025-07-15T09:12:01", UTC, T),  # utcnow().isoformat()
        ("2025-07-15 09:12:01", UTC, T),  # SQLite CURRENT_TIMESTAMP
        ("2025-07-15 17:12:01.250000", MANILA, T + 0.25),  # str(datetime.now()) in Manila
        ("2025-07-15T09:12:01Z", MANILA, T),  # an explicit zone wins over the naive zone
        ("2025-07-15T11:12:01+02:00", UTC, T),
        (T, None, T),  # time.time() as REAL
        (int(T), None, T),
        (str(T), None, T),  # time.time() stored as text
        (int(T * 1000), None, T),  # milliseconds
        (f"{T}".encode(), UTC, T),  # a BLOB
    ],
)
def test_every_legacy_form_reads_to_the_same_instant(
    value: object, zone: timezone | None, expected: float
) -> None:
    assert parse_time(value, zone) == pytest.approx(expected)


def test_a_naive_time_without_a_zone_is_this_machines_local_time() -> None:
    local = datetime(2025, 7, 15, 9, 12, 1)
    assert parse_time("2025-07-15 09:12:01", None) == local.timestamp()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "no timestamp"),
        ("  ", "no timestamp"),
        ("yesterday", "neither ISO 8601 nor epoch"),
        (True, "is a boolean"),
        (0, "before 1990"),
        ("1970-01-02", "before 1990"),
        (float("nan"), "not a finite number"),
        ("inf", "not a finite number"),
        (b"\xff\xfe", "not UTF-8"),
        ([1], "of type list"),
    ],
)
def test_unreadable_times_say_why(value: object, reason: str) -> None:
    with pytest.raises(UnreadableTime, match=reason):
        parse_time(value, UTC)


def test_times_after_now_are_refused_beyond_a_day_of_clock_skew() -> None:
    assert parse_time(T + 3600, UTC, now=T) == T + 3600
    with pytest.raises(UnreadableTime, match="in the future"):
        parse_time(T + 2 * 86400, UTC, now=T)


def test_iso_utc_shows_the_instant_in_utc() -> None:
    assert iso_utc(T) == "2025-07-15T09:12:01+00:00"
