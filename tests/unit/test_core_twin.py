"""DigitalTwin: history, stale hosts, simulate_load thresholds, services from Serve details."""

from __future__ import annotations

import asyncio

import pytest

from actors.probe.models import GpuReading, HostReading
from actors.probe.system import SystemReading
from actors.resources.models import GpuMemoryUse, LeaseList, LeaseUsage, UsageReport
from cluster.base.errors import ClusterError, UnknownHost
from cluster.base.settings import TwinSettings
from deployments.core.sampler import HostSampler
from deployments.core.twin import DigitalTwin, services_from_details
from deployments.core.twin_models import ResourceCheck, SimulateLoadRequest
from tests.unit._resources_helpers import RTX3060, FakeClock, recorded

UUID = "GPU-9e07d2a4-61b3-4f0a-8c55-3060b0000001"


def reading(
    cpu: float = 10.0, memory_percent: float = 50.0, gpus: list[GpuReading] | None = None
) -> HostReading:
    return HostReading(
        host="pc2",
        taken_at=1000.0,
        gpus=gpus if gpus is not None else recorded(RTX3060).read().gpus,
        cpu_percent=cpu,
        memory_percent=memory_percent,
        memory_available_mb=16_000,
    )


def system(total_mb: int = 32_000) -> SystemReading:
    return SystemReading(
        host="pc2",
        ip="10.0.0.2",
        hostname="pc2",
        cpu_count=16,
        memory_total_mb=total_mb,
        disk_path="/",
        disk_percent=40.0,
        disk_free_mb=100_000,
        gpu_temperatures_c={UUID: 55},
    )


def twin(**settings: float) -> DigitalTwin:
    return DigitalTwin(TwinSettings.model_validate(settings), ["mainpc", "pc2"], FakeClock())


def test_history_keeps_the_last_n_samples_and_the_host_shows_gpu_temperatures() -> None:
    model = twin(history_length=3)
    for cpu in [1.0, 2.0, 3.0, 4.0]:
        model.record(reading(cpu=cpu), system())
    host = model.host("pc2")
    assert [s.cpu_percent for s in host.history] == [2.0, 3.0, 4.0]
    assert host.history[-1].vram_used_mb == 310 and host.history[-1].disk_percent == 40.0
    assert host.ip == "10.0.0.2" and host.cpu_count == 16 and host.error is None
    assert [(g.name, g.temperature_c, g.source) for g in host.gpus] == [
        ("NVIDIA GeForce RTX 3060", 55, "recorded")
    ]


def test_unsampled_and_failed_hosts_say_so() -> None:
    model = twin()
    assert model.host("mainpc").error == "not sampled yet"
    model.record(reading(), system())
    model.record_error("pc2", "probe did not answer: GetTimeoutError")
    host = model.host("pc2")
    assert host.error == "probe did not answer: GetTimeoutError"
    assert host.cpu_percent == 10.0, "the last figures stay"
    with pytest.raises(UnknownHost):
        model.host("pc3")
    with pytest.raises(ClusterError, match="not been sampled"):
        model.simulate_load(SimulateLoadRequest(host="mainpc"))


@pytest.mark.parametrize(
    ("request_fields", "recommendation", "verdicts"),
    [
        ({"vram_mb": 4000}, "proceed", {"cpu": "ok", "ram": "ok", "vram": "ok"}),
        # 310 used + 11 400 = 11 710 of 12 288 MiB is 95.3 % > 95 %: deny (legacy threshold).
        ({"vram_mb": 11_400}, "deny_insufficient_resources", {"vram": "deny"}),
        ({"vram_mb": 11_300}, "proceed", {"vram": "ok"}),  # 94.5 %
        # CPU 10 % + 81 % = 91 % > 90 %: caution, not deny.
        ({"cpu_percent": 81}, "caution_high_cpu", {"cpu": "caution"}),
        ({"cpu_percent": 80}, "proceed", {"cpu": "ok"}),
        # 16 000 of 32 000 MB used; + 12 900 = 90.3 % > 90 %: deny.
        ({"ram_mb": 12_900}, "deny_insufficient_resources", {"ram": "deny"}),
        ({"ram_mb": 12_700}, "proceed", {"ram": "ok"}),
        ({"cpu_percent": 95, "ram_mb": 20_000}, "deny_insufficient_resources", {"cpu": "caution"}),
    ],
)
def test_simulate_load_uses_the_legacy_thresholds(
    request_fields: dict[str, float], recommendation: str, verdicts: dict[str, str]
) -> None:
    model = twin()
    model.record(reading(), system())
    result = model.simulate_load(SimulateLoadRequest(host="pc2", **request_fields))
    assert result.recommendation == recommendation
    checks: dict[str, ResourceCheck] = {c.resource: c for c in result.checks}
    for resource, verdict in verdicts.items():
        assert checks[resource].verdict == verdict
    assert len(result.reasons) == sum(c.verdict != "ok" for c in result.checks)


def test_cpu_projection_is_capped_at_100_percent() -> None:
    model = twin()
    model.record(reading(cpu=70), system())
    cpu = model.simulate_load(SimulateLoadRequest(host="pc2", cpu_percent=80)).checks[0]
    assert (cpu.resource, cpu.projected) == ("cpu", 100.0)


def test_vram_on_a_host_without_gpus_is_denied_with_the_reason() -> None:
    model = twin()
    model.record(reading(gpus=[]), system())
    result = model.simulate_load(SimulateLoadRequest(host="pc2", vram_mb=1))
    assert result.recommendation == "deny_insufficient_resources"
    assert "has no GPU" in result.reasons[0]
    assert model.simulate_load(SimulateLoadRequest(host="pc2")).recommendation == "proceed"


def test_thresholds_are_settings() -> None:
    model = twin(cpu_caution_percent=50, ram_deny_percent=99, vram_deny_percent=10)
    model.record(reading(cpu=45), system())
    result = model.simulate_load(SimulateLoadRequest(host="pc2", cpu_percent=10, vram_mb=1000))
    verdicts = {c.resource: c.verdict for c in result.checks}
    assert verdicts == {"cpu": "caution", "ram": "ok", "vram": "deny"}


def test_services_come_from_serve_details_with_the_pinned_host() -> None:
    details = {
        "applications": {
            "core": {
                "status": "RUNNING",
                "message": "",
                "route_prefix": "/core",
                "deployed_app_config": {
                    "name": "core",
                    "deployments": [
                        {
                            "name": "CoreOrchestrator",
                            "ray_actor_options": {"resources": {"mainpc": 0.001}},
                        }
                    ],
                },
                "deployments": {
                    "CoreOrchestrator": {
                        "status": "HEALTHY",
                        "replicas": [
                            {"replica_id": "r1", "state": "RUNNING", "node_ip": "10.0.0.1"},
                            {"replica_id": "r2", "state": "STARTING", "node_ip": "10.0.0.1"},
                        ],
                    }
                },
            }
        }
    }
    (service,) = services_from_details(details, {"mainpc", "pc2"})
    (deployment,) = service.deployments
    assert (service.name, service.status, service.route_prefix) == ("core", "RUNNING", "/core")
    assert deployment.host_tag == "mainpc"
    assert deployment.replica_states == {"RUNNING": 1, "STARTING": 1}
    assert deployment.replica_ids == ["r1", "r2"] and deployment.node_ips == ["10.0.0.1"]
    assert services_from_details({}, {"mainpc"}) == []


def usage_report() -> UsageReport:
    rows = [
        LeaseUsage(lease_id="l1", owner="worker:w", host="pc2", gpu_index=0, leased_mb=2000,
                   used_mb=2600, pids=[7], over=True),
        LeaseUsage(lease_id="l2", owner="tts", host="mainpc", gpu_index=0, leased_mb=500,
                   used_mb=None, pids=[], over=False),
    ]  # fmt: skip
    others = [GpuMemoryUse(host="pc2", gpu_index=0, pid=2210, used_mb=None)]
    return UsageReport(leases=rows, unexplained=others, learned_peaks={})


def test_each_gpu_shows_its_leases_leased_vs_used_and_what_no_lease_explains() -> None:
    model = twin()
    model.record(reading(), system())
    (gpu,) = model.host("pc2").gpus
    assert (gpu.leases, gpu.unexplained) == (None, None), "unknown before the first report"
    assert model.host("pc2").usage_error == "not read yet"
    model.record_usage(usage_report())
    host = model.host("pc2")
    (gpu,) = host.gpus
    assert host.usage_error is None
    assert gpu.leases is not None
    assert [(u.lease_id, u.leased_mb, u.used_mb, u.over) for u in gpu.leases] == [
        ("l1", 2000, 2600, True)
    ]
    assert gpu.unexplained is not None and [(p.pid, p.used_mb) for p in gpu.unexplained] == [
        (2210, None)
    ]
    # The scheduler stops answering: the last report stays, marked stale.
    model.record_usage(None, "ResourceScheduler did not answer: GetTimeoutError")
    host = model.host("pc2")
    assert host.usage_error == "ResourceScheduler did not answer: GetTimeoutError"
    assert host.gpus[0].leases is not None and host.gpus[0].leases[0].lease_id == "l1"


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (ValueError("Failed to look up actor"), "ResourceScheduler did not answer: ValueError"),
        (LeaseList(granted=[], queued=[]), "the ResourceScheduler measured no usage"),
        (LeaseList(granted=[], queued=[], usage=usage_report()), None),
    ],
)
def test_the_sampler_reads_the_schedulers_usage_into_the_twin(
    answer: LeaseList | Exception, error: str | None
) -> None:
    model = twin()
    model.record(reading(), system())

    async def leases() -> LeaseList:
        if isinstance(answer, Exception):
            raise answer
        return answer

    sampler = HostSampler(model, {}, TwinSettings(), "/", leases)
    asyncio.run(sampler.sample_once())
    host = model.host("pc2")
    assert host.usage_error == error
    assert (host.gpus[0].leases is not None) == (error is None)
