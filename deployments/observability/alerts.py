"""Alert rules with Prometheus states and Alertmanager routing, as a plain core.

Evaluation (Prometheus): a rule is checked against every series of its metric whose labels
match; a series meeting the condition makes an alert *pending*, and one still meeting it
``for_s`` later *firing* (at once when ``for_s`` is 0). A pending alert whose condition stops
holding is dropped; a firing one becomes *resolved* and stays listed ``resolved_retention_s``.

Routing (Alertmanager): alerts are grouped by the ``group_by`` labels. A new group's first
notification waits ``group_wait_s``, so alerts that fire together go out together; after that
a group is notified when it gains a firing alert or an alert it notified as firing resolves, no
sooner than ``group_interval_s`` after its last notification, and again every
``repeat_interval_s`` while anything in it fires. Once a group's "resolved" notification is
delivered the group ends, and a later alert starts a new one (with ``group_wait_s`` again).
Alerts matched by an active silence, or inhibited (a firing source alert with equal ``equal``
labels, e.g. ``HostDown`` for that host's ``AgentDown``), are listed with
``silenced_by``/``inhibited_by`` but not notified.

Delivery: :meth:`AlertEngine.evaluate` returns the notifications due; a group counts as
notified only once the caller confirms with :meth:`AlertEngine.delivered`, so a notification
whose sending failed is returned again by the next evaluation.

Persistence: rules and silences are written through to an
:class:`~deployments.observability.alert_store.AlertStore`, and so are alert states, groups'
routing state and a history row per state transition; a new engine on the same store carries on
where the last one stopped (a firing alert stays firing, and resolves with a notification).

Example::

    engine = AlertEngine(settings.alerting, store, now=clock())
    notifications = engine.evaluate(samples, now=clock(), derived=anomaly_bank)
    await send(notifications)
    engine.delivered(notifications)
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from cluster.base.errors import AlertRuleNotFound, SilenceNotFound
from cluster.base.settings import AlertingSettings, AlertRuleSpec, Comparison
from deployments.observability.alert_models import (
    Alert,
    AlertHistoryEntry,
    AlertState,
    GroupRecord,
    HistoryState,
    Notification,
    Silence,
    SilenceRequest,
    StoredAlert,
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

_GroupKey = tuple[str, ...]


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
    last_sent: float | None = None
    waiting_since: float | None = None


@dataclass
class _Changes:
    """What an evaluation changed, for one write to the store."""

    alerts: set[str] = field(default_factory=set)
    groups: set[_GroupKey] = field(default_factory=set)
    history: list[AlertHistoryEntry] = field(default_factory=list)


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
        self._groups: dict[_GroupKey, _Group] = {}
        self._changes = _Changes()
        self._restore()

    def _restore(self) -> None:
        for stored in self._store.alerts():
            if self._rules.get(stored.rule.name) != stored.rule:
                # The rule changed or went while the hub was down: as put_rule, start afresh.
                self._changes.alerts.add(stored.fingerprint)
                continue
            self._active[stored.fingerprint] = _Active(
                stored.rule,
                stored.labels,
                stored.value,
                stored.active_at,
                stored.state,
                stored.fired_at,
                stored.resolved_at,
            )
        for record in self._store.groups():
            self._groups[tuple(record.key)] = _Group(
                frozenset(record.sent_firing), record.last_sent, record.waiting_since
            )
        self._flush()

    # Rules and silences -------------------------------------------------------------------

    def rules(self) -> list[AlertRuleSpec]:
        return sorted(self._rules.values(), key=lambda rule: rule.name)

    def put_rule(self, rule: AlertRuleSpec, now: float) -> AlertRuleSpec:
        """Add a rule or replace the one of that name; its alerts restart from inactive."""
        self._store.save_rule(rule)
        self._rules[rule.name] = rule
        self._drop_alerts_of(rule.name, now)
        return rule

    def delete_rule(self, name: str, now: float) -> None:
        """Raises: AlertRuleNotFound: no rule has that name."""
        if name not in self._rules:
            raise AlertRuleNotFound(name)
        self._store.delete_rule(name)
        del self._rules[name]
        self._drop_alerts_of(name, now)

    def silences(self, now: float) -> list[Silence]:
        return sorted(
            (s for s in self._silences.values() if s.ends_at > now), key=lambda s: s.ends_at
        )

    def add_silence(self, request: SilenceRequest, now: float) -> Silence:
        """A silence from ``starts_at`` (now when absent or past) for ``duration_s``."""
        starts_at = now if request.starts_at is None else max(now, request.starts_at)
        silence = Silence(
            matchers=request.matchers,
            starts_at=starts_at,
            ends_at=starts_at + request.duration_s,
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

    def history(self, since: float | None, limit: int) -> list[AlertHistoryEntry]:
        """State transitions at or after ``since``, newest first."""
        return self._store.history(since, limit)

    def evaluate(
        self, samples: Iterable[Sample], now: float, derived: DerivedValues | None = None
    ) -> list[Notification]:
        """Advance every alert to ``now`` given the series' current values; return what to send.

        Pass what was sent to :meth:`delivered`; what was not is returned again next time.
        """
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
        notifications = self._route(now)
        self._flush()
        self._store.purge_history(now - self._s.history_retention_days * 86_400.0)
        return notifications

    def delivered(self, notifications: Iterable[Notification]) -> None:
        """Mark the groups of ``notifications`` notified (the notifier took them)."""
        for notification in notifications:
            key = tuple(notification.group_labels.get(n, "") for n in self._s.group_by)
            self._changes.groups.add(key)
            if notification.status == "resolved":
                # Alertmanager drops a group once nothing in it fires and its resolved alerts
                # went out: a later alert starts a new group, which waits group_wait again.
                self._groups.pop(key, None)
                continue
            group = self._groups.setdefault(key, _Group())
            group.sent_firing = frozenset(
                a.fingerprint for a in notification.alerts if a.state == "firing"
            )
            group.last_sent, group.waiting_since = notification.sent_at, None
        self._flush()

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
        previous = None if alert is None or alert.state == "resolved" else alert.state
        if alert is None or previous is None:
            alert = self._active[fingerprint] = _Active(rule, labels, value, active_at=now)
        alert.value = value
        if alert.state == "pending" and now - alert.active_at >= rule.for_s:
            alert.state, alert.fired_at = "firing", now
        if alert.state != previous:
            self._record(fingerprint, alert, alert.state, now)
        return fingerprint

    def _settle(self, holding: set[str], now: float) -> None:
        for fingerprint, alert in list(self._active.items()):
            if fingerprint in holding:
                continue
            if alert.state == "pending":
                self._record(fingerprint, alert, "inactive", now)
                del self._active[fingerprint]
            elif alert.state == "firing":
                alert.state, alert.resolved_at = "resolved", now
                self._record(fingerprint, alert, "resolved", now)
            elif alert.resolved_at is not None and (
                now - alert.resolved_at > self._s.resolved_retention_s
            ):
                self._changes.alerts.add(fingerprint)
                del self._active[fingerprint]

    def _mute(self, now: float) -> None:
        for silence_id in [s.id for s in self._silences.values() if s.ends_at <= now]:
            del self._silences[silence_id]
        firing = [(fp, a) for fp, a in self._active.items() if a.state == "firing"]
        for fingerprint, alert in self._active.items():
            alert.silenced_by = [
                s.id for s in self._silences.values() if s.active(now) and s.matches(alert.labels)
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
        members: dict[_GroupKey, list[tuple[str, _Active]]] = {}
        for fingerprint, alert in self._active.items():
            key = tuple(alert.labels.get(name, "") for name in self._s.group_by)
            members.setdefault(key, []).append((fingerprint, alert))
        notifications = []
        for key in sorted(set(members) | set(self._groups)):
            alerts = members.get(key, [])
            if not alerts:
                del self._groups[key]
                self._changes.groups.add(key)
                continue
            notification = self._due(key, alerts, now)
            if notification is not None:
                notifications.append(notification)
        return notifications

    def _due(
        self, key: _GroupKey, alerts: list[tuple[str, _Active]], now: float
    ) -> Notification | None:
        """The group's notification if one is due now, under group_wait/group_interval."""
        group = self._groups.setdefault(key, _Group())
        firing = frozenset(fp for fp, a in alerts if a.state == "firing" and not a.muted)
        resolved = [
            (fp, a) for fp, a in alerts if a.state == "resolved" and fp in group.sent_firing
        ]
        changed = bool(firing - group.sent_firing or resolved)
        if group.last_sent is None:
            # group_wait runs from the first thing to notify; it is off while nothing is.
            waiting_since: float | None = (
                group.waiting_since if group.waiting_since is not None else now
            )
            if not changed:
                waiting_since = None
            if waiting_since != group.waiting_since:
                group.waiting_since = waiting_since
                self._changes.groups.add(key)
            if waiting_since is None or now - waiting_since < self._s.group_wait_s:
                return None
        else:
            since = now - group.last_sent
            repeat = max(self._s.group_interval_s, self._s.repeat_interval_s)
            if not (changed and since >= self._s.group_interval_s) and not (
                firing and since >= repeat
            ):
                return None
        shown = [(fp, a) for fp, a in alerts if fp in firing] + resolved
        return Notification(
            group_labels=dict(zip(self._s.group_by, key, strict=True)),
            status="firing" if firing else "resolved",
            alerts=[self._public(fp, a) for fp, a in sorted(shown)],
            sent_at=now,
        )

    def _drop_alerts_of(self, rule: str, now: float) -> None:
        for fingerprint in [fp for fp, a in self._active.items() if a.rule.name == rule]:
            alert = self._active.pop(fingerprint)
            if alert.state != "resolved":
                self._record(fingerprint, alert, "inactive", now)
            self._changes.alerts.add(fingerprint)
        self._flush()

    def _record(self, fingerprint: str, alert: _Active, state: HistoryState, at: float) -> None:
        self._changes.alerts.add(fingerprint)
        self._changes.history.append(
            AlertHistoryEntry(
                at=at,
                fingerprint=fingerprint,
                rule=alert.rule.name,
                state=state,
                labels=alert.labels,
                value=alert.value,
            )
        )

    def _flush(self) -> None:
        changes, self._changes = self._changes, _Changes()
        if not (changes.alerts or changes.groups or changes.history):
            return
        kept = [fp for fp in sorted(changes.alerts) if fp in self._active]
        groups = [k for k in sorted(changes.groups) if k in self._groups]
        self._store.sync(
            alerts=[self._stored(fp, self._active[fp]) for fp in kept],
            gone=changes.alerts - set(kept),
            groups=[self._group_record(k, self._groups[k]) for k in groups],
            gone_groups=changes.groups - set(groups),
            history=changes.history,
        )

    @staticmethod
    def _stored(fingerprint: str, alert: _Active) -> StoredAlert:
        return StoredAlert(
            fingerprint=fingerprint,
            rule=alert.rule,
            labels=alert.labels,
            value=alert.value,
            state=alert.state,
            active_at=alert.active_at,
            fired_at=alert.fired_at,
            resolved_at=alert.resolved_at,
        )

    @staticmethod
    def _group_record(key: _GroupKey, group: _Group) -> GroupRecord:
        return GroupRecord(
            key=list(key),
            sent_firing=sorted(group.sent_firing),
            last_sent=group.last_sent,
            waiting_since=group.waiting_since,
        )

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
