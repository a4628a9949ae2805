"""Alert rules with Prometheus states and Alertmanager grouping, silences and inhibition."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.errors import AlertRuleNotFound, SilenceNotFound
from cluster.settings import AlertingSettings, AlertRuleSpec
from deployments.observability.alert_models import SilenceRequest
from deployments.observability.alert_store import AlertStore
from deployments.observability.alerts import AlertEngine
from deployments.observability.series import Sample, SeriesKey

T0 = 1_000.0
HOT = AlertRuleSpec(
    name="HostHot", metric="cpu", op=">", threshold=0.9, for_s=30, severity="critical"
)


def cpu(host: str, value: float) -> Sample:
    return Sample("cpu", (("host", host),), value)


def engine(tmp_path: Path, **settings: object) -> AlertEngine:
    values = {"rules": [HOT], "repeat_interval_s": 3600.0, **settings}
    return AlertEngine(AlertingSettings.model_validate(values), AlertStore(tmp_path / "a.db"), T0)


def test_a_series_goes_pending_firing_resolved_with_one_notification_each(tmp_path: Path) -> None:
    alerts = engine(tmp_path)
    assert alerts.evaluate([cpu("pc2", 0.5)], T0) == []
    assert alerts.alerts() == []

    assert alerts.evaluate([cpu("pc2", 0.95)], T0 + 10) == []
    (pending,) = alerts.alerts()
    assert (pending.state, pending.active_at) == ("pending", T0 + 10)
    assert alerts.evaluate([cpu("pc2", 0.97)], T0 + 39) == []

    (fired,) = alerts.evaluate([cpu("pc2", 0.97)], T0 + 40)
    assert fired.status == "firing"
    assert fired.group_labels == {"alertname": "HostHot", "host": "pc2"}
    assert [a.state for a in fired.alerts] == ["firing"]
    assert fired.alerts[0].labels == {"alertname": "HostHot", "host": "pc2", "severity": "critical"}
    assert alerts.evaluate([cpu("pc2", 0.97)], T0 + 50) == []  # no repeat before the interval

    (resolved,) = alerts.evaluate([cpu("pc2", 0.2)], T0 + 60)
    assert resolved.status == "resolved"
    assert [(a.state, a.resolved_at) for a in resolved.alerts] == [("resolved", T0 + 60)]
    assert alerts.evaluate([cpu("pc2", 0.2)], T0 + 70) == []


def test_a_pending_alert_that_clears_is_dropped_without_notification(tmp_path: Path) -> None:
    alerts = engine(tmp_path)
    alerts.evaluate([cpu("pc2", 0.95)], T0)
    assert alerts.evaluate([cpu("pc2", 0.1)], T0 + 5) == []
    assert alerts.alerts() == []


def test_firing_groups_repeat_after_the_interval(tmp_path: Path) -> None:
    alerts = engine(tmp_path, repeat_interval_s=100.0, rules=[HOT.model_copy(update={"for_s": 0})])
    assert len(alerts.evaluate([cpu("pc2", 0.95)], T0)) == 1
    assert alerts.evaluate([cpu("pc2", 0.95)], T0 + 99) == []
    assert len(alerts.evaluate([cpu("pc2", 0.95)], T0 + 100)) == 1


def test_alerts_are_grouped_by_the_group_by_labels(tmp_path: Path) -> None:
    rule = HOT.model_copy(update={"for_s": 0})
    alerts = engine(tmp_path, rules=[rule], group_by=["alertname"])
    (group,) = alerts.evaluate([cpu("pc2", 0.95), cpu("mainpc", 0.99)], T0)
    assert group.group_labels == {"alertname": "HostHot"}
    assert sorted(a.labels["host"] for a in group.alerts) == ["mainpc", "pc2"]
    # A third member joining the group sends the group again, with every firing member.
    alerts.put_rule(rule.model_copy(update={"name": "Other"}))
    assert alerts.evaluate([cpu("pc2", 0.95), cpu("mainpc", 0.99)], T0 + 1)[0].group_labels == {
        "alertname": "Other"
    }

    by_host = engine(tmp_path / "2", rules=[rule])
    assert len(by_host.evaluate([cpu("pc2", 0.95), cpu("mainpc", 0.99)], T0)) == 2


def test_a_silence_mutes_matching_alerts_until_it_expires(tmp_path: Path) -> None:
    alerts = engine(tmp_path, rules=[HOT.model_copy(update={"for_s": 0})])
    silence = alerts.add_silence(SilenceRequest(matchers={"host": "pc2"}, duration_s=60), T0)
    assert alerts.evaluate([cpu("pc2", 0.95), cpu("mainpc", 0.95)], T0) != []
    (muted,) = [a for a in alerts.alerts() if a.labels["host"] == "pc2"]
    assert muted.state == "firing" and muted.silenced_by == [silence.id]
    assert alerts.evaluate([cpu("pc2", 0.95), cpu("mainpc", 0.95)], T0 + 30) == []

    (after,) = alerts.evaluate([cpu("pc2", 0.95), cpu("mainpc", 0.95)], T0 + 60)
    assert after.group_labels["host"] == "pc2" and after.status == "firing"
    assert alerts.silences(T0 + 60) == []


def test_expiring_a_silence_by_hand_and_unknown_ids(tmp_path: Path) -> None:
    alerts = engine(tmp_path)
    silence = alerts.add_silence(SilenceRequest(matchers={"host": "pc2"}, duration_s=60), T0)
    alerts.expire_silence(silence.id)
    assert alerts.silences(T0) == []
    with pytest.raises(SilenceNotFound):
        alerts.expire_silence(silence.id)


def test_host_down_inhibits_that_hosts_agent_alerts(tmp_path: Path) -> None:
    host_down = AlertRuleSpec(
        name="HostDown", metric="up", op="<", threshold=1, severity="critical"
    )
    agent_down = AlertRuleSpec(name="AgentDown", metric="agent_up", op="<", threshold=1)
    alerts = engine(tmp_path, rules=[host_down, agent_down])
    samples = [
        Sample("up", (("host", "pc2"),), 0.0),
        Sample("up", (("host", "mainpc"),), 1.0),
        Sample("agent_up", (("agent", "tts"), ("host", "pc2")), 0.0),
        Sample("agent_up", (("agent", "nlu"), ("host", "mainpc")), 0.0),
    ]
    sent = alerts.evaluate(samples, T0)
    assert sorted((n.group_labels["alertname"], n.group_labels["host"]) for n in sent) == [
        ("AgentDown", "mainpc"),
        ("HostDown", "pc2"),
    ]
    (tts,) = [a for a in alerts.alerts() if a.labels.get("agent") == "tts"]
    assert tts.state == "firing" and tts.inhibited_by


class _Derived:
    def __init__(self, score: float, eta: float) -> None:
        self._score, self._eta = score, eta

    def score(self, key: SeriesKey) -> float | None:
        return self._score if key[0] == "cpu" else None

    def breach_eta(self, key: SeriesKey) -> float | None:
        return self._eta if key[0] == "cpu" else None


def test_rules_on_anomaly_scores_and_breach_predictions(tmp_path: Path) -> None:
    anomalous = AlertRuleSpec(name="Odd", metric="cpu", source="anomaly_score", threshold=5)
    soon = AlertRuleSpec(
        name="Soon", metric="cpu", source="breach_eta_seconds", op="<", threshold=600
    )
    alerts = engine(tmp_path, rules=[anomalous, soon])
    sent = alerts.evaluate([cpu("pc2", 0.1)], T0, _Derived(score=9.0, eta=420.0))
    assert sorted(n.group_labels["alertname"] for n in sent) == ["Odd", "Soon"]
    assert {a.rule: a.value for a in alerts.alerts()} == {"Odd": 9.0, "Soon": 420.0}
    assert alerts.evaluate([cpu("pc2", 0.1)], T0 + 1, _Derived(score=8.0, eta=400.0)) == []
    resolved = alerts.evaluate([cpu("pc2", 0.1)], T0 + 2, _Derived(score=1.0, eta=5000.0))
    assert {n.status for n in resolved} == {"resolved"}


def test_rules_and_silences_persist_and_http_rules_survive_a_restart(tmp_path: Path) -> None:
    alerts = engine(tmp_path)
    extra = AlertRuleSpec(name="Extra", metric="cpu", threshold=0.1)
    alerts.put_rule(extra)
    silence = alerts.add_silence(SilenceRequest(matchers={"host": "x"}, duration_s=60), T0)
    restarted = engine(tmp_path)
    assert [r.name for r in restarted.rules()] == ["Extra", "HostHot"]
    assert [s.id for s in restarted.silences(T0)] == [silence.id]
    restarted.delete_rule("Extra")
    with pytest.raises(AlertRuleNotFound):
        restarted.delete_rule("Extra")
    assert [r.name for r in engine(tmp_path).rules()] == ["HostHot"]


def test_resolved_alerts_are_listed_for_the_retention_then_dropped(tmp_path: Path) -> None:
    alerts = engine(
        tmp_path, resolved_retention_s=100.0, rules=[HOT.model_copy(update={"for_s": 0})]
    )
    alerts.evaluate([cpu("pc2", 0.95)], T0)
    alerts.evaluate([], T0 + 1)
    assert [a.state for a in alerts.alerts()] == ["resolved"]
    alerts.evaluate([], T0 + 102)
    assert alerts.alerts() == []


def test_notifications_become_one_error_event_per_alert(tmp_path: Path) -> None:
    from deployments.observability.events import alert_events

    alerts = engine(tmp_path, rules=[HOT.model_copy(update={"for_s": 0})])
    (fired,) = alerts.evaluate([cpu("pc2", 0.95)], T0)
    (event,) = alert_events(fired, "observability")
    assert (event.error_type, event.severity, event.host) == ("alert_firing", "critical", "pc2")
    assert event.agent == "observability"
    assert event.details["group"] == {"alertname": "HostHot", "host": "pc2"}
    (resolved,) = alerts.evaluate([], T0 + 1)
    (event,) = alert_events(resolved, "observability")
    assert (event.error_type, event.severity) == ("alert_resolved", "info")
