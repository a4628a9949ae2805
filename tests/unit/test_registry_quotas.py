"""Registry quotas: legacy registrations per source and in total, metadata bytes, legacy TTL
expiry, and a change log bounded in bytes (with a snapshot for followers that fall behind)."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.registry.core import RegistryCore, metadata_bytes
from actors.registry.models import Health, Heartbeat, Registration
from actors.registry.store import SqliteRegistryStore
from actors.registry.view import RegistryView
from cluster.base.errors import AgentNotFound, QuotaExceeded
from cluster.base.settings import RegistrySettings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def make_core(db: Path, clock: FakeClock, **settings: object) -> RegistryCore:
    values: dict[str, object] = {"deregister_critical_after_s": 60, "change_log_size": 100}
    values.update(settings)
    return RegistryCore(RegistrySettings.model_validate(values), SqliteRegistryStore(db), clock)


def reg(agent_id: str, **fields: object) -> Registration:
    values: dict[str, object] = {"agent_id": agent_id, "host": "10.0.0.5", "port": 5709}
    values.update({"check": "none", "tags": ["legacy"]})
    values.update(fields)
    return Registration.model_validate(values)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "registry.sqlite3"


def test_settings_have_safe_defaults() -> None:
    s = RegistrySettings()
    assert s.legacy_agents_max == 2048
    assert s.legacy_agents_per_source == 256
    assert s.metadata_max_bytes == 8 * 1024
    assert s.legacy_ttl_s == 86_400
    assert s.change_log_max_bytes == 16 * 1024 * 1024


def test_per_source_cap_refuses_a_new_agent_naming_limit_and_setting(
    db: Path, clock: FakeClock
) -> None:
    core = make_core(db, clock, legacy_agents_per_source=3, legacy_agents_max=10)
    for i in range(3):
        core.register(reg(f"a{i}"), source="10.0.0.7")
    with pytest.raises(QuotaExceeded) as caught:
        core.register(reg("a3"), source="10.0.0.7")
    text = str(caught.value)
    assert "from 10.0.0.7" in text and "limit is 3" in text
    assert "AISYS_CORE__REGISTRY__LEGACY_AGENTS_PER_SOURCE" in text
    with pytest.raises(AgentNotFound):
        core.get("a3")
    # Re-registering one it holds is taken; another source still has room.
    core.register(reg("a1", port=6000), source="10.0.0.7")
    assert core.get("a1").port == 6000
    core.register(reg("b0"), source="10.0.0.8")
    assert (core.legacy_count("10.0.0.7"), core.legacy_count("10.0.0.8")) == (3, 1)


def test_total_cap_counts_every_source_and_frees_on_deregister(db: Path, clock: FakeClock) -> None:
    core = make_core(db, clock, legacy_agents_per_source=100, legacy_agents_max=4)
    for i in range(4):
        core.register(reg(f"a{i}"), source=f"10.0.0.{i}")
    with pytest.raises(QuotaExceeded, match="AISYS_CORE__REGISTRY__LEGACY_AGENTS_MAX"):
        core.register(reg("a4"), source="10.0.0.99")
    # HTTP registrations (no source) are not legacy ones and are not capped by it.
    core.register(reg("http-agent", check="ttl"))
    core.deregister("a0")
    core.register(reg("a4"), source="10.0.0.99")
    assert core.legacy_count() == 4
    assert core.get("a4").source == "10.0.0.99"


def test_moving_an_agent_between_sources_moves_its_count(db: Path, clock: FakeClock) -> None:
    core = make_core(db, clock, legacy_agents_per_source=1)
    core.register(reg("a"), source="10.0.0.1")
    core.register(reg("a"), source="10.0.0.2")
    assert (core.legacy_count("10.0.0.1"), core.legacy_count("10.0.0.2")) == (0, 1)
    core.register(reg("b"), source="10.0.0.1")
    with pytest.raises(QuotaExceeded):
        core.register(reg("b"), source="10.0.0.2")  # 10.0.0.2 holds "a" already


def test_counts_survive_a_restart(db: Path, clock: FakeClock) -> None:
    core = make_core(db, clock, legacy_agents_per_source=2)
    core.register(reg("a"), source="10.0.0.1")
    core.register(reg("b"), source="10.0.0.1")
    reloaded = make_core(db, clock, legacy_agents_per_source=2)
    assert reloaded.legacy_count("10.0.0.1") == 2
    with pytest.raises(QuotaExceeded):
        reloaded.register(reg("c"), source="10.0.0.1")


def test_metadata_over_the_limit_is_refused_measured_as_json(db: Path, clock: FakeClock) -> None:
    core = make_core(db, clock, metadata_max_bytes=1024)
    fits = {"blob": "x" * (1024 - len('{"blob":""}'))}
    assert metadata_bytes(fits) == 1024
    core.register(reg("a", metadata=fits), source="10.0.0.1")
    too_big = {"blob": "é" * 600}  # 600 characters, 1200 bytes of UTF-8
    with pytest.raises(QuotaExceeded) as caught:
        core.register(reg("b", metadata=too_big))
    assert "1211 bytes of JSON" in str(caught.value)
    assert "AISYS_CORE__REGISTRY__METADATA_MAX_BYTES" in str(caught.value)


def test_legacy_registration_expires_without_evidence_and_is_then_removed(
    db: Path, clock: FakeClock
) -> None:
    core = make_core(db, clock, legacy_ttl_s=3600, deregister_critical_after_s=60)
    core.register(reg("legacy-a"), source="10.0.0.1")
    core.register(reg("legacy-b"), source="10.0.0.1")
    core.register(reg("imported"))  # check none, no source: never expires
    core.register(reg("probed", health_check_port=5710), source="10.0.0.2")
    core.heartbeat("probed", Heartbeat(status="passing", note="health_check ok"))
    clock.now += 3000
    core.heartbeat("legacy-b", Heartbeat(status="passing"))  # evidence keeps it
    clock.now += 601
    [change] = core.sweep()
    assert change.agent_id == "legacy-a"
    assert core.get("legacy-a").health is Health.CRITICAL
    assert "legacy registration TTL of 3600s expired" in core.get("legacy-a").health_note
    clock.now += 60
    [removed] = core.sweep()
    assert (removed.op, removed.agent_id) == ("delete", "legacy-a")
    assert core.legacy_count("10.0.0.1") == 1
    # Probes keep "probed" passing (they mark changes only, so its last_seen_at is old); a
    # passing heartbeat without a health port to probe is evidence for legacy_ttl_s only.
    assert {r.agent_id for r in core.list_agents()} == {"legacy-b", "imported", "probed"}
    clock.now += 86_400
    assert {c.agent_id for c in core.sweep()} == {"legacy-b"}


def test_change_log_is_bounded_in_bytes_and_followers_get_a_snapshot(
    db: Path, clock: FakeClock
) -> None:
    limit = 64 * 1024
    core = make_core(
        db, clock, change_log_size=10_000, change_log_max_bytes=limit, metadata_max_bytes=4096
    )
    view = RegistryView()
    view.apply_feed(core.changes_since(0))
    for i in range(200):  # ~4 KiB each: 800 KiB of changes
        core.register(reg(f"a{i % 10}", metadata={"blob": "x" * 4000}), source="10.0.0.1")
    assert core.log_bytes <= limit
    assert 5 < core.log_length < 20
    feed = core.changes_since(view.version)
    assert feed.snapshot is not None
    view.apply_feed(feed)
    assert view.list_agents() == core.list_agents()
    recent = core.changes_since(core.version - 2)
    assert [c.version for c in recent.changes] == [core.version - 1, core.version]
