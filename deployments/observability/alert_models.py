"""Pydantic models of alerting: silences, alerts as listed, notifications as published."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cluster.settings import AlertSeverity

__all__ = ["Alert", "AlertState", "Notification", "Silence", "SilenceRequest"]

AlertState = Literal["pending", "firing", "resolved"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SilenceRequest(_Model):
    """``POST /observability/silences``: mute alerts whose labels match, for a while."""

    matchers: dict[str, str] = Field(min_length=1, description="Label values to match exactly.")
    duration_s: float = Field(gt=0, le=30 * 86_400)
    comment: str = Field(default="", max_length=512)
    created_by: str = Field(default="", max_length=128)


class Silence(_Model):
    """An Alertmanager silence: matching alerts are not notified between ``starts_at`` and
    ``ends_at``."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    matchers: dict[str, str] = Field(min_length=1)
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
