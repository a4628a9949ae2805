"""Alert rules with Prometheus states and Alertmanager routing, as a plain core.

Evaluation (Prometheus): a rule is checked against every series of its metric whose labels
match; a series meeting the condition makes an alert *pending*, and one still meeting it
``for_s`` later *firing* (at once when ``for_s`` is 0). A pending alert whose condition stops
holding is dropped; a firing one becomes *resolved* and stays listed ``resolved_retention_s``.

Routing (Alertmanager): alerts are grouped by the ``group_by`` labels. A group is notified when
it gains a firing alert, when an alert it notified as firing resolves, and again every
``repeat_interval_s`` while anything in it fires. Alerts matched by an active silence, or
inhibited (a firing source alert with equal ``equal`` labels, e.g. ``HostDown`` for that
host's ``AgentDown``), are listed with ``silenced_by``/``inhibited_by`` but not notified.

Rules come from Settings and are replaced, added or deleted over HTTP; both rules and silences
are written through to an :class:`~deployments.observability.alert_store.AlertStore`.

Example::

    engine = AlertEngine(settings.alerting, store, now=clock())
    notifications = engine.evaluate(samples, now=clock(), derived=anomaly_bank)
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from cluster.errors import AlertRuleNotFound, SilenceNotFound
from cluster.settings import AlertingSettings, AlertRuleSpec, Comparison
from deployments.observability.alert_models import (
    Alert,
    AlertState,
    Notification,
    Silence,
    SilenceRequest,
)
from deployments.observability.alert_store import AlertStore
from deployments.observability.series import Sample, SeriesKey, matches

__all__ = ["AlertEngine", "DerivedValues"]

_COMPARE: dict[Comparison, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


class DerivedValues(Protocol):
    """Values computed from a series (the anomaly bank provides them)."""

    def score(self, key: SeriesKey) -> float | None: ...

    def breach_eta(self, key: SeriesKey) -> float | None: ...


@dataclass
class _Active:
    rule: AlertRuleSpec
    labels: dict[str, str]
    value: float
    active_at: float
    state: AlertState = "pending"
    fired_at: float | None = None
    resolved_at: float | None = None
    silenced_by: list[str] = field(default_factory=list)
    inhibited_by: list[str] = field(default_factory=list)

    @property
    def muted(self) -> bool:
        return bool(self.silenced_by or self.inhibited_by)


@dataclass
class _Group:
    sent_firing: frozenset[str] = frozenset()
    last_sent: float = 0.0


def _fingerprint(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


class AlertEngine:
    """Rules, alert states, silences and notification routing; see the module docstring."""

    def __init__(self, settings: AlertingSettings, store: AlertStore, now: float) -> None:
        self._s = settings
        self._store = store
        # Configured rules are (re)installed at start; rules added over HTTP persist beside them.
        for rule in settings.rules:
            store.save_rule(rule)
        self._rules = {rule.name: rule for rule in store.rules()}
        self._silences = {s.id: s for s in store.silences(now)}
        self._active: dict[str, _Active] = {}
        self._groups: dict[tuple[str, ...], _Group] = {}

    # Rules and silences -------------------------------------------------------------------

    def rules(self) -> list[AlertRuleSpec]:
        return sorted(self._rules.values(), key=lambda rule: rule.name)

    def put_rule(self, rule: AlertRuleSpec) -> AlertRuleSpec:
        """Add a rule or replace the one of that name; its alerts restart from inactive."""
        self._store.save_rule(rule)
        self._rules[rule.name] = rule
        self._drop_alerts_of(rule.name)
        return rule

    def delete_rule(self, name: str) -> None:
        """Raises: AlertRuleNotFound: no rule has that name."""
        if name not in self._rules:
            raise AlertRuleNotFound(name)
        self._store.delete_rule(name)
        del self._rules[name]
        self._drop_alerts_of(name)

    def silences(self, now: float) -> list[Silence]:
        return sorted(
            (s for s in self._silences.values() if s.ends_at > now), key=lambda s: s.ends_at
        )

    def add_silence(self, request: SilenceRequest, now: float) -> Silence:
        silence = Silence(
            matchers=request.matchers,
            starts_at=now,
            ends_at=now + request.duration_s,
            comment=request.comment,
            created_by=request.created_by,
        )
        self._store.save_silence(silence)
        self._silences[silence.id] = silence
        return silence

    def expire_silence(self, silence_id: str) -> None:
        """Raises: SilenceNotFound: no silence has that id."""
        if self._silences.pop(silence_id, None) is None:
            raise SilenceNotFound(silence_id)
        self._store.delete_silence(silence_id)

    # Evaluation ----------------------------------------------------------------------------

    def alerts(self) -> list[Alert]:
        return [self._public(fp, a) for fp, a in sorted(self._active.items())]

    def evaluate(
        self, samples: Iterable[Sample], now: float, derived: DerivedValues | None = None
    ) -> list[Notification]:
        """Advance every alert to ``now`` given the series' current values; return what to send."""
        by_metric: dict[str, list[Sample]] = {}
        for sample in samples:
            by_metric.setdefault(sample.metric, []).append(sample)
        holding: set[str] = set()
        for rule in self._rules.values():
            for sample in by_metric.get(rule.metric, []):
                fingerprint = self._check(rule, sample, now, derived)
                if fingerprint is not None:
                    holding.add(fingerprint)
        self._settle(holding, now)
        self._mute(now)
        return self._route(now)

    def _check(
        self, rule: AlertRuleSpec, sample: Sample, now: float, derived: DerivedValues | None
    ) -> str | None:
        series_labels = sample.label_map
        if not matches(series_labels, rule.matchers):
            return None
        value: float | None = sample.value
        if rule.source == "anomaly_score":
            value = None if derived is None else derived.score(sample.key)
        elif rule.source == "breach_eta_seconds":
            value = None if derived is None else derived.breach_eta(sample.key)
        if value is None or not _COMPARE[rule.op](value, rule.threshold):
            return None
        labels = {**series_labels, **rule.labels, "alertname": rule.name}
        labels["severity"] = rule.severity
        fingerprint = _fingerprint(labels)
        alert = self._active.get(fingerprint)
        if alert is None or alert.state == "resolved":
            alert = self._active[fingerprint] = _Active(rule, labels, value, active_at=now)
        alert.value = value
        if alert.state == "pending" and now - alert.active_at >= rule.for_s:
            alert.state, alert.fired_at = "firing", now
        return fingerprint

    def _settle(self, holding: set[str], now: float) -> None:
        for fingerprint, alert in list(self._active.items()):
            if fingerprint in holding:
                continue
            if alert.state == "pending":
                del self._active[fingerprint]
            elif alert.state == "firing":
                alert.state, alert.resolved_at = "resolved", now
            elif alert.resolved_at is not None and (
                now - alert.resolved_at > self._s.resolved_retention_s
            ):
                del self._active[fingerprint]

    def _mute(self, now: float) -> None:
        for silence_id in [s.id for s in self._silences.values() if s.ends_at <= now]:
            del self._silences[silence_id]
        firing = [(fp, a) for fp, a in self._active.items() if a.state == "firing"]
        for fingerprint, alert in self._active.items():
            alert.silenced_by = [
                s.id
                for s in self._silences.values()
                if s.active(now) and matches(alert.labels, s.matchers)
            ]
            alert.inhibited_by = [
                source_fp
                for inhibit in self._s.inhibit_rules
                if matches(alert.labels, inhibit.target_matchers)
                for source_fp, source in firing
                if source_fp != fingerprint
                and matches(source.labels, inhibit.source_matchers)
                and all(source.labels.get(n, "") == alert.labels.get(n, "") for n in inhibit.equal)
            ]

    def _route(self, now: float) -> list[Notification]:
        members: dict[tuple[str, ...], list[tuple[str, _Active]]] = {}
        for fingerprint, alert in self._active.items():
            key = tuple(alert.labels.get(name, "") for name in self._s.group_by)
            members.setdefault(key, []).append((fingerprint, alert))
        notifications = []
        for key in set(members) | set(self._groups):
            group = self._groups.setdefault(key, _Group())
            alerts = members.get(key, [])
            firing = frozenset(fp for fp, a in alerts if a.state == "firing" and not a.muted)
            resolved = [
                (fp, a) for fp, a in alerts if a.state == "resolved" and fp in group.sent_firing
            ]
            due = bool(firing) and now - group.last_sent >= self._s.repeat_interval_s
            if firing - group.sent_firing or resolved or due:
                shown = [(fp, a) for fp, a in alerts if fp in firing] + resolved
                notifications.append(
                    Notification(
                        group_labels=dict(zip(self._s.group_by, key, strict=True)),
                        status="firing" if firing else "resolved",
                        alerts=[self._public(fp, a) for fp, a in sorted(shown)],
                        sent_at=now,
                    )
                )
                group.sent_firing, group.last_sent = firing, now
            if not alerts:
                del self._groups[key]
        return notifications

    def _drop_alerts_of(self, rule: str) -> None:
        for fingerprint in [fp for fp, a in self._active.items() if a.rule.name == rule]:
            del self._active[fingerprint]

    @staticmethod
    def _public(fingerprint: str, alert: _Active) -> Alert:
        return Alert(
            fingerprint=fingerprint,
            rule=alert.rule.name,
            severity=alert.rule.severity,
            state=alert.state,
            labels=alert.labels,
            value=alert.value,
            summary=alert.rule.summary,
            active_at=alert.active_at,
            fired_at=alert.fired_at,
            resolved_at=alert.resolved_at,
            silenced_by=alert.silenced_by,
            inhibited_by=alert.inhibited_by,
        )
