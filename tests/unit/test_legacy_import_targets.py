"""The owners' side of ``aisys import-legacy``: each adds a legacy row once, at its own time.

Registry, trust and performance log with a fake clock and real SQLite files; the ErrorBus
index's record of imported ids. Importing the same rows again must change nothing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from actors.errors.models import ErrorEvent, StoredEvent
from actors.registry.core import RegistryCore
from actors.registry.models import Health, ImportedAgent, Registration
from actors.registry.store import SqliteRegistryStore
from actors.security.core import SecurityCore
from actors.security.models import ImportedAggregate, ImportedOutcome, TrustOutcome
from actors.security.trust import TrustState, observe, score_of
from cluster.base.settings import PerfLogSettings, RegistrySettings, SecuritySettings, TrustSettings
from cluster.base.tally import MAX_EXAMPLES, ImportTally
from deployments.errors.index import ErrorIndex
from deployments.observability.perflog import (
    ImportedMetric,
    ImportedUsage,
    PerfImport,
    PerfLog,
    PerfQuery,
)

NOW = 1_800_000_000.0
HOUR = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


# registry


def legacy_agent(agent_id: str, port: int = 5709, at: float = NOW - HOUR) -> ImportedAgent:
    registration = Registration(
        agent_id=agent_id,
        agent_type="LegacyAgent",
        host="10.0.0.5",
        port=port,
        capabilities=["nlu", "reasoning"],
        metadata={"version": "1.0"},
        check="none",
    )
    return ImportedAgent(registration=registration, registered_at=at)


def test_imported_agents_keep_their_fields_and_start_with_unknown_health(tmp_path: Path) -> None:
    clock = Clock()
    core = RegistryCore(RegistrySettings(), SqliteRegistryStore(tmp_path / "r.db"), clock)
    tally, changes = core.import_agents([legacy_agent("NLUAgent"), legacy_agent("TTS", 5801)])

    assert tally.imported == {"agents": 2} and len(changes) == 2
    record = core.get("NLUAgent")
    assert (record.host, record.port, record.agent_type) == ("10.0.0.5", 5709, "LegacyAgent")
    assert (record.capabilities, record.metadata) == (["nlu", "reasoning"], {"version": "1.0"})
    assert (record.health, record.check, record.ttl_s) == (Health.UNKNOWN, "none", None)
    assert record.registered_at == NOW - HOUR
    clock.now += 10 * HOUR
    assert core.sweep() == []  # no TTL: unknown until a probe or heartbeat says otherwise


def test_a_second_import_changes_nothing_and_a_live_registration_wins(tmp_path: Path) -> None:
    clock = Clock()
    core = RegistryCore(RegistrySettings(), SqliteRegistryStore(tmp_path / "r.db"), clock)
    core.import_agents([legacy_agent("NLUAgent"), legacy_agent("TTS", 5801)])
    core.register(Registration(agent_id="TTS", host="10.0.0.9", port=6000))
    version, before = core.version, core.list_agents()

    reloaded = RegistryCore(RegistrySettings(), SqliteRegistryStore(tmp_path / "r.db"), clock)
    tally, changes = reloaded.import_agents([legacy_agent("NLUAgent"), legacy_agent("TTS", 5801)])

    assert changes == [] and tally.imported == {}
    assert tally.skipped["already present"].examples == ["NLUAgent"]
    assert tally.skipped["registered since with other content"].examples == ["TTS"]
    assert reloaded.version == version and reloaded.list_agents() == before


# trust


SETTINGS = SecuritySettings(trust=TrustSettings(half_life_s=HOUR))


def logs(agent: str, rows: list[tuple[bool, float, float]]) -> list[ImportedOutcome]:
    return [
        ImportedOutcome(
            key=f"performance_logs:{agent}:{i}",
            agent=agent,
            at=at,
            outcome=TrustOutcome(success=ok, latency_s=latency),
        )
        for i, (ok, latency, at) in enumerate(rows)
    ]


ROWS = [(True, 0.5, NOW - 3 * HOUR), (True, 1.2, NOW - 2 * HOUR), (False, 3.0, NOW - HOUR)]


def in_time_order(outcomes: list[tuple[TrustOutcome, float]], now: float) -> float:
    state = TrustState(at=outcomes[0][1])
    for outcome, at in sorted(outcomes, key=lambda o: o[1]):
        state = observe(state, outcome, at, SETTINGS.trust)
    return score_of(observe(state, TrustOutcome(success=True), now, SETTINGS.trust))


def test_legacy_outcomes_count_at_their_own_times_and_decay(tmp_path: Path) -> None:
    clock = Clock()
    core = SecurityCore(SETTINGS, tmp_path, clock)
    tally = core.import_evidence(logs("phi3", ROWS))

    assert tally.imported == {"outcomes": 3}
    report = core.trust_report("phi3", 10)
    assert [h["at"] for h in report.history] == [NOW - HOUR, NOW - 2 * HOUR, NOW - 3 * HOUR]
    assert [h["success"] for h in report.history] == [False, True, True]
    # Outcomes one, two and three half-lives old weigh 1/2, 1/4 and 1/8 now.
    assert report.evidence == pytest.approx(0.5 + 0.25 + 0.125)
    recent = SecurityCore(SETTINGS, tmp_path / "recent", clock)
    recent.import_evidence(logs("phi3", [(ok, lat, at + HOUR) for ok, lat, at in ROWS]))
    assert recent.trust_report("phi3", 0).evidence == pytest.approx(2 * report.evidence)


def test_importing_again_adds_nothing(tmp_path: Path) -> None:
    clock = Clock()
    core = SecurityCore(SETTINGS, tmp_path, clock)
    core.import_evidence(logs("phi3", ROWS))
    before = core.trust_report("phi3", 100)

    again = SecurityCore(SETTINGS, tmp_path, clock).import_evidence(logs("phi3", ROWS))

    assert again.imported == {} and again.skipped["already imported"].count == 3
    assert core.trust_report("phi3", 100) == before


def test_legacy_outcomes_older_than_live_ones_merge_as_if_in_time_order(tmp_path: Path) -> None:
    clock = Clock()
    core = SecurityCore(SETTINGS, tmp_path, clock)
    core.record_outcome("phi3", TrustOutcome(success=True))  # live, at NOW
    core.import_evidence(logs("phi3", ROWS))  # legacy, older

    outcomes = [(TrustOutcome(success=ok, latency_s=lat), at) for ok, lat, at in ROWS]
    assert core.trust_report("phi3", 0).score == pytest.approx(in_time_order(outcomes, NOW))
    history = core.trust_report("phi3", 10).history
    assert [h["at"] for h in history] == [NOW, NOW - HOUR, NOW - 2 * HOUR, NOW - 3 * HOUR]


def test_batches_in_time_order_continue_one_another(tmp_path: Path) -> None:
    core = SecurityCore(SETTINGS, tmp_path, Clock())
    items = logs("phi3", ROWS)
    core.import_evidence(items[:2])
    core.import_evidence(items[2:])
    whole = SecurityCore(SETTINGS, tmp_path / "whole", Clock())
    whole.import_evidence(items)
    assert core.trust_report("phi3", 10) == whole.trust_report("phi3", 10)


def test_an_aggregate_adds_its_counts_at_last_updated(tmp_path: Path) -> None:
    core = SecurityCore(SETTINGS, tmp_path, Clock())
    aggregate = ImportedAggregate(
        key="model_scores:k", agent="tiny", at=NOW, successes=7, failures=3
    )
    assert core.import_evidence([aggregate]).imported == {"aggregates": 1}
    report = core.trust_report("tiny", 10)
    assert report.score == pytest.approx(8 / 12) and report.evidence == pytest.approx(10)
    assert report.history == []  # an aggregate is no single outcome


# performance log

DAY = 86_400.0


def metric(key: str, at: float) -> ImportedMetric:
    return ImportedMetric(key=key, agent="tts", action="speak", duration_s=0.2, at=at)


def test_perf_rows_are_added_once_and_never_past_the_retention(tmp_path: Path) -> None:
    log = PerfLog(tmp_path / "perf.sqlite3", PerfLogSettings())
    batch = PerfImport(
        metrics=[metric("metrics:a", NOW - DAY), metric("metrics:old", NOW - 31 * DAY)],
        usage=[
            ImportedUsage(key="usage:a", agent="tts", cpu_percent=5, memory_mb=9, at=NOW - DAY),
            ImportedUsage(
                key="usage:old", agent="tts", cpu_percent=5, memory_mb=9, at=NOW - 8 * DAY
            ),
        ],
    )
    tally = log.import_rows(batch, NOW)
    assert tally.imported == {"metrics": 1, "usage": 1}
    assert tally.skipped["older than the metrics retention of 30 days"].examples == ["metrics:old"]
    assert tally.skipped["older than the usage retention of 7 days"].examples == ["usage:old"]

    again = PerfLog(tmp_path / "perf.sqlite3", PerfLogSettings()).import_rows(batch, NOW)
    assert again.imported == {} and again.skipped["already imported"].count == 2
    assert [(m.at, m.duration_s) for m in log.metrics(PerfQuery())] == [(NOW - DAY, 0.2)]
    assert len(log.usage(PerfQuery())) == 1
    assert log.purge(NOW) == (0, 0)


def test_a_perf_log_from_before_imports_gets_the_key_column(tmp_path: Path) -> None:
    path = tmp_path / "perf.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE metrics (id INTEGER PRIMARY KEY, agent TEXT NOT NULL, action TEXT NOT NULL,
            duration_s REAL NOT NULL, metadata TEXT NOT NULL, at REAL NOT NULL);
        CREATE TABLE usage (id INTEGER PRIMARY KEY, agent TEXT NOT NULL, cpu_percent REAL NOT NULL,
            memory_mb REAL NOT NULL, at REAL NOT NULL);
        INSERT INTO metrics (agent, action, duration_s, metadata, at)
            VALUES ('nlu', 'parse', 1.0, '{}', 1799999000);
        """
    )
    db.commit()
    db.close()
    log = PerfLog(path, PerfLogSettings())
    assert log.import_rows(PerfImport(metrics=[metric("metrics:a", NOW)]), NOW).imported == {
        "metrics": 1
    }
    assert log.import_rows(PerfImport(metrics=[metric("metrics:a", NOW)]), NOW).imported == {}
    assert sorted(m.agent for m in log.metrics(PerfQuery())) == ["nlu", "tts"]


# ErrorBus index


def test_the_index_remembers_imported_ids_after_the_stream_dropped_them(tmp_path: Path) -> None:
    index = ErrorIndex(tmp_path / "index.sqlite3")
    event = ErrorEvent(id="legacy.errors:abc", agent="Auth", message="x")
    index.add([StoredEvent(seq=1, event=event)])
    assert index.known_ids(["legacy.errors:abc", "other"]) == {"legacy.errors:abc"}
    index.remember_imported(["legacy.errors:abc"], NOW)
    index.prune_before(2)  # the stream's retention removed it
    assert index.known_ids(["legacy.errors:abc"], imported=False) == set()
    assert index.known_ids(["legacy.errors:abc"]) == {"legacy.errors:abc"}
    many = [f"id{i}" for i in range(1200)]
    index.remember_imported(many, NOW)
    assert index.known_ids(many) == set(many)


def test_a_tally_keeps_counts_and_a_few_examples_per_reason() -> None:
    tally = ImportTally()
    for i in range(MAX_EXAMPLES + 5):
        tally.skip("already imported", f"k{i}")
    other = ImportTally()
    other.add("events", 3)
    other.skip("already imported", "z")
    tally.merge(other)
    assert tally.imported_total() == 3 and tally.skipped_total() == MAX_EXAMPLES + 6
    assert len(tally.skipped["already imported"].examples) == MAX_EXAMPLES
