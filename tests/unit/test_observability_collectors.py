"""The hub's collectors, computed at scrape time against a fresh CollectorRegistry."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from cluster.settings import AlertingSettings, AnomalySettings
from deployments.observability.alert_store import AlertStore
from deployments.observability.alerts import AlertEngine
from deployments.observability.anomaly import AnomalyBank
from deployments.observability.collectors import register_collectors
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
    labels = {"host": "mainpc", "gpu": "0", "name": "RTX test"}
    value = registry.get_sample_value
    assert value("aisys_gpu_memory_used_bytes", labels) == 3000 * MIB
    assert value("aisys_gpu_memory_free_bytes", labels) == 9000 * MIB
    assert value("aisys_gpu_memory_used_ratio", labels) == 0.25
    assert value("aisys_gpu_utilization_ratio", labels) == 0.4
    assert value("aisys_gpu_temperature_celsius", labels) == 61.0
    assert value("aisys_gpu_power_watts", labels) == 120.5
    assert value("aisys_gpu_memory_total_bytes", {**labels, "source": "nvml"}) == 12000 * MIB
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
            "tts": AgentProbe(agent_id="tts", checked_at=clock.now, up=True, latency_s=0.002),
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
    assert value("aisys_agent_errors_total", {"agent": "tts", "severity": "error"}) == 3
    perf = {"agent": "tts", "action": "speak"}
    assert value("aisys_perf_actions", perf) == 4
    assert value("aisys_perf_action_duration_mean_seconds", perf) == 0.2
    assert value("aisys_perf_action_duration_max_seconds", perf) == 0.5


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
