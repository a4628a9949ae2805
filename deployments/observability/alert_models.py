"""Pydantic models of alerting: matchers, silences, alerts as listed, notifications as
published, and the records the alert store keeps across restarts."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, model_validator

from cluster.base.settings import AlertRuleSpec, AlertSeverity

__all__ = [
    "Alert",
    "AlertHistoryEntry",
    "AlertState",
    "GroupRecord",
    "HistoryState",
    "MatchType",
    "Matcher",
    "Notification",
    "Silence",
    "SilenceRequest",
    "StoredAlert",
]

AlertState = Literal["pending", "firing", "resolved"]
#: A history row's state; ``inactive``: a pending alert whose condition stopped holding, or an
#: alert dropped because its rule was replaced or deleted.
HistoryState = Literal["pending", "firing", "resolved", "inactive"]
#: Alertmanager's matcher types: equal, not equal, regex match, regex non-match.
MatchType = Literal["=", "!=", "=~", "!~"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Matcher(_Model):
    """One Alertmanager label matcher: the label ``name`` compared with ``value`` by ``type``.

    A missing label counts as ``""``. Regular expressions (``=~``, ``!~``) must match the whole
    value, as Alertmanager anchors them (``^(?:value)$``). Alertmanager's API v2 spelling,
    ``isRegex``/``isEqual``, is accepted in place of ``type``.
    """

    name: str = Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")
    value: str = Field(max_length=1024)
    type: MatchType = "="
    _regex: re.Pattern[str] | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def accept_alertmanager_v2_flags(cls, data: Any) -> Any:
        if not isinstance(data, dict) or ("isRegex" not in data and "isEqual" not in data):
            return data
        if "type" in data:
            raise ValueError("give a matcher either 'type' or Alertmanager's isRegex/isEqual")
        data = dict(data)
        regex, equal = bool(data.pop("isRegex", False)), bool(data.pop("isEqual", True))
        data["type"] = ("=~" if regex else "=") if equal else ("!~" if regex else "!=")
        return data

    @model_validator(mode="after")
    def regex_is_valid(self) -> Matcher:
        if self.type in ("=~", "!~"):
            try:
                self._regex = re.compile(self.value)
            except re.error as exc:
                raise ValueError(
                    f"matcher {self.name}{self.type}{self.value!r} is not a valid regular "
                    f"expression ({exc}); use type '=' or '!=' to compare the value literally"
                ) from None
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.name, "")
        if self._regex is None:
            return (value == self.value) == (self.type == "=")
        return (self._regex.fullmatch(value) is not None) == (self.type == "=~")


def _exact_matchers(value: Any) -> Any:
    # The first shape of the API: {"label": "value", ...}, every matcher exact.
    if isinstance(value, Mapping):
        return [{"name": name, "value": v} for name, v in value.items()]
    return value


#: Matchers as a list of :class:`Matcher`, or as a mapping of label -> exact value.
Matchers = Annotated[list[Matcher], BeforeValidator(_exact_matchers)]


class SilenceRequest(_Model):
    """``POST /observability/silences``: mute alerts whose labels match, for a while.

    ``matchers`` is ``{"host": "pc2"}`` (exact values) or a list such as
    ``[{"name": "host", "value": "pc.*", "type": "=~"}]``.
    """

    matchers: Matchers = Field(min_length=1, description="All must match an alert's labels.")
    starts_at: float | None = Field(
        default=None, description="Epoch seconds the silence begins; None or a past time: now."
    )
    duration_s: float = Field(gt=0, le=30 * 86_400, description="How long from its start.")
    comment: str = Field(default="", max_length=512)
    created_by: str = Field(default="", max_length=128)

    @model_validator(mode="after")
    def some_matcher_rejects_the_empty_string(self) -> SilenceRequest:
        # Alertmanager's rule: a silence whose every matcher matches "" would mute nearly all.
        if all(m.matches({}) for m in self.matchers):
            raise ValueError(
                "every matcher of the silence matches an empty or missing label, so it would "
                "mute almost every alert; add a matcher such as {'name': 'host', 'value': 'pc2'}"
            )
        return self


class Silence(_Model):
    """An Alertmanager silence: matching alerts are not notified between ``starts_at`` and
    ``ends_at``."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    matchers: Matchers = Field(min_length=1)
    starts_at: float
    ends_at: float
    comment: str = ""
    created_by: str = ""

    @model_validator(mode="after")
    def ends_after_it_starts(self) -> Silence:
        if self.ends_at <= self.starts_at:
            raise ValueError("a silence's ends_at must be after its starts_at")
        return self

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(matcher.matches(labels) for matcher in self.matchers)


class Alert(_Model):
    """One alert instance: a rule on one series."""

    fingerprint: str
    rule: str
    severity: AlertSeverity
    state: AlertState
    labels: dict[str, str]
    value: float
    summary: str
    active_at: float = Field(description="When the condition started to hold (pending since).")
    fired_at: float | None = None
    resolved_at: float | None = None
    silenced_by: list[str] = Field(default_factory=list)
    inhibited_by: list[str] = Field(default_factory=list)


class Notification(_Model):
    """What a notifier is given for one alert group: its firing and newly resolved alerts."""

    group_labels: dict[str, str]
    status: Literal["firing", "resolved"]
    alerts: list[Alert]
    sent_at: float


class AlertHistoryEntry(_Model):
    """One state transition of an alert (``GET /observability/alerts/history``)."""

    at: float
    fingerprint: str
    rule: str
    state: HistoryState
    labels: dict[str, str]
    value: float


class StoredAlert(_Model):
    """An active alert as the store keeps it; the rule is kept to tell whether it changed."""

    fingerprint: str
    rule: AlertRuleSpec
    labels: dict[str, str]
    value: float
    state: AlertState
    active_at: float
    fired_at: float | None = None
    resolved_at: float | None = None


class GroupRecord(_Model):
    """An alert group's routing state: what was last notified, and when."""

    key: list[str] = Field(description="The group's values of the group_by labels.")
    sent_firing: list[str] = Field(description="Fingerprints last notified as firing.")
    last_sent: float | None = None
    waiting_since: float | None = Field(
        default=None, description="Since when a never-notified group waits out group_wait."
    )
