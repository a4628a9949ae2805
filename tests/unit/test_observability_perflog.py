"""The performance log: round trips, queries by agent and time, retention."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cluster.base.settings import PerfLogSettings
from deployments.observability.perflog import (
    ImportedUsage,
    MetricEntry,
    PerfImport,
    PerfLog,
    PerfQuery,
    UsageEntry,
)

DAY = 86_400.0
NOW = 1_700_000_000.0


def test_metrics_round_trip_and_query_by_agent_and_time_range(tmp_path: Path) -> None:
    log = PerfLog(tmp_path / "perf.db", PerfLogSettings())
    for i in range(5):
        log.log_metric(
            MetricEntry(agent="tts", action="speak", duration_s=0.1 * i, metadata={"i": i}),
            now=NOW + i,
        )
    log.log_metric(MetricEntry(agent="nlu", action="parse", duration_s=1.0), now=NOW)

    rows = log.metrics(PerfQuery(agent="tts", since=NOW + 1, until=NOW + 4))
    assert [(r.at, r.metadata) for r in rows] == [
        (NOW + 3, {"i": 3}),
        (NOW + 2, {"i": 2}),
        (NOW + 1, {"i": 1}),
    ]
    assert len(log.metrics(PerfQuery())) == 6
    assert len(log.metrics(PerfQuery(limit=2))) == 2
    (nlu,) = log.metrics(PerfQuery(agent="nlu"))
    assert (nlu.action, nlu.duration_s) == ("parse", 1.0)

    (speak,) = [a for a in log.aggregates(since=NOW) if a.agent == "tts"]
    assert (speak.count, speak.max_duration_s) == (5, 0.4)
    assert abs(speak.mean_duration_s - 0.2) < 1e-9


def test_usage_round_trip(tmp_path: Path) -> None:
    log = PerfLog(tmp_path / "perf.db", PerfLogSettings())
    log.log_usage(UsageEntry(agent="tts", cpu_percent=12.5, memory_mb=300), now=NOW)
    log.log_usage(UsageEntry(agent="tts", cpu_percent=15.0, memory_mb=310, at=NOW - 60), now=NOW)
    log.log_usage(
        UsageEntry(agent="tts", cpu_percent=9, memory_mb=1, metadata={"gpu": 0, "tags": ["a"]}),
        now=NOW + 1,
    )
    rows = log.usage(PerfQuery(agent="tts"))
    assert [(r.cpu_percent, r.at, r.metadata) for r in rows] == [
        (9.0, NOW + 1, {"gpu": 0, "tags": ["a"]}),
        (12.5, NOW, {}),
        (15.0, NOW - 60, {}),
    ]
    imported = ImportedUsage(
        key="resource_usage:1", agent="stt", cpu_percent=1, memory_mb=2, metadata={"n": 1}, at=NOW
    )
    log.import_rows(PerfImport(usage=[imported]), now=NOW)
    assert [r.metadata for r in log.usage(PerfQuery(agent="stt"))] == [{"n": 1}]


# The tables as the first release created them: no legacy_key, no usage metadata.
_FIRST_SCHEMA = """
CREATE TABLE metrics (
    id INTEGER PRIMARY KEY, agent TEXT NOT NULL, action TEXT NOT NULL,
    duration_s REAL NOT NULL, metadata TEXT NOT NULL, at REAL NOT NULL
);
CREATE TABLE usage (
    id INTEGER PRIMARY KEY, agent TEXT NOT NULL, cpu_percent REAL NOT NULL,
    memory_mb REAL NOT NULL, at REAL NOT NULL
);
INSERT INTO usage (agent, cpu_percent, memory_mb, at) VALUES ('old', 3.0, 4.0, 1700000000.0);
"""


def test_a_log_from_before_usage_metadata_is_migrated_on_open(tmp_path: Path) -> None:
    path = tmp_path / "perf.db"
    db = sqlite3.connect(path)
    db.executescript(_FIRST_SCHEMA)
    db.close()
    log = PerfLog(path, PerfLogSettings())
    (old,) = log.usage(PerfQuery(agent="old"))
    assert (old.cpu_percent, old.metadata) == (3.0, {})
    log.log_usage(UsageEntry(agent="new", cpu_percent=1, memory_mb=1, metadata={"k": "v"}), NOW)
    log.close()
    again = PerfLog(path, PerfLogSettings())  # a second open finds the columns in place
    assert [r.metadata for r in again.usage(PerfQuery(agent="new"))] == [{"k": "v"}]


def test_retention_keeps_30_days_of_metrics_and_7_of_usage_by_default(tmp_path: Path) -> None:
    log = PerfLog(tmp_path / "perf.db", PerfLogSettings())
    for age_days in (1, 8, 29, 31):
        at = NOW - age_days * DAY
        log.log_metric(MetricEntry(agent="a", action="x", duration_s=1, at=at), now=NOW)
        log.log_usage(UsageEntry(agent="a", cpu_percent=1, memory_mb=1, at=at), now=NOW)
    assert log.purge(NOW) == (1, 3)
    assert len(log.metrics(PerfQuery())) == 3
    assert len(log.usage(PerfQuery())) == 1


def test_retention_and_row_cap_are_configurable(tmp_path: Path) -> None:
    settings = PerfLogSettings(metrics_retention_days=1, usage_retention_days=2, max_query_rows=2)
    log = PerfLog(tmp_path / "perf.db", settings)
    for i in range(4):
        log.log_metric(MetricEntry(agent="a", action="x", duration_s=1, at=NOW - i * DAY), now=NOW)
        log.log_usage(UsageEntry(agent="a", cpu_percent=1, memory_mb=1, at=NOW - i * DAY), now=NOW)
    assert log.purge(NOW + 1) == (3, 2)
    assert len(log.usage(PerfQuery(limit=100))) == 2
    log.log_metric(MetricEntry(agent="a", action="x", duration_s=1), now=NOW)
    log.log_metric(MetricEntry(agent="a", action="x", duration_s=1), now=NOW)
    assert len(log.metrics(PerfQuery(limit=100))) == 2


def test_a_metric_without_a_duration_is_stored_as_none_and_left_out_of_the_aggregates(
    tmp_path: Path,
) -> None:
    path = tmp_path / "perf.db"
    db = sqlite3.connect(path)
    db.executescript(_FIRST_SCHEMA)  # duration_s NOT NULL, as the first release made it
    db.execute(
        "INSERT INTO metrics (agent, action, duration_s, metadata, at) "
        "VALUES ('tts', 'speak', 0.3, '{}', 1700000000.0)"
    )
    db.commit()
    db.close()
    log = PerfLog(path, PerfLogSettings())  # rebuilt once: NULL durations allowed, rows kept
    queued = MetricEntry(
        agent="tts", action="monitor:queue_size", duration_s=None, metadata={"value": 7}
    )
    log.log_metric(queued, now=NOW + 1)
    rows = log.metrics(PerfQuery(agent="tts"))
    assert [(r.id, r.action, r.duration_s) for r in rows] == [
        (2, "monitor:queue_size", None),
        (1, "speak", 0.3),
    ]
    (speak,) = log.aggregates(since=0)  # the queue size is not a duration of 0 s
    assert (speak.action, speak.count, speak.mean_duration_s) == ("speak", 1, 0.3)
    log.close()
    again = PerfLog(path, PerfLogSettings())  # a second open does not rebuild again
    assert len(again.metrics(PerfQuery())) == 2
