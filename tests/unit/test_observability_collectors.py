"""The hub's collectors, computed at scrape time against a fresh CollectorRegistry."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from actors.registry.models import Health
from cluster.base.settings import AlertingSettings, AlertRuleSpec, AnomalySettings
from deployments.observability.alert_store import AlertStore
from deployments.observability.alerts import AlertEngine
from deployments.observability.anomaly import AnomalyBank
from deployments.observability.collectors import register_collectors
from deployments.observability.series import Sample
from deployments.observability.state import AgentProbe, HostSample, HubState, PerfAggregate
from tests.unit._observability_helpers import MIB, Clock, agent, gpu, host_sample


def _registry(state: HubState, clock: Clock, tmp_path: Path) -> CollectorRegistry:
    registry = CollectorRegistry()
    engine = AlertEngine(AlertingSettings(rules=[]), AlertStore(tmp_path / "a.db"), clock())
    register_collectors(registry, state, AnomalyBank(AnomalySettings()), engine, clock)
    return registry


def test_host_metrics_are_labelled_by_host_and_use_base_units(tmp_path: Path) -> None:
    clock = Clock()
    state = HubState()
    registry = _registry(state, clock, tmp_path)
    state.set_host(host_sample("mainpc", clock.now - 3, cpu=80.0, memory=25.0))
    state.set_host(HostSample(host="pc2", taken_at=clock.now, error="probe timed out"))

    value = registry.get_sample_value
    assert value("aisys_host_up", {"host": "mainpc"}) == 1.0
    assert value("aisys_host_up", {"host": "pc2"}) == 0.0
    assert value("aisys_host_cpu_used_ratio", {"host": "mainpc"}) == 0.8
    assert value("aisys_host_memory_used_ratio", {"host": "mainpc"}) == 0.25
    assert value("aisys_host_memory_available_bytes", {"host": "mainpc"}) == 4096 * MIB
    assert value("aisys_host_memory_total_bytes", {"host": "mainpc"}) == 8192 * MIB
    assert value("aisys_host_disk_used_ratio", {"host": "mainpc"}) == 0.4
    assert value("aisys_host_disk_free_bytes", {"host": "mainpc"}) == 1000 * MIB
    assert value("aisys_host_network_received_bytes_total", {"host": "mainpc"}) == 123
    assert value("aisys_host_network_sent_bytes_total", {"host": "mainpc"}) == 456
    assert value("aisys_host_cpu_used_ratio", {"host": "pc2"}) is None
    info = {"host": "mainpc", "ip": "10.0.0.1", "hostname": "mainpc-box"}
    assert value("aisys_host_info", info) == 1.0
    # Ages are computed at scrape time from the injected clock.
    assert value("aisys_host_sample_age_seconds", {"host": "mainpc"}) == 3.0
    clock.advance(10)
    assert value("aisys_host_sample_age_seconds", {"host": "mainpc"}) == 13.0


def test_measured_gpus_have_every_series(tmp_path: Path) -> None:
    clock = Clock()
    state = HubState()
    registry = _registry(state, clock, tmp_path)
    state.set_host(
        host_sample(
            "mainpc",
            clock.now,
            gpus=[gpu(0, used=3000, total=12000)],
            temperatures={"GPU-0": 61},
            power={"GPU-0": 120.5},
        )
    )
    labels = {"host": "mainpc", "gpu": "0", "name": "RTX test", "source": "nvml"}
    value = registry.get_sample_value
    assert value("aisys_gpu_memory_used_bytes", labels) == 3000 * MIB
    assert value("aisys_gpu_memory_free_bytes", labels) == 9000 * MIB
    assert value("aisys_gpu_memory_used_ratio", labels) == 0.25
    assert value("aisys_gpu_utilization_ratio", labels) == 0.4
    assert value("aisys_gpu_temperature_celsius", labels) == 61.0
    assert value("aisys_gpu_power_watts", labels) == 120.5
    assert value("aisys_gpu_memory_total_bytes", labels) == 12000 * MIB
    assert value("aisys_gpu_devices", {"host": "mainpc", "source": "nvml"}) == 1


def test_no_gpu_means_no_gpu_series_and_declared_ones_show_only_their_size(
    tmp_path: Path,
) -> None:
    clock = Clock()
    state = HubState()
    registry = _registry(state, clock, tmp_path)
    state.set_host(host_sample("mainpc", clock.now))
    state.set_host(host_sample("pc2", clock.now, gpus=[gpu(0, used=0, source="declared")]))
    text = generate_latest(registry).decode()
    measured = [
        line
        for line in text.splitlines()
        if line.startswith("aisys_gpu_")
        and not line.startswith(("aisys_gpu_memory_total", "aisys_gpu_devices"))
    ]
    assert measured == []
    declared = {"host": "pc2", "gpu": "0", "name": "RTX test", "source": "declared"}
    assert registry.get_sample_value("aisys_gpu_memory_total_bytes", declared) == 12000 * MIB
    assert (
        registry.get_sample_value("aisys_gpu_devices", {"host": "pc2", "source": "declared"}) == 1
    )
    assert 'host="mainpc"' not in "".join(
        line for line in text.splitlines() if line.startswith("aisys_gpu_")
    )


def test_agent_metrics_use_the_host_tag_of_the_agent_address(tmp_path: Path) -> None:
    clock = Clock()
    state = HubState()
    registry = _registry(state, clock, tmp_path)
    state.set_host(host_sample("pc2", clock.now, ip="10.0.0.2"))
    state.set_agents(
        [agent("tts", host="10.0.0.2", last_seen_at=clock.now - 7), agent("nlu", host="elsewhere")],
        {
            "tts": AgentProbe(agent_id="tts", checked_at=clock.now - 9, up=True, latency_s=0.002),
            "nlu": AgentProbe(
                agent_id="nlu", checked_at=clock.now, up=False, latency_s=0.5, problem="timeout"
            ),
        },
    )
    state.error_counts = {"tts": {"error": 3, "critical": 1}}
    state.perf = [
        PerfAggregate(agent="tts", action="speak", count=4, mean_duration_s=0.2, max_duration_s=0.5)
    ]
    value = registry.get_sample_value
    tts = {"agent": "tts", "host": "pc2"}
    assert value("aisys_agent_up", tts) == 1.0
    assert value("aisys_agent_up", {"agent": "nlu", "host": "elsewhere"}) == 0.0
    assert value("aisys_agent_probe_latency_seconds", tts) == 0.002
    assert value("aisys_agent_last_heartbeat_age_seconds", tts) == 7.0
    assert value("aisys_agent_health_state", {**tts, "state": "passing"}) == 1.0
    assert value("aisys_agent_health_state", {**tts, "state": "critical"}) == 0.0
    assert value("aisys_agent_errors_retained", {"agent": "tts", "severity": "error"}) == 3
    perf = {"agent": "tts", "action": "speak"}
    assert value("aisys_perf_actions", perf) == 4
    assert value("aisys_perf_action_duration_mean_seconds", perf) == 0.2
    assert value("aisys_perf_action_duration_max_seconds", perf) == 0.5


def test_agents_keep_their_host_tag_while_the_host_probe_fails(tmp_path: Path) -> None:
    clock = Clock()
    state = HubState()
    registry = _registry(state, clock, tmp_path)
    state.set_host(host_sample("pc2", clock.now, ip="10.0.0.2"))
    state.set_agents([agent("tts", host="10.0.0.2"), agent("asr", host="pc2-box")])
    state.set_host(HostSample(host="pc2", taken_at=clock.now, error="probe timed out"))
    state.add_probes(
        {"tts": AgentProbe(agent_id="tts", checked_at=clock.now, up=False, latency_s=1.0)}
    )
    value = registry.get_sample_value
    assert value("aisys_host_up", {"host": "pc2"}) == 0.0
    assert value("aisys_agent_up", {"agent": "tts", "host": "pc2"}) == 0.0
    for agent_id in ("tts", "asr"):  # registered by address, and by hostname
        health = {"agent": agent_id, "host": "pc2", "state": "passing"}
        assert value("aisys_agent_health_state", health) == 1.0


def test_heartbeat_age_counts_from_the_last_sign_of_life(tmp_path: Path) -> None:
    """The registry's last_seen_at also moves when a failed probe marks the agent critical;
    the exported age counts from the last heartbeat that was not critical or the last answered
    probe, whichever is later."""
    clock = Clock()
    state = HubState()
    registry = _registry(state, clock, tmp_path)
    start = clock.now
    labels = {"agent": "tts", "host": "10.0.0.9"}

    def age() -> float | None:
        return registry.get_sample_value("aisys_agent_last_heartbeat_age_seconds", labels)

    def probe(up: bool) -> dict[str, AgentProbe]:
        return {"tts": AgentProbe(agent_id="tts", checked_at=clock.now, up=up, latency_s=0.1)}

    state.set_agents([agent("tts", host="10.0.0.9", last_seen_at=start - 50)])
    assert age() == 50.0
    state.add_probes(probe(up=True))  # a probe answer is a sign of life the registry lacks
    assert age() == 0.0
    clock.advance(20)
    assert age() == 20.0
    # The next probe fails and the sweep marks the agent critical: last_seen_at is now.
    state.add_probes(probe(up=False))
    critical = agent("tts", host="10.0.0.9", health=Health.CRITICAL, last_seen_at=clock.now)
    state.set_agents([critical])
    clock.advance(10)
    assert age() == 30.0
    # The agent's own heartbeat passes again.
    state.set_agents([agent("tts", host="10.0.0.9", last_seen_at=clock.now - 2)])
    assert age() == 2.0
    # A hub that has only ever seen the agent critical, and no probe answer, shows no age.
    fresh = HubState()
    fresh_registry = _registry(fresh, clock, tmp_path / "fresh")
    fresh.set_agents([critical])
    fresh.add_probes(probe(up=False))
    assert fresh_registry.get_sample_value("aisys_agent_up", labels) == 0.0
    assert fresh_registry.get_sample_value("aisys_agent_last_heartbeat_age_seconds", labels) is None
    # A deregistered agent's times are forgotten.
    state.set_agents([])
    state.set_agents([critical])
    assert age() is None


def test_error_counts_are_a_gauge_of_what_the_error_bus_retains(tmp_path: Path) -> None:
    clock = Clock()
    state = HubState()
    registry = _registry(state, clock, tmp_path)
    state.error_counts = {"tts": {"error": 3}}
    text = generate_latest(registry).decode()
    assert "# TYPE aisys_agent_errors_retained gauge" in text
    assert "aisys_agent_errors_total" not in text
    state.error_counts = {"tts": {"error": 1}}  # retention pruned two: the value goes down
    value = registry.get_sample_value
    assert value("aisys_agent_errors_retained", {"agent": "tts", "severity": "error"}) == 1


def test_alert_series_carry_every_label_of_their_alert(tmp_path: Path) -> None:
    clock = Clock()
    full = AlertRuleSpec(
        name="DiskFull", metric="x_disk_used_ratio", threshold=0.9, labels={"team": "ops"}
    )
    engine = AlertEngine(AlertingSettings(rules=[full]), AlertStore(tmp_path / "a.db"), clock())
    registry = CollectorRegistry()
    register_collectors(registry, HubState(), AnomalyBank(AnomalySettings()), engine, clock)
    value = registry.get_sample_value
    assert value("aisys_alerts", {"alertname": "DiskFull"}) is None
    samples = [
        Sample("x_disk_used_ratio", (("host", "pc2"), ("mount", mount)), 0.95)
        for mount in ("/data", "/models")
    ]
    engine.evaluate(samples, clock())
    base = {"alertname": "DiskFull", "severity": "warning", "state": "firing", "host": "pc2"}
    for mount in ("/data", "/models"):
        assert value("aisys_alerts", {**base, "mount": mount, "team": "ops"}) == 1.0
    text = generate_latest(registry).decode()
    assert len([line for line in text.splitlines() if line.startswith("aisys_alerts{")]) == 2
    # An alert without a label the other has shows it empty.
    engine.evaluate([Sample("x_disk_used_ratio", (("host", "pc2"),), 0.95), samples[0]], clock())
    assert value("aisys_alerts", {**base, "mount": "", "team": "ops"}) == 1.0


def test_host_counters_read_this_machine_and_no_power_without_nvml() -> None:
    import pynvml

    from actors.probe.counters import read_counters

    counters = read_counters("mainpc")
    assert counters.host == "mainpc"
    assert counters.network_received_bytes >= 0 and counters.network_sent_bytes >= 0
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        assert counters.gpu_power_watts == {}
    else:
        pynvml.nvmlShutdown()
