"""The exporter's lease, queue, breaker and error-rate series, and the default rules on them."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.registry import CollectorRegistry

from actors.resources.models import (
    GpuMemoryUse,
    LeaseGrant,
    LeaseList,
    LeaseRequest,
    LeaseUsage,
    QueuedLease,
    UsageReport,
)
from cluster.base.settings import AlertingSettings
from deployments.core.models import BreakerState, BreakerView, QueueView
from deployments.observability.alert_store import AlertStore
from deployments.observability.alerts import AlertEngine
from deployments.observability.series import current_samples
from deployments.observability.service_series import ServicesCollector
from deployments.observability.state import HubState, ServicesSample
from tests.unit._observability_helpers import MIB, Clock, gpu, host_sample


def grant(lease_id: str, gpu_index: int, vram_mb: int, at: float) -> LeaseGrant:
    return LeaseGrant(
        lease_id=lease_id,
        owner="tts",
        vram_mb=vram_mb,
        priority=10,
        exclusive=False,
        host="pc2",
        gpu_index=gpu_index,
        gpu_uuid=f"GPU-{gpu_index}",
        num_gpus=0.1,
        resources={"pc2": 0.001},
        requested_at=at,
        granted_at=at,
        ttl_s=60,
        expires_at=at + 60,
        last_used_at=at,
    )


def sample(clock: Clock, **parts: object) -> ServicesSample:
    now = clock()
    full: dict[str, object] = {
        "taken_at": now,
        "error_window_s": 300.0,
        "leases": LeaseList(
            granted=[grant("l1", 0, 1000, now), grant("l2", 0, 500, now)],
            queued=[
                QueuedLease(
                    lease_id="q1",
                    request=LeaseRequest(owner="llm", vram_mb=20000, host="pc2"),
                    requested_at=now - 400,
                    wait_until=now + 100,
                    seq=1,
                )
            ],
        ),
        "requests": QueueView(size=3, max_size=100, in_flight=1, paused_until=None, entries=[]),
        "breakers": [
            BreakerView(
                downstream="agent:a",
                state=BreakerState.OPEN,
                consecutive_failures=3,
                opened_at=now,
                retry_at=now + 30,
            ),
            BreakerView(
                downstream="agent:b",
                state=BreakerState.CLOSED,
                consecutive_failures=0,
                opened_at=None,
                retry_at=None,
            ),
        ],
        "recent_errors": {"a": 90},
    }
    full.update(parts)
    return ServicesSample.model_validate(full)


def registry_of(state: HubState, clock: Clock) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(ServicesCollector(state, clock))
    return registry


def test_leases_queue_breakers_and_error_rates_are_exported() -> None:
    clock = Clock()
    state = HubState()
    state.set_host(host_sample("pc2", clock(), gpus=[gpu(0), gpu(1)]))
    state.error_counts = {"a": {"error": 120}, "b": {"warning": 4}}
    state.services = sample(clock)
    value = registry_of(state, clock).get_sample_value
    assert value("aisys_leases_active", {"host": "pc2", "gpu": "0"}) == 2
    assert value("aisys_leased_vram_bytes", {"host": "pc2", "gpu": "0"}) == 1500 * MIB
    assert value("aisys_leases_active", {"host": "pc2", "gpu": "1"}) == 0  # known: none
    assert value("aisys_lease_queue_length") == 1
    wait = {"lease_id": "q1", "owner": "llm", "host": "pc2"}
    assert value("aisys_lease_queue_wait_seconds", wait) == 400
    assert value("aisys_request_queue_length") == 3
    assert value("aisys_request_queue_capacity") == 100
    assert value("aisys_requests_in_flight") == 1
    assert value("aisys_breaker_open", {"downstream": "agent:a"}) == 1
    assert value("aisys_breaker_open", {"downstream": "agent:b"}) == 0
    assert value("aisys_breaker_state", {"downstream": "agent:a", "state": "open"}) == 1
    assert value("aisys_breaker_consecutive_failures", {"downstream": "agent:a"}) == 3
    assert value("aisys_error_rate_per_second", {"agent": "a"}) == 90 / 300
    assert value("aisys_error_rate_per_second", {"agent": "b"}) == 0
    for source in ("leases", "requests", "breakers", "errors"):
        assert value("aisys_service_source_up", {"source": source}) == 1


def test_a_service_that_did_not_answer_has_no_series_not_zeros() -> None:
    clock = Clock()
    state = HubState()
    value = registry_of(state, clock).get_sample_value
    assert value("aisys_service_source_up", {"source": "leases"}) is None  # no round yet
    state.services = sample(clock, leases=None, requests=None, recent_errors=None)
    state.error_counts = {"a": {"error": 1}}
    assert value("aisys_service_source_up", {"source": "leases"}) == 0
    assert value("aisys_service_source_up", {"source": "breakers"}) == 1
    assert value("aisys_lease_queue_length") is None
    assert value("aisys_request_queue_length") is None
    assert value("aisys_error_rate_per_second", {"agent": "a"}) is None
    assert value("aisys_breaker_open", {"downstream": "agent:a"}) == 1


def test_default_rules_fire_for_a_long_wait_an_open_breaker_and_an_error_spike(
    tmp_path: Path,
) -> None:
    clock = Clock()
    state = HubState()
    state.services = sample(clock)
    registry = registry_of(state, clock)
    settings = AlertingSettings()
    engine = AlertEngine(settings, AlertStore(tmp_path / "alerts.db"), now=clock())
    wanted = {rule.metric for rule in engine.rules()}
    engine.evaluate(current_samples(registry, wanted), clock())
    clock.advance(61)
    engine.evaluate(current_samples(registry, wanted), clock())
    firing = {(a.rule, a.state) for a in engine.alerts()}
    assert ("LeaseWaitingTooLong", "firing") in firing
    assert ("BreakerOpen", "firing") in firing
    assert ("ErrorRateSpike", "firing") in firing
    (breaker,) = [a for a in engine.alerts() if a.rule == "BreakerOpen"]
    assert breaker.labels["downstream"] == "agent:a"
    # The wait ends (the request was granted or withdrawn): the alert resolves.
    state.services = sample(clock, leases=LeaseList(granted=[], queued=[]))
    engine.evaluate(current_samples(registry, wanted), clock())
    (lease,) = [a for a in engine.alerts() if a.rule == "LeaseWaitingTooLong"]
    assert lease.state == "resolved"


def with_usage(clock: Clock, l1_used_mb: int, l1_over: bool) -> ServicesSample:
    usage = UsageReport(
        leases=[
            LeaseUsage(lease_id="l1", owner="worker:w", host="pc2", gpu_index=0, leased_mb=1000,
                       used_mb=l1_used_mb, pids=[7], over=l1_over),
            LeaseUsage(lease_id="l2", owner="tts", host="pc2", gpu_index=0, leased_mb=500,
                       used_mb=None, pids=[], over=False),
        ],
        unexplained=[GpuMemoryUse(host="pc2", gpu_index=0, pid=99, used_mb=300)],
        learned_peaks={},
    )  # fmt: skip
    base = sample(clock)
    assert base.leases is not None
    return base.model_copy(update={"leases": base.leases.model_copy(update={"usage": usage})})


def test_measured_vram_per_lease_and_unexplained_memory_are_exported() -> None:
    clock = Clock()
    state = HubState()
    state.services = with_usage(clock, 1200, False)
    value = registry_of(state, clock).get_sample_value
    labels = {"lease_id": "l1", "owner": "worker:w", "host": "pc2", "gpu": "0"}
    assert value("aisys_lease_used_vram_bytes", labels) == 1200 * MIB
    assert value("aisys_lease_used_ratio", labels) == 1.2
    assert value("aisys_lease_over_use", labels) == 0
    # Not measured: no series, never a zero.
    for name in ("aisys_lease_used_vram_bytes", "aisys_lease_used_ratio", "aisys_lease_over_use"):
        assert value(name, {**labels, "lease_id": "l2", "owner": "tts"}) is None
    assert value("aisys_unexplained_vram_bytes", {"host": "pc2", "gpu": "0", "pid": "99"}) == (
        300 * MIB
    )


def test_the_default_rule_fires_for_a_lease_used_beyond_its_tolerance(tmp_path: Path) -> None:
    clock = Clock()
    state = HubState()
    state.services = with_usage(clock, 1500, True)
    registry = registry_of(state, clock)
    engine = AlertEngine(AlertingSettings(), AlertStore(tmp_path / "alerts.db"), now=clock())
    wanted = {rule.metric for rule in engine.rules()}

    def over_use() -> list[tuple[str, dict[str, str]]]:
        engine.evaluate(current_samples(registry, wanted), clock())
        return [(a.state, a.labels) for a in engine.alerts() if a.rule == "LeaseOverUse"]

    ((state_now, labels),) = over_use()
    assert state_now == "pending"
    assert (labels["lease_id"], labels["owner"], labels["gpu"]) == ("l1", "worker:w", "0")
    clock.advance(31)
    assert [s for s, _ in over_use()] == ["firing"]
    # Back within its lease plus the tolerance: resolved.
    state.services = with_usage(clock, 1100, False)
    assert [s for s, _ in over_use()] == ["resolved"]
