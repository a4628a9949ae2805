"""HealthSweep with an injected probe: who is probed, who is marked, and when not."""

from __future__ import annotations

import asyncio

from actors.registry.models import AgentRecord, Health, Heartbeat
from cluster.base.settings import SupervisionSettings
from deployments.core.supervision import HealthSweep


def record(
    agent_id: str,
    health_port: int | None,
    check: str = "none",
    health: Health = Health.UNKNOWN,
    note: str = "",
) -> AgentRecord:
    return AgentRecord.model_validate(
        {
            "agent_id": agent_id,
            "agent_type": agent_id,
            "host": "10.0.0.5",
            "port": 5000,
            "health_check_port": health_port,
            "capabilities": [],
            "tags": [],
            "metadata": {},
            "check": check,
            "ttl_s": 30 if check == "ttl" else None,
            "deregister_critical_after_s": 600,
            "health": health,
            "health_note": note,
            "registered_at": 0,
            "last_seen_at": 0,
            "critical_since": None,
        }
    )


def run_sweep(agents: list[AgentRecord], dead_ports: set[int]):
    probed: list[str] = []
    marks: list[tuple[str, Heartbeat]] = []

    async def probe(endpoint: str) -> str | None:
        probed.append(endpoint)
        port = int(endpoint.rsplit(":", 1)[1])
        return f"health endpoint {endpoint}: no reply" if port in dead_ports else None

    async def mark(agent_id: str, heartbeat: Heartbeat) -> None:
        marks.append((agent_id, heartbeat))

    sweep = HealthSweep(SupervisionSettings(), probe, mark)
    report = asyncio.run(sweep.sweep(agents))
    return report, probed, marks


def test_silent_agents_turn_critical_with_the_reason() -> None:
    report, probed, marks = run_sweep(
        [record("dead", 6001), record("no-port", None), record("alive", 6002)], {6001}
    )
    assert sorted(probed) == ["tcp://10.0.0.5:6001", "tcp://10.0.0.5:6002"]
    assert report.probed == 2 and report.marked_critical == ["dead"]
    assert marks[0][0] == "dead" and marks[0][1].status == "critical"
    assert marks[0][1].note == "health endpoint tcp://10.0.0.5:6001: no reply"


def test_probe_only_agents_recover_but_ttl_agents_wait_for_their_heartbeat() -> None:
    agents = [
        record("probe-only", 6003, check="none", health=Health.CRITICAL, note="old"),
        record("ttl", 6004, check="ttl", health=Health.CRITICAL, note="old"),
        record("already-fine", 6005, check="none", health=Health.PASSING),
    ]
    report, _, marks = run_sweep(agents, set())
    assert report.marked_passing == ["probe-only"]
    assert [(a, h.status) for a, h in marks] == [("probe-only", "passing")]


def test_an_agent_already_critical_for_the_same_reason_is_not_marked_again() -> None:
    note = "health endpoint tcp://10.0.0.5:6006: no reply"
    agents = [record("dead", 6006, health=Health.CRITICAL, note=note)]
    report, probed, marks = run_sweep(agents, {6006})
    assert probed and marks == [] and report.marked_critical == []
