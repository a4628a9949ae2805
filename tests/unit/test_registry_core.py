"""RegistryCore with a fake clock and a real SQLite file: Consul TTL semantics and the feed."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.registry.core import RegistryCore
from actors.registry.models import AgentQuery, Health, Heartbeat, Registration
from actors.registry.store import SqliteRegistryStore
from actors.registry.view import RegistryView
from cluster.base.errors import AgentNotFound
from cluster.base.settings import RegistrySettings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


SETTINGS = RegistrySettings(default_ttl_s=10, deregister_critical_after_s=60, change_log_size=100)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "registry.sqlite3"


def make_core(db: Path, clock: FakeClock, settings: RegistrySettings = SETTINGS) -> RegistryCore:
    return RegistryCore(settings, SqliteRegistryStore(db), clock)


def reg(agent_id: str, **fields: object) -> Registration:
    values: dict[str, object] = {"agent_id": agent_id, "host": "10.0.0.5", "port": 5709}
    values.update(fields)
    return Registration.model_validate(values)


def test_register_then_get_returns_the_registration(db: Path, clock: FakeClock) -> None:
    core = make_core(db, clock)
    change = core.register(reg("NLUAgent", capabilities=["reasoning"], health_check_port=5710))
    record = core.get("NLUAgent")
    assert change.record == record
    assert record.agent_type == "NLUAgent"
    assert record.capabilities == ["reasoning"]
    assert record.health is Health.PASSING
    assert record.ttl_s == 10
    assert record.registered_at == clock.now


def test_reregistering_is_idempotent_and_keeps_first_registration_time(
    db: Path, clock: FakeClock
) -> None:
    core = make_core(db, clock)
    core.register(reg("a"))
    first = core.get("a").registered_at
    clock.advance(5)
    core.register(reg("a", port=6000))
    assert len(core.list_agents()) == 1
    assert core.get("a").port == 6000
    assert core.get("a").registered_at == first
    assert core.get("a").last_seen_at == clock.now


def test_ttl_expiry_turns_agent_critical_and_heartbeat_revives_it(
    db: Path, clock: FakeClock
) -> None:
    core = make_core(db, clock)
    core.register(reg("a"))
    clock.advance(9.9)
    assert core.sweep() == []
    clock.advance(0.2)
    [change] = core.sweep()
    assert change.record is not None and change.record.health is Health.CRITICAL
    assert "TTL" in core.get("a").health_note
    core.heartbeat("a", Heartbeat())
    assert core.get("a").health is Health.PASSING
    assert core.get("a").critical_since is None


def test_agent_critical_past_the_deregister_period_is_removed(db: Path, clock: FakeClock) -> None:
    core = make_core(db, clock)
    core.register(reg("a"))
    clock.advance(11)
    core.sweep()
    clock.advance(59)
    core.sweep()
    assert core.get("a").health is Health.CRITICAL
    clock.advance(1)
    [change] = core.sweep()
    assert change.op == "delete"
    with pytest.raises(AgentNotFound):
        core.get("a")


def test_warning_heartbeat_keeps_agent_registered_with_note(db: Path, clock: FakeClock) -> None:
    core = make_core(db, clock)
    core.register(reg("a"))
    core.heartbeat("a", Heartbeat(status="warning", note="queue is long"))
    record = core.get("a")
    assert (record.health, record.health_note) == (Health.WARNING, "queue is long")


def test_check_none_agents_never_expire_and_start_unknown(db: Path, clock: FakeClock) -> None:
    core = make_core(db, clock)
    core.register(reg("legacy", check="none"))
    clock.advance(10_000)
    assert core.sweep() == []
    assert core.get("legacy").health is Health.UNKNOWN
    core.heartbeat("legacy", Heartbeat(status="critical", note="probe timed out"))
    core.register(reg("legacy", check="none", port=1234))
    assert core.get("legacy").health is Health.CRITICAL  # probe evidence survives re-register


def test_unknown_agent_operations_raise_agent_not_found(db: Path, clock: FakeClock) -> None:
    core = make_core(db, clock)
    with pytest.raises(AgentNotFound, match="'ghost' is not registered"):
        core.heartbeat("ghost", Heartbeat())
    with pytest.raises(AgentNotFound):
        core.deregister("ghost")
    with pytest.raises(AgentNotFound):
        core.get("ghost")


def test_state_and_version_survive_a_restart(db: Path, clock: FakeClock) -> None:
    core = make_core(db, clock)
    for i in range(5):
        core.register(reg(f"agent-{i}", capabilities=["tts"] if i % 2 else []))
    core.deregister("agent-0")
    core.heartbeat("agent-1", Heartbeat(status="warning"))
    version = core.version
    before = core.list_agents()

    reloaded = make_core(db, clock)
    assert reloaded.version == version
    assert reloaded.list_agents() == before


def test_list_filters_combine(db: Path, clock: FakeClock) -> None:
    core = make_core(db, clock)
    core.register(reg("tts-1", capabilities=["tts"], host="10.0.0.1", tags=["pc2"]))
    core.register(reg("tts-2", capabilities=["tts"], host="10.0.0.2"))
    core.register(reg("nlu", capabilities=["reasoning"], host="10.0.0.1"))
    core.heartbeat("tts-2", Heartbeat(status="critical"))

    def ids(**query: object) -> list[str]:
        return [r.agent_id for r in core.list_agents(AgentQuery.model_validate(query))]

    assert ids(capability="tts") == ["tts-1", "tts-2"]
    assert ids(capability="tts", health="passing") == ["tts-1"]
    assert ids(host="10.0.0.1") == ["nlu", "tts-1"]
    assert ids(tag="pc2") == ["tts-1"]
    assert ids(agent_type="nlu") == ["nlu"]


def test_change_feed_lets_a_view_follow_the_core(db: Path, clock: FakeClock) -> None:
    core = make_core(db, clock)
    view = RegistryView()
    core.register(reg("a"))
    view.apply_feed(core.changes_since(view.version))  # first sync: log covers version 0
    core.register(reg("b"))
    core.deregister("a")
    feed = core.changes_since(view.version)
    assert [c.op for c in feed.changes] == ["upsert", "delete"]
    view.apply_feed(feed)
    assert view.version == core.version
    assert view.list_agents() == core.list_agents()
    assert core.changes_since(core.version).changes == []


def test_change_feed_falls_back_to_snapshot_when_log_is_exhausted(
    db: Path, clock: FakeClock
) -> None:
    core = make_core(db, clock, RegistrySettings(change_log_size=100))
    for i in range(150):
        core.register(reg(f"a{i % 7}", port=1000 + i))
    feed = core.changes_since(3)
    assert feed.snapshot is not None and feed.changes == []
    view = RegistryView()
    view.apply_feed(feed)
    assert view.list_agents() == core.list_agents()
    # A reader ahead of the registry (e.g. after a restore) also gets a snapshot.
    assert core.changes_since(core.version + 5).snapshot is not None


def test_reloaded_core_serves_snapshot_to_readers_behind_it(db: Path, clock: FakeClock) -> None:
    core = make_core(db, clock)
    core.register(reg("a"))
    core.register(reg("b"))
    reloaded = make_core(db, clock)  # the change log is in memory only
    feed = reloaded.changes_since(1)
    assert feed.snapshot is not None
    assert {r.agent_id for r in feed.snapshot} == {"a", "b"}
