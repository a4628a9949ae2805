"""What the hub queues for Alertmanager each round: firing, resent, resolved, muted alerts."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.base.settings import AlertingSettings, AlertRuleSpec
from deployments.observability.alert_models import SilenceRequest
from deployments.observability.alert_store import AlertStore
from deployments.observability.alertmanager import AlertmanagerNotifier
from deployments.observability.alerts import AlertEngine
from deployments.observability.series import Sample

T0 = 1_000.0
RULE = AlertRuleSpec(
    name="HostHot", metric="cpu", threshold=0.9, for_s=10, severity="critical", summary="hot"
)
GENERATOR = "http://pc2:7000/observability/alerts"


def cpu(value: float) -> list[Sample]:
    return [Sample("cpu", (("host", "pc2"),), value)]


def setup(tmp_path: Path) -> tuple[AlertEngine, AlertmanagerNotifier]:
    settings = AlertingSettings(
        rules=[RULE], alertmanager_urls=["http://am:9093/"], resend_delay_s=60.0
    )
    engine = AlertEngine(settings, AlertStore(tmp_path / "a.db"), T0)
    return engine, AlertmanagerNotifier(settings, 5.0, GENERATOR)


def test_a_firing_alert_is_sent_then_resent_then_sent_resolved(tmp_path: Path) -> None:
    engine, notifier = setup(tmp_path)

    def round_(value: float, now: float) -> list[dict[str, object]]:
        engine.evaluate(cpu(value), now)
        due = notifier.update(engine.alerts(), now)
        return [alert.model_dump(mode="json", by_alias=True) for alert in due]

    assert round_(0.95, T0) == []  # pending is Prometheus-internal
    (firing,) = round_(0.95, T0 + 10)
    assert firing == {
        "labels": {"alertname": "HostHot", "host": "pc2", "severity": "critical"},
        "annotations": {"summary": "hot", "value": "0.95"},
        "startsAt": "1970-01-01T00:16:50Z",
        # Prometheus: now + 4 x max(evaluation interval, resend delay).
        "endsAt": "1970-01-01T00:20:50Z",
        "generatorURL": GENERATOR,
    }
    assert round_(0.95, T0 + 15) == []  # within the resend delay
    (again,) = round_(0.96, T0 + 70)
    assert (again["startsAt"], again["endsAt"]) == (firing["startsAt"], "1970-01-01T00:21:50Z")
    (resolved,) = round_(0.2, T0 + 75)
    assert resolved["endsAt"] == "1970-01-01T00:17:55Z"  # when it resolved
    assert round_(0.2, T0 + 80) == []
    (resent,) = round_(0.2, T0 + 135)  # still listed: sent again, still resolved
    assert resent["endsAt"] == resolved["endsAt"]


def test_alerts_muted_before_they_were_sent_are_never_sent(tmp_path: Path) -> None:
    engine, notifier = setup(tmp_path)
    engine.add_silence(SilenceRequest(matchers={"host": "pc2"}, duration_s=3600), T0)
    for now in (T0, T0 + 10, T0 + 100):
        engine.evaluate(cpu(0.95), now)
        assert notifier.update(engine.alerts(), now) == []
    engine.evaluate(cpu(0.1), T0 + 110)
    (resolved,) = engine.alerts()
    assert resolved.state == "resolved"
    assert notifier.update(engine.alerts(), T0 + 110) == []


def test_an_alert_silenced_after_it_was_sent_keeps_being_resent(tmp_path: Path) -> None:
    # As Prometheus does: silences are Alertmanager's business. Stopping the resends would let
    # Alertmanager resolve the alert at endsAt while its condition still holds.
    engine, notifier = setup(tmp_path)
    engine.evaluate(cpu(0.95), T0)
    engine.evaluate(cpu(0.95), T0 + 10)
    (sent,) = notifier.update(engine.alerts(), T0 + 10)
    silence = engine.add_silence(SilenceRequest(matchers={"host": "pc2"}, duration_s=3600), T0)
    engine.evaluate(cpu(0.95), T0 + 20)
    assert engine.alerts()[0].silenced_by == [silence.id]
    assert notifier.update(engine.alerts(), T0 + 20) == []  # within the resend delay
    engine.evaluate(cpu(0.95), T0 + 70)
    (resent,) = notifier.update(engine.alerts(), T0 + 70)
    assert resent.labels == sent.labels and resent.ends_at > sent.ends_at
    engine.evaluate(cpu(0.1), T0 + 80)
    (resolved,) = notifier.update(engine.alerts(), T0 + 80)
    assert resolved.ends_at.timestamp() == T0 + 80


def test_alertmanager_urls_must_be_http_base_urls() -> None:
    with pytest.raises(ValueError, match="base URL"):
        AlertingSettings(alertmanager_urls=["am:9093"])
    assert AlertingSettings(alertmanager_urls=["https://am.lan:9093/"]).alertmanager_urls == [
        "https://am.lan:9093"
    ]
