"""The SQLite readers of ``aisys import-legacy`` over stores made in the legacy formats."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from actors.errors.models import ErrorEvent
from actors.security.models import ImportedAggregate, ImportedOutcome
from cluster.base.errors import LegacySourceUnreadable
from cluster.ops.legacy_import import errorbus, perf, trust
from cluster.ops.legacy_import._store import SourceRead
from deployments.observability.perflog import ImportedMetric, ImportedUsage
from tests._legacy_stores import (
    Expected,
    local_stamp,
    write_errors_db,
    write_perf_db,
    write_trust_db,
)

NOW = 1_780_000_000.0


def assert_skips(
    read: SourceRead[Any], expected: Expected, *, ignore: tuple[str, ...] = ()
) -> None:
    """Every expected reason names its row; nothing else is skipped (but ``ignore``)."""
    for reason, row in expected.skipped.items():
        if reason in ignore:
            continue
        assert reason in read.tally.skipped, (reason, read.tally.skipped)
        assert row in read.tally.skipped[reason].examples
    extra = set(read.tally.skipped) - set(expected.skipped)
    assert not extra, extra


def test_trust_logs_become_outcomes_at_their_local_times(tmp_path: Path) -> None:
    expected = write_trust_db(tmp_path / "agent_trust_scores.db", NOW)
    read = trust.read_trust(tmp_path / "agent_trust_scores.db", None, NOW)

    assert read.read == {"performance_logs rows": 9, "model_scores rows": 4}
    assert read.problems == []
    assert_skips(read, expected)
    outcomes = [i for i in read.items if isinstance(i, ImportedOutcome)]
    assert len(outcomes) == expected.imported["outcomes"]
    phi3 = [o for o in outcomes if o.agent == "m-phi3"]
    assert [(o.outcome.success, o.outcome.latency_s) for o in phi3] == [
        (True, 0.5),
        (True, 1.2),
        (False, 3.0),
        (True, 0.1),
    ]
    assert [o.at for o in phi3] == pytest.approx(
        [NOW - 3 * 3600, NOW - 7200, NOW - 3600, NOW - 600]
    )
    # Sorted by time across models, so each batch continues the evidence of the one before.
    assert [i.at for i in read.items] == sorted(i.at for i in read.items)


def test_trust_counts_without_log_rows_become_one_aggregate(tmp_path: Path) -> None:
    write_trust_db(tmp_path / "t.db", NOW)
    read = trust.read_trust(tmp_path / "t.db", None, NOW)

    [aggregate] = [i for i in read.items if isinstance(i, ImportedAggregate)]
    assert (aggregate.agent, aggregate.successes, aggregate.failures) == ("m-tinyllama", 7, 3)
    assert aggregate.at == pytest.approx(NOW - 1200)


def test_row_keys_depend_on_content_not_on_the_file(tmp_path: Path) -> None:
    write_trust_db(tmp_path / "a.db", NOW)
    shutil.copy(tmp_path / "a.db", tmp_path / "copy.db")
    first = trust.read_trust(tmp_path / "a.db", None, NOW)
    again = trust.read_trust(tmp_path / "copy.db", None, NOW + 86400)
    assert [i.key for i in first.items] == [i.key for i in again.items]
    assert len({i.key for i in first.items}) == len(first.items)

    db = sqlite3.connect(tmp_path / "copy.db")
    db.execute("UPDATE performance_logs SET response_time = 0.6 WHERE id = 1")
    db.commit()
    db.close()
    changed = trust.read_trust(tmp_path / "copy.db", None, NOW)
    assert len({i.key for i in first.items} - {i.key for i in changed.items}) == 1


def test_perf_rows_in_every_timestamp_form(tmp_path: Path) -> None:
    expected = write_perf_db(tmp_path / "performance_metrics.db", NOW)
    read = perf.read_perf(tmp_path / "performance_metrics.db", None, NOW)

    assert read.read == {"metrics rows": 6, "resource_usage rows": 4}
    # The retention is the performance log's to apply: the reader keeps old rows.
    assert_skips(read, expected, ignore=tuple(r for r in expected.skipped if "retention" in r))
    metrics = [i for i in read.items if isinstance(i, ImportedMetric)]
    usage = [i for i in read.items if isinstance(i, ImportedUsage)]
    assert [m.at for m in metrics] == pytest.approx(
        [NOW - 60, NOW - 120, float(int(NOW - 3 * 86400)), NOW - 40 * 86400]
    )
    assert [m.metadata for m in metrics] == [
        {"n": 1},
        {},
        {"legacy_metadata": "not json"},
        {"old": True},
    ]
    assert [(u.cpu_percent, u.memory_mb, u.metadata) for u in usage] == [
        (12.5, 512.0, {"gpu": 0}),
        (14.0, 530.0, {}),
        (10.0, 500.0, {}),
    ]
    assert read.notes == {}


def test_error_rows_are_normalised_like_the_bridge_and_keep_their_origin(tmp_path: Path) -> None:
    expected = write_errors_db(tmp_path / "error_system.db", NOW)
    read = errorbus.read_errors(tmp_path / "error_system.db", NOW)

    assert read.read == {"errors rows": 5, "agent_health rows": 2}
    assert_skips(read, expected)
    assert len(read.items) == expected.imported["events"]
    login, timeout, oom, odd, *health = read.items
    assert (login.agent, login.error_type, login.severity, login.message) == (
        "e-Auth",
        "LOGIN_ERROR",
        "error",
        "bad password",
    )
    assert login.details["user"] == "x" and login.details["legacy_row_id"] == 1
    assert login.time.timestamp() == pytest.approx(NOW - 500)
    assert (timeout.severity, oom.severity, odd.severity) == ("warning", "critical", "error")
    assert oom.time.timestamp() == pytest.approx(NOW - 300)  # naive ISO read as UTC
    assert odd.details["context"] == "not json"
    assert [h.error_type for h in health] == [errorbus.HEALTH_TYPE] * 2
    assert health[1].details["error_count"] == 3 and health[1].severity == "warning"
    ids = [e.id for e in read.items]
    assert all(i.startswith("legacy.") for i in ids) and len(set(ids)) == len(ids)
    assert ErrorEvent.model_validate_json(login.model_dump_json()) == login


def test_a_missing_table_is_a_problem_and_the_other_table_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    write_trust_db(path, NOW)
    db = sqlite3.connect(path)
    db.execute("DROP TABLE performance_logs")
    db.commit()
    db.close()
    read = trust.read_trust(path, None, NOW)
    assert read.problems == ["table performance_logs is missing"]
    # Without log rows, every model's counts are its evidence.
    assert sorted(i.agent for i in read.items) == ["m-phi3", "m-tinyllama", "m-whisper"]


def test_a_table_without_the_legacy_columns_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE metrics (metric_id INTEGER PRIMARY KEY, agent TEXT)")
    db.execute(
        "CREATE TABLE resource_usage (usage_id INTEGER PRIMARY KEY, agent TEXT, "
        "cpu_percent REAL, memory_mb REAL, timestamp TIMESTAMP, metadata TEXT)"
    )
    db.execute(
        "INSERT INTO resource_usage (agent, cpu_percent, memory_mb, timestamp) VALUES (?, ?, ?, ?)",
        ("tts", 1.0, 2.0, local_stamp(NOW - 60)),
    )
    db.commit()
    db.close()
    read = perf.read_perf(path, None, NOW)
    [problem] = read.problems
    assert problem.startswith("table metrics cannot be read: no such column")
    assert [type(i) for i in read.items] == [ImportedUsage]


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda _: None, "the file does not exist"),
        (lambda p: p.mkdir(), "not a regular file"),
        (lambda p: p.write_text("legacy notes, not a database\n" * 20), "not an SQLite database"),
        (
            lambda p: sqlite3.connect(p).execute("CREATE TABLE other (x)").connection.commit(),
            "no table errors or agent_health: not a legacy error bus database",
        ),
    ],
)
def test_an_unreadable_store_names_the_reason(tmp_path: Path, make: Any, reason: str) -> None:
    path = tmp_path / "error_system.db"
    make(path)
    with pytest.raises(LegacySourceUnreadable, match=reason) as caught:
        errorbus.read_errors(path, NOW)
    assert caught.value.source == "errors" and caught.value.location == str(path)


def test_readers_never_write_to_the_legacy_store(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    write_errors_db(path, NOW)
    before = path.read_bytes()
    path.chmod(0o444)
    errorbus.read_errors(path, NOW)
    assert path.read_bytes() == before
    assert not (tmp_path / "e.db-journal").exists() and not (tmp_path / "e.db-wal").exists()
