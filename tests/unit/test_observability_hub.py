"""One hub round with injected sources: hosts, agents, probes, counts in; alerts out."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client.registry import CollectorRegistry

from actors.registry.models import AgentRecord, Heartbeat
from cluster.base.settings import AlertRuleSpec, ObservabilitySettings, SupervisionSettings
from deployments.observability.alert_models import Notification
from deployments.observability.alert_store import AlertStore
from deployments.observability.hub import HubCore, HubSources
from deployments.observability.perflog import MetricEntry, PerfLog
from deployments.observability.probes import AgentProber
from deployments.observability.state import AgentProbe, HostSample
from tests.unit._observability_helpers import Clock, agent, host_sample

_FAST_PROBES = {"sweep_interval_s": 5, "probe_timeout_s": 1}


def _hub(
    tmp_path: Path, settings: ObservabilitySettings, sources: HubSources, clock: Clock
) -> tuple[HubCore, CollectorRegistry]:
    registry = CollectorRegistry()
    perflog = PerfLog(tmp_path / "perf.db", settings.perflog)
    hub = HubCore(settings, registry, perflog, AlertStore(tmp_path / "a.db"), sources, clock)
    return hub, registry


async def _no_counts() -> dict[str, dict[str, int]] | None:
    return None


async def _ignore(notifications: list[Notification]) -> None:
    del notifications  # these tests read the alert engine's state instead


def test_a_round_exports_every_source_and_fires_a_rule(tmp_path: Path) -> None:
    clock = Clock()
    busy = AlertRuleSpec(name="Busy", metric="aisys_host_cpu_used_ratio", threshold=0.5, for_s=2)
    settings = ObservabilitySettings.model_validate(
        {"alerting": {"rules": [busy.model_dump()]}, "probes": {"sweep_interval_s": 10}}
    )
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

    registry = CollectorRegistry()
    perflog = PerfLog(tmp_path / "perf.db", settings.perflog)
    sources = HubSources(hosts, lambda: [agent("tts")], probe, counts, _ignore)
    hub = HubCore(settings, registry, perflog, AlertStore(tmp_path / "a.db"), sources, clock)
    perflog.log_metric(MetricEntry(agent="tts", action="speak", duration_s=0.3), clock.now)

    async def rounds() -> None:
        for _ in range(4):
            await hub.tick()
            await hub.wait_for_sweep()
            clock.advance(1.0)

    asyncio.run(rounds())
    value = registry.get_sample_value
    assert value("aisys_host_cpu_used_ratio", {"host": "mainpc"}) == 0.9
    assert value("aisys_agent_up", {"agent": "tts", "host": "mainpc"}) == 1.0
    assert value("aisys_agent_errors_retained", {"agent": "tts", "severity": "error"}) == 2
    assert value("aisys_perf_actions", {"agent": "tts", "action": "speak"}) == 1
    assert probed == [1]  # the probe period (10 s) had not come round again
    (fired,) = hub.alerts.alerts()
    assert (fired.rule, fired.state, fired.labels["host"]) == ("Busy", "firing", "mainpc")
    labels = {"alertname": "Busy", "severity": "warning", "state": "firing", "host": "mainpc"}
    assert value("aisys_alerts", labels) == 1.0
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


def test_a_down_host_keeps_its_agents_labelled_with_its_tag_and_inhibits_them(
    tmp_path: Path,
) -> None:
    """pc2's probe fails, so its sample has no address; its agent, registered by address, keeps
    host="pc2": AgentDown keeps its pending-since time and HostDown inhibits it."""
    clock = Clock()
    start = clock.now
    settings = ObservabilitySettings.model_validate({"probes": _FAST_PROBES})
    sent: list[Notification] = []

    async def hosts() -> list[HostSample]:
        if clock.now < start + 30:
            return [host_sample("pc2", clock.now, ip="10.0.0.2")]
        return [HostSample(host="pc2", taken_at=clock.now, error="probe timed out")]

    async def probe(agents: Sequence[AgentRecord]) -> dict[str, AgentProbe]:
        up = clock.now < start + 10
        return {
            a.agent_id: AgentProbe(agent_id=a.agent_id, checked_at=clock.now, up=up, latency_s=0.01)
            for a in agents
        }

    async def notify(notifications: list[Notification]) -> None:
        sent.extend(notifications)

    agents = [agent("tts", host="10.0.0.2", last_seen_at=start)]
    sources = HubSources(hosts, lambda: agents, probe, _no_counts, notify)
    hub, registry = _hub(tmp_path, settings, sources, clock)

    async def rounds() -> None:
        for _ in range(12):
            await hub.tick()
            await hub.wait_for_sweep()  # its results are evaluated by the next round
            clock.advance(10.0)

    asyncio.run(rounds())
    assert registry.get_sample_value("aisys_host_up", {"host": "pc2"}) == 0.0
    assert registry.get_sample_value("aisys_agent_up", {"agent": "tts", "host": "pc2"}) == 0.0
    alerts = {a.rule: a for a in hub.alerts.alerts()}
    host_down, agent_down = alerts["HostDown"], alerts["AgentDown"]
    assert (host_down.state, agent_down.state) == ("firing", "firing")
    assert agent_down.labels["host"] == "pc2"
    # The probe failed at +10 s, the round at +20 s saw it; the host's failure at +30 s did not
    # restart the for timer.
    assert agent_down.active_at == start + 20
    assert agent_down.inhibited_by == [host_down.fingerprint]
    notified = {a.rule for n in sent for a in n.alerts if n.status == "firing"}
    assert notified == {"HostDown"}


def test_a_sweep_that_never_ends_does_not_hold_up_the_rounds(tmp_path: Path) -> None:
    """Agents that do not answer keep a sweep running past several rounds; the rounds still
    sample hosts and evaluate alerts, no second sweep starts, and the results land when the
    sweep ends."""
    clock = Clock()
    busy = AlertRuleSpec(name="Busy", metric="aisys_host_cpu_used_ratio", threshold=0.5)
    settings = ObservabilitySettings.model_validate(
        {"alerting": {"rules": [busy.model_dump()]}, "probes": _FAST_PROBES}
    )
    cpu = [10.0]
    started: list[float] = []

    async def hosts() -> list[HostSample]:
        return [host_sample("mainpc", clock.now, cpu=cpu[0])]

    async def probe(agents: Sequence[AgentRecord]) -> dict[str, AgentProbe]:
        started.append(clock.now)
        await answered.wait()
        return {
            a.agent_id: AgentProbe(agent_id=a.agent_id, checked_at=clock.now, up=True, latency_s=9)
            for a in agents
        }

    sources = HubSources(hosts, lambda: [agent("tts")], probe, _no_counts, _ignore)
    hub, registry = _hub(tmp_path, settings, sources, clock)
    value = registry.get_sample_value

    async def rounds() -> None:
        for i in range(4):
            cpu[0] = 10.0 + 30.0 * i
            await asyncio.wait_for(hub.tick(), timeout=1.0)
            await asyncio.sleep(0)  # let the sweep task start
            assert value("aisys_host_cpu_used_ratio", {"host": "mainpc"}) == cpu[0] / 100
            clock.advance(10.0)
        assert hub.sweeping
        assert value("aisys_agent_up", {"agent": "tts", "host": "mainpc"}) is None
        answered.set()
        await hub.wait_for_sweep()
        assert value("aisys_agent_up", {"agent": "tts", "host": "mainpc"}) == 1.0
        answered.clear()
        await hub.tick()  # the period has passed and none runs: the next sweep starts
        await asyncio.sleep(0)
        assert hub.sweeping
        await hub.close()
        assert not hub.sweeping

    answered = asyncio.Event()
    asyncio.run(rounds())
    assert started == [Clock().now, Clock().now + 40]  # one sweep ran while it hung
    assert [(a.rule, a.state, a.labels["host"]) for a in hub.alerts.alerts()] == [
        ("Busy", "firing", "mainpc")
    ]


def test_a_stored_rule_the_settings_no_longer_feed_is_reported_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def nothing() -> list[HostSample]:
        return []

    async def no_probe(_: Sequence[AgentRecord]) -> dict[str, AgentProbe]:
        return {}

    sources = HubSources(nothing, list, no_probe, _no_counts, _ignore)
    watched = ObservabilitySettings.model_validate({"anomaly": {"metrics": ["aisys_x"]}})
    hub, _ = _hub(tmp_path, watched, sources, Clock())
    rule = AlertRuleSpec(name="Odd", metric="aisys_x", source="anomaly_score", threshold=5)
    hub.alerts.put_rule(rule, 0.0)
    assert hub.unfed_rules() == {}
    # The same stores under settings that no longer watch aisys_x.
    with caplog.at_level("WARNING", logger="deployments.observability.hub"):
        again, _ = _hub(tmp_path, ObservabilitySettings(), sources, Clock())
    assert list(again.unfed_rules()) == ["Odd"]
    assert "observability.anomaly.metrics" in again.unfed_rules()["Odd"]
    assert any("'Odd'" in r.getMessage() for r in caplog.records)
