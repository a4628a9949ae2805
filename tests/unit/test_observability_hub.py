"""One hub round with injected sources: hosts, agents, probes, counts in; alerts out."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from prometheus_client.registry import CollectorRegistry

from actors.registry.models import AgentRecord, Heartbeat
from cluster.settings import AlertRuleSpec, ObservabilitySettings, SupervisionSettings
from deployments.observability.alert_models import Notification
from deployments.observability.alert_store import AlertStore
from deployments.observability.hub import HubCore, HubSources
from deployments.observability.perflog import MetricEntry, PerfLog
from deployments.observability.probes import AgentProber
from deployments.observability.state import AgentProbe, HostSample
from tests.unit._observability_helpers import Clock, agent, host_sample


def test_a_round_exports_every_source_and_fires_a_rule(tmp_path: Path) -> None:
    clock = Clock()
    busy = AlertRuleSpec(name="Busy", metric="aisys_host_cpu_used_ratio", threshold=0.5, for_s=2)
    settings = ObservabilitySettings.model_validate(
        {"alerting": {"rules": [busy.model_dump()]}, "probes": {"sweep_interval_s": 10}}
    )
    sent: list[Notification] = []
    probed: list[int] = []

    async def hosts() -> list[HostSample]:
        return [
            host_sample("mainpc", clock.now, cpu=90.0),
            host_sample("pc2", clock.now, ip="10.0.0.2"),
        ]

    async def probe(agents: Sequence[AgentRecord]) -> dict[str, AgentProbe]:
        probed.append(len(agents))
        return {"tts": AgentProbe(agent_id="tts", checked_at=clock.now, up=True, latency_s=0.01)}

    async def counts() -> dict[str, dict[str, int]] | None:
        return {"tts": {"error": 2}}

    async def notify(notifications: list[Notification]) -> None:
        sent.extend(notifications)

    registry = CollectorRegistry()
    perflog = PerfLog(tmp_path / "perf.db", settings.perflog)
    sources = HubSources(hosts, lambda: [agent("tts")], probe, counts, notify)
    hub = HubCore(settings, registry, perflog, AlertStore(tmp_path / "a.db"), sources, clock)
    perflog.log_metric(MetricEntry(agent="tts", action="speak", duration_s=0.3), clock.now)

    async def rounds() -> None:
        for _ in range(4):
            await hub.tick()
            clock.advance(1.0)

    asyncio.run(rounds())
    value = registry.get_sample_value
    assert value("aisys_host_cpu_used_ratio", {"host": "mainpc"}) == 0.9
    assert value("aisys_agent_up", {"agent": "tts", "host": "mainpc"}) == 1.0
    assert value("aisys_agent_errors_total", {"agent": "tts", "severity": "error"}) == 2
    assert value("aisys_perf_actions", {"agent": "tts", "action": "speak"}) == 1
    assert probed == [1]  # the probe period (10 s) had not come round again
    (fired,) = sent
    assert fired.group_labels == {"alertname": "Busy", "host": "mainpc"}
    labels = {"alertname": "Busy", "severity": "warning", "state": "firing", "host": "mainpc"}
    assert value("aisys_alerts", {**labels, "gpu": "", "agent": ""}) == 1.0
    statuses = hub.anomalies.statuses()
    assert {s.labels["host"] for s in statuses if s.metric == "aisys_host_cpu_used_ratio"} == {
        "mainpc",
        "pc2",
    }


def test_the_prober_times_each_probe_and_marks_failures() -> None:
    ticks = iter([0.0, 0.25, 1.0, 1.5])
    marked: list[tuple[str, Heartbeat]] = []

    async def probe(endpoint: str) -> str | None:
        return None if endpoint.endswith(":5710") else "no reply"

    async def mark(agent_id: str, heartbeat: Heartbeat) -> None:
        marked.append((agent_id, heartbeat))

    prober = AgentProber(
        SupervisionSettings(max_concurrent_probes=1), probe, mark, timer=lambda: next(ticks)
    )
    agents = [
        agent("ok"),
        agent("down", health_check_port=5999),
        agent("no-port", health_check_port=None),
    ]
    results = asyncio.run(prober.probe(agents))
    assert sorted(results) == ["down", "ok"]
    assert (results["ok"].up, results["ok"].latency_s) == (True, 0.25)
    assert (results["down"].up, results["down"].latency_s) == (False, 0.5)
    assert [(a, h.status) for a, h in marked] == [("down", "critical")]
