"""Alert rules with Prometheus states and Alertmanager grouping, silences and inhibition."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import Gauge
from prometheus_client.registry import CollectorRegistry

from cluster.base.errors import AlertRuleNotFound, SilenceNotFound
from cluster.base.settings import AlertingSettings, AlertRuleSpec, ObservabilitySettings
from deployments.observability.alert_models import Notification, SilenceRequest
from deployments.observability.alert_store import AlertStore
from deployments.observability.alerts import AlertEngine, DerivedValues
from deployments.observability.hub import HubCore, HubSources
from deployments.observability.perflog import PerfLog
from deployments.observability.series import Sample, SeriesKey
from deployments.observability.state import AgentProbe, HostSample
from tests.unit._observability_helpers import Clock

T0 = 1_000.0
HOT = AlertRuleSpec(
    name="HostHot", metric="cpu", op=">", threshold=0.9, for_s=30, severity="critical"
)


def cpu(host: str, value: float) -> Sample:
    return Sample("cpu", (("host", host),), value)


def engine(tmp_path: Path, **settings: object) -> AlertEngine:
    """An engine without group timers unless given (their tests set them)."""
    values = {
        "rules": [HOT],
        "repeat_interval_s": 3600.0,
        "group_wait_s": 0.0,
        "group_interval_s": 0.0,
        **settings,
    }
    return AlertEngine(AlertingSettings.model_validate(values), AlertStore(tmp_path / "a.db"), T0)


def step(
    alerts: AlertEngine, samples: list[Sample], now: float, derived: DerivedValues | None = None
) -> list[Notification]:
    """One evaluation whose notifications are delivered, as the hub does when notify succeeds."""
    notifications = alerts.evaluate(samples, now, derived)
    alerts.delivered(notifications)
    return notifications


def test_a_series_goes_pending_firing_resolved_with_one_notification_each(tmp_path: Path) -> None:
    alerts = engine(tmp_path)
    assert step(alerts, [cpu("pc2", 0.5)], T0) == []
    assert alerts.alerts() == []

    assert step(alerts, [cpu("pc2", 0.95)], T0 + 10) == []
    (pending,) = alerts.alerts()
    assert (pending.state, pending.active_at) == ("pending", T0 + 10)
    assert step(alerts, [cpu("pc2", 0.97)], T0 + 39) == []

    (fired,) = step(alerts, [cpu("pc2", 0.97)], T0 + 40)
    assert fired.status == "firing"
    assert fired.group_labels == {"alertname": "HostHot", "host": "pc2"}
    assert [a.state for a in fired.alerts] == ["firing"]
    assert fired.alerts[0].labels == {"alertname": "HostHot", "host": "pc2", "severity": "critical"}
    assert step(alerts, [cpu("pc2", 0.97)], T0 + 50) == []  # no repeat before the interval

    (resolved,) = step(alerts, [cpu("pc2", 0.2)], T0 + 60)
    assert resolved.status == "resolved"
    assert [(a.state, a.resolved_at) for a in resolved.alerts] == [("resolved", T0 + 60)]
    assert step(alerts, [cpu("pc2", 0.2)], T0 + 70) == []


def test_a_pending_alert_that_clears_is_dropped_without_notification(tmp_path: Path) -> None:
    alerts = engine(tmp_path)
    step(alerts, [cpu("pc2", 0.95)], T0)
    assert step(alerts, [cpu("pc2", 0.1)], T0 + 5) == []
    assert alerts.alerts() == []


def test_firing_groups_repeat_after_the_interval(tmp_path: Path) -> None:
    alerts = engine(tmp_path, repeat_interval_s=100.0, rules=[HOT.model_copy(update={"for_s": 0})])
    assert len(step(alerts, [cpu("pc2", 0.95)], T0)) == 1
    assert step(alerts, [cpu("pc2", 0.95)], T0 + 99) == []
    assert len(step(alerts, [cpu("pc2", 0.95)], T0 + 100)) == 1


def test_alerts_are_grouped_by_the_group_by_labels(tmp_path: Path) -> None:
    rule = HOT.model_copy(update={"for_s": 0})
    alerts = engine(tmp_path, rules=[rule], group_by=["alertname"])
    (group,) = step(alerts, [cpu("pc2", 0.95), cpu("mainpc", 0.99)], T0)
    assert group.group_labels == {"alertname": "HostHot"}
    assert sorted(a.labels["host"] for a in group.alerts) == ["mainpc", "pc2"]
    # A third member joining the group sends the group again, with every firing member.
    alerts.put_rule(rule.model_copy(update={"name": "Other"}), T0)
    assert step(alerts, [cpu("pc2", 0.95), cpu("mainpc", 0.99)], T0 + 1)[0].group_labels == {
        "alertname": "Other"
    }

    by_host = engine(tmp_path / "2", rules=[rule])
    assert len(step(by_host, [cpu("pc2", 0.95), cpu("mainpc", 0.99)], T0)) == 2


def test_a_silence_mutes_matching_alerts_until_it_expires(tmp_path: Path) -> None:
    alerts = engine(tmp_path, rules=[HOT.model_copy(update={"for_s": 0})])
    silence = alerts.add_silence(SilenceRequest(matchers={"host": "pc2"}, duration_s=60), T0)
    assert step(alerts, [cpu("pc2", 0.95), cpu("mainpc", 0.95)], T0) != []
    (muted,) = [a for a in alerts.alerts() if a.labels["host"] == "pc2"]
    assert muted.state == "firing" and muted.silenced_by == [silence.id]
    assert step(alerts, [cpu("pc2", 0.95), cpu("mainpc", 0.95)], T0 + 30) == []

    (after,) = step(alerts, [cpu("pc2", 0.95), cpu("mainpc", 0.95)], T0 + 60)
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
    sent = step(alerts, samples, T0)
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
    sent = step(alerts, [cpu("pc2", 0.1)], T0, _Derived(score=9.0, eta=420.0))
    assert sorted(n.group_labels["alertname"] for n in sent) == ["Odd", "Soon"]
    assert {a.rule: a.value for a in alerts.alerts()} == {"Odd": 9.0, "Soon": 420.0}
    assert step(alerts, [cpu("pc2", 0.1)], T0 + 1, _Derived(score=8.0, eta=400.0)) == []
    resolved = step(alerts, [cpu("pc2", 0.1)], T0 + 2, _Derived(score=1.0, eta=5000.0))
    assert {n.status for n in resolved} == {"resolved"}


def test_rules_and_silences_persist_and_http_rules_survive_a_restart(tmp_path: Path) -> None:
    alerts = engine(tmp_path)
    extra = AlertRuleSpec(name="Extra", metric="cpu", threshold=0.1)
    alerts.put_rule(extra, T0)
    silence = alerts.add_silence(SilenceRequest(matchers={"host": "x"}, duration_s=60), T0)
    restarted = engine(tmp_path)
    assert [r.name for r in restarted.rules()] == ["Extra", "HostHot"]
    assert [s.id for s in restarted.silences(T0)] == [silence.id]
    restarted.delete_rule("Extra", T0)
    with pytest.raises(AlertRuleNotFound):
        restarted.delete_rule("Extra", T0)
    assert [r.name for r in engine(tmp_path).rules()] == ["HostHot"]


def test_resolved_alerts_are_listed_for_the_retention_then_dropped(tmp_path: Path) -> None:
    alerts = engine(
        tmp_path, resolved_retention_s=100.0, rules=[HOT.model_copy(update={"for_s": 0})]
    )
    step(alerts, [cpu("pc2", 0.95)], T0)
    step(alerts, [], T0 + 1)
    assert [a.state for a in alerts.alerts()] == ["resolved"]
    step(alerts, [], T0 + 102)
    assert alerts.alerts() == []


def test_notifications_become_one_error_event_per_alert(tmp_path: Path) -> None:
    from deployments.observability.events import alert_events

    alerts = engine(tmp_path, rules=[HOT.model_copy(update={"for_s": 0})])
    (fired,) = step(alerts, [cpu("pc2", 0.95)], T0)
    (event,) = alert_events(fired, "observability")
    assert (event.error_type, event.severity, event.host) == ("alert_firing", "critical", "pc2")
    assert event.agent == "observability"
    assert event.details["group"] == {"alertname": "HostHot", "host": "pc2"}
    (resolved,) = step(alerts, [], T0 + 1)
    (event,) = alert_events(resolved, "observability")
    assert (event.error_type, event.severity) == ("alert_resolved", "info")


def test_a_restarted_engine_keeps_firing_alerts_and_resolves_them(tmp_path: Path) -> None:
    alerts = engine(tmp_path)
    step(alerts, [cpu("pc2", 0.95)], T0)
    (fired,) = step(alerts, [cpu("pc2", 0.95)], T0 + 30)
    assert fired.status == "firing"

    restarted = engine(tmp_path)  # the same store: the hub restarted
    (alert,) = restarted.alerts()
    assert (alert.state, alert.active_at, alert.fired_at) == ("firing", T0, T0 + 30)
    # Still firing at once (no second pending phase) and already notified: nothing to send.
    assert step(restarted, [cpu("pc2", 0.96)], T0 + 40) == []
    assert [a.state for a in restarted.alerts()] == ["firing"]
    (resolved,) = step(restarted, [cpu("pc2", 0.1)], T0 + 50)
    assert resolved.status == "resolved"
    assert [(a.state, a.resolved_at) for a in resolved.alerts] == [("resolved", T0 + 50)]
    history = [(h.state, h.at) for h in restarted.history(since=None, limit=10)]
    assert history == [("resolved", T0 + 50), ("firing", T0 + 30), ("pending", T0)]


def test_a_restart_drops_alerts_whose_rule_changed_meanwhile(tmp_path: Path) -> None:
    alerts = engine(tmp_path)
    step(alerts, [cpu("pc2", 0.95)], T0)
    changed = engine(tmp_path, rules=[HOT.model_copy(update={"threshold": 0.8})])
    assert changed.alerts() == []
    assert engine(tmp_path).alerts() == []  # and the store forgot them


def test_history_records_transitions_and_is_purged_after_its_retention(tmp_path: Path) -> None:
    alerts = engine(tmp_path, history_retention_days=1.0)
    step(alerts, [cpu("pc2", 0.95)], T0)
    step(alerts, [cpu("pc2", 0.1)], T0 + 5)
    (inactive, pending) = alerts.history(since=None, limit=10)
    assert (pending.state, pending.rule, pending.value) == ("pending", "HostHot", 0.95)
    assert pending.labels == {"alertname": "HostHot", "host": "pc2", "severity": "critical"}
    assert (inactive.state, inactive.at) == ("inactive", T0 + 5)
    assert [h.state for h in alerts.history(since=T0 + 1, limit=10)] == ["inactive"]
    assert len(alerts.history(since=None, limit=1)) == 1

    step(alerts, [cpu("pc2", 0.95)], T0 + 86_406)
    assert [h.at for h in alerts.history(since=None, limit=10)] == [T0 + 86_406]


def test_a_notification_not_delivered_is_sent_again(tmp_path: Path) -> None:
    alerts = engine(tmp_path, rules=[HOT.model_copy(update={"for_s": 0})])
    (first,) = alerts.evaluate([cpu("pc2", 0.95)], T0)  # notify raised: no delivered()
    (again,) = alerts.evaluate([cpu("pc2", 0.95)], T0 + 5)
    assert again.model_copy(update={"sent_at": T0}) == first
    alerts.delivered([again])
    assert alerts.evaluate([cpu("pc2", 0.95)], T0 + 10) == []

    (resolved,) = alerts.evaluate([], T0 + 15)
    (resolved_again,) = alerts.evaluate([], T0 + 20)  # the resolution is kept too
    assert resolved.status == resolved_again.status == "resolved"
    alerts.delivered([resolved_again])
    assert alerts.evaluate([], T0 + 25) == []


def test_the_hub_marks_notifications_sent_only_when_notify_returns(tmp_path: Path) -> None:
    clock = Clock(T0)
    registry = CollectorRegistry()
    Gauge("load", "test load", registry=registry).set(0.95)
    rule = AlertRuleSpec(name="Load", metric="load", threshold=0.9)
    settings = ObservabilitySettings.model_validate(
        {"alerting": {"rules": [rule.model_dump()], "group_wait_s": 0}}
    )
    sent: list[Notification] = []
    failures = [RuntimeError("NATS is down")]

    async def notify(notifications: list[Notification]) -> None:
        if failures:
            raise failures.pop()
        sent.extend(notifications)

    async def nothing() -> list[HostSample]:
        return []

    async def no_probe(_: object) -> dict[str, AgentProbe]:
        return {}

    async def no_counts() -> None:
        return None

    sources = HubSources(nothing, list, no_probe, no_counts, notify)
    perflog = PerfLog(tmp_path / "perf.db", settings.perflog)
    hub = HubCore(settings, registry, perflog, AlertStore(tmp_path / "a.db"), sources, clock)
    with pytest.raises(RuntimeError, match="NATS is down"):
        asyncio.run(hub.evaluate(T0))
    asyncio.run(hub.evaluate(T0 + 5))
    (notification,) = sent
    assert notification.status == "firing" and notification.sent_at == T0 + 5
    asyncio.run(hub.evaluate(T0 + 10))
    assert len(sent) == 1


def test_group_wait_and_group_interval_batch_a_groups_notifications(tmp_path: Path) -> None:
    rule = HOT.model_copy(update={"for_s": 0})
    alerts = engine(
        tmp_path, rules=[rule], group_by=["alertname"], group_wait_s=30.0, group_interval_s=300.0
    )
    hosts: dict[str, float] = {"a": 0.95}

    def at(now: float) -> list[list[str]]:
        sent = step(alerts, [cpu(h, v) for h, v in hosts.items()], T0 + now)
        return [[f"{a.labels['host']}:{a.state}" for a in n.alerts] for n in sent]

    assert at(0) == []  # a new group waits group_wait
    hosts["b"] = 0.95
    assert at(10) == []
    assert at(30) == [["a:firing", "b:firing"]]  # both, in one notification
    hosts["c"] = 0.95
    assert at(40) == []  # a change waits group_interval after the last notification
    assert at(329) == []
    assert at(330) == [["a:firing", "b:firing", "c:firing"]]
    hosts["a"] = 0.1
    assert at(400) == []
    assert at(630) == [["a:resolved", "b:firing", "c:firing"]]
    hosts = {}
    assert at(700) == []
    assert at(930) == [["b:resolved", "c:resolved"]]
    # The group ended with its resolution: a new alert starts a new group, with group_wait.
    hosts["d"] = 0.95
    assert at(940) == []
    assert at(969) == []
    assert at(970) == [["d:firing"]]


def test_an_alert_that_clears_within_group_wait_is_never_notified(tmp_path: Path) -> None:
    alerts = engine(tmp_path, rules=[HOT.model_copy(update={"for_s": 0})], group_wait_s=30.0)
    assert step(alerts, [cpu("pc2", 0.95)], T0) == []
    assert step(alerts, [cpu("pc2", 0.1)], T0 + 10) == []
    assert step(alerts, [cpu("pc2", 0.1)], T0 + 40) == []
    # Firing again later waits a whole group_wait from then.
    assert step(alerts, [cpu("pc2", 0.95)], T0 + 50) == []
    assert step(alerts, [cpu("pc2", 0.95)], T0 + 79) == []
    assert len(step(alerts, [cpu("pc2", 0.95)], T0 + 80)) == 1


def test_group_timers_survive_a_restart(tmp_path: Path) -> None:
    timers = {"group_wait_s": 30.0, "group_interval_s": 300.0}
    rule = HOT.model_copy(update={"for_s": 0})
    alerts = engine(tmp_path, rules=[rule], **timers)
    step(alerts, [cpu("pc2", 0.95)], T0)
    assert step(engine(tmp_path, rules=[rule], **timers), [cpu("pc2", 0.95)], T0 + 29) == []
    restarted = engine(tmp_path, rules=[rule], **timers)
    assert len(step(restarted, [cpu("pc2", 0.95)], T0 + 30)) == 1
    again = engine(tmp_path, rules=[rule], **timers)
    assert step(again, [cpu("pc2", 0.1)], T0 + 40) == []  # group_interval since T0 + 30
    assert [n.status for n in step(again, [cpu("pc2", 0.1)], T0 + 330)] == ["resolved"]


def silence(alerts: AlertEngine, matchers: object, **fields: object) -> str:
    body = {"matchers": matchers, "duration_s": 60, **fields}
    return alerts.add_silence(SilenceRequest.model_validate(body), T0).id


def test_silences_take_alertmanagers_matcher_types(tmp_path: Path) -> None:
    rule = HOT.model_copy(update={"for_s": 0})
    alerts = engine(tmp_path, rules=[rule])
    hot = {"name": "alertname", "value": "HostHot"}
    regex = silence(alerts, [{"name": "host", "value": "pc[0-9]", "type": "=~"}])
    # Anchored at both ends, as Alertmanager anchors them: "pc2x" does not match "pc[0-9]".
    not_main = silence(alerts, [hot, {"name": "host", "value": "mainpc", "type": "!="}])
    v2 = silence(
        alerts, [hot, {"name": "host", "value": "pc.*", "isRegex": True, "isEqual": False}]
    )
    exact = silence(alerts, {"host": "pc2x"})
    step(alerts, [cpu("pc2", 0.95), cpu("pc2x", 0.95), cpu("mainpc", 0.95)], T0)
    muted = {a.labels["host"]: set(a.silenced_by) for a in alerts.alerts()}
    assert muted == {
        "pc2": {regex, not_main},
        "pc2x": {not_main, exact},
        "mainpc": {v2},
    }


def test_silence_matchers_are_checked_when_the_silence_is_made() -> None:
    with pytest.raises(ValueError, match="not a valid regular expression"):
        SilenceRequest.model_validate(
            {"matchers": [{"name": "host", "value": "pc(", "type": "=~"}], "duration_s": 60}
        )
    with pytest.raises(ValueError, match="matches an empty or missing label"):
        SilenceRequest.model_validate(
            {"matchers": [{"name": "host", "value": "pc2", "type": "!="}], "duration_s": 60}
        )
    with pytest.raises(ValueError, match="type"):
        SilenceRequest.model_validate(
            {"matchers": [{"name": "host", "value": "x", "type": "==="}], "duration_s": 60}
        )
    exact = SilenceRequest.model_validate({"matchers": {"host": "pc2"}, "duration_s": 60})
    assert [(m.name, m.value, m.type) for m in exact.matchers] == [("host", "pc2", "=")]


def test_a_silence_may_start_later_and_mutes_nothing_before(tmp_path: Path) -> None:
    alerts = engine(tmp_path, rules=[HOT.model_copy(update={"for_s": 0})])
    later = silence(alerts, {"host": "pc2"}, starts_at=T0 + 100)
    assert [(s.starts_at, s.ends_at) for s in alerts.silences(T0)] == [(T0 + 100, T0 + 160)]
    assert len(step(alerts, [cpu("pc2", 0.95)], T0)) == 1
    assert alerts.alerts()[0].silenced_by == []
    step(alerts, [cpu("pc2", 0.95)], T0 + 100)
    assert alerts.alerts()[0].silenced_by == [later]
    # A start in the past means now, as in Alertmanager.
    past = alerts.add_silence(
        SilenceRequest(matchers={"host": "x"}, starts_at=T0 - 50, duration_s=10), T0
    )
    assert (past.starts_at, past.ends_at) == (T0, T0 + 10)


def test_silences_stored_with_the_first_matcher_shape_still_load(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "a.db")
    with store._lock:  # a row as the first version wrote it
        store._db.execute(
            "INSERT INTO silences (id, ends_at, body) VALUES (?, ?, ?)",
            (
                "old",
                T0 + 60,
                '{"id": "old", "matchers": {"host": "pc2"}, "starts_at": '
                f'{T0}, "ends_at": {T0 + 60}, "comment": "", "created_by": ""}}',
            ),
        )
    (old,) = store.silences(T0)
    assert old.matches({"host": "pc2"}) and not old.matches({"host": "pc3"})
