"""ErrorBus messages: the :class:`ErrorEvent` stored in the ``ERRORS`` stream and the HTTP models.

Every event on ``errors.<severity>.<agent>`` is one :class:`ErrorEvent` serialised as JSON; its
``id`` is also the ``Nats-Msg-Id`` header, so a retried publish is stored once.

Example::

    event = ErrorEvent(agent="MemoryClient", error_type="connection_failure",
                       severity="error", message="redis refused")
    event.subject()        # "errors.error.MemoryClient"
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from cluster.base.constants import ERRORS_SUBJECT_PREFIX

__all__ = [
    "SEVERITIES",
    "AgentCounts",
    "ErrorBatch",
    "ErrorCounts",
    "ErrorEvent",
    "ErrorPage",
    "ErrorQuery",
    "PublishResult",
    "Severity",
    "StoredEvent",
    "normalize_severity",
    "severity_rank",
    "subject_token",
]

Severity = Literal["debug", "info", "warning", "error", "critical"]
#: Severities from least to most severe.
SEVERITIES: Final[tuple[Severity, ...]] = ("debug", "info", "warning", "error", "critical")

# Every spelling the legacy agents use (ErrorPublisher's critical/high/medium/low, the
# upper-case ERROR/WARNING, Python's logging names, str() of a str-Enum) mapped to one of five.
_SEVERITY_ALIASES: Final[dict[str, Severity]] = {
    "debug": "debug",
    "trace": "debug",
    "info": "info",
    "information": "info",
    "notice": "info",
    "low": "info",
    "warning": "warning",
    "warn": "warning",
    "medium": "warning",
    "error": "error",
    "err": "error",
    "high": "error",
    "critical": "critical",
    "crit": "critical",
    "fatal": "critical",
    "emergency": "critical",
    "alert": "critical",
}
_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_TOKEN_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_TOKEN_MAX = 64

ShortText = Annotated[str, Field(max_length=256)]


def normalize_severity(value: object) -> Severity | None:
    """Map a severity in any legacy spelling to one of :data:`SEVERITIES`; None if unknown.

    ``"ErrorSeverity.ERROR"``, ``"ERROR"``, ``"high"`` and ``40`` (logging's level) all work.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        level = int(value)  # logging levels: 10 debug ... 50 critical
        return SEVERITIES[max(0, min(4, level // 10 - 1))] if level >= 10 else None
    if not isinstance(value, str):
        return None
    text = value.strip().lower().rsplit(".", 1)[-1]
    return _SEVERITY_ALIASES.get(text)


def severity_rank(severity: Severity) -> int:
    """0 for ``debug`` up to 4 for ``critical``."""
    return SEVERITIES.index(severity)


def subject_token(name: str) -> str:
    """Turn an agent name into one NATS subject token (no ``.``, ``*``, ``>`` or whitespace)."""
    token = _TOKEN_UNSAFE.sub("_", name)[:_TOKEN_MAX]
    return token or "unknown"


def _as_utc(value: datetime) -> datetime:
    # A naive time is taken as UTC, as the legacy agents' utcnow() stamps are.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _new_id() -> str:
    # 128 random bits as 32 hex digits, as uuid4().hex less its version bits, at a quarter
    # of the cost (an id is made for every event that comes without one).
    return os.urandom(16).hex()


def _now() -> datetime:
    return datetime.now(UTC)


class ErrorEvent(BaseModel):
    """One error, as stored in the ``ERRORS`` stream (schema ``version`` 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    id: str = Field(default_factory=_new_id, description="Unique; also the Nats-Msg-Id.")
    time: datetime = Field(default_factory=_now, description="When the error happened (UTC).")
    host: ShortText = Field(default="", description="Machine the error happened on.")
    agent: ShortText = Field(default="unknown", min_length=1)
    error_type: ShortText = Field(default="unknown", min_length=1)
    severity: Severity = "error"
    message: str = ""
    details: dict[str, JsonValue] = Field(default_factory=dict)
    stack_trace: str | None = None
    correlation_id: ShortText | None = None

    @field_validator("id")
    @classmethod
    def id_is_a_short_token(cls, value: str) -> str:
        if not _ID_RE.match(value):
            raise ValueError(
                f"id {value[:40]!r} must be 1-128 characters of letters, digits, '_', '.', ':' "
                "or '-'"
            )
        return value

    @field_validator("severity", mode="before")
    @classmethod
    def severity_in_any_legacy_spelling(cls, value: Any) -> Any:
        normal = normalize_severity(value)
        if normal is None:
            raise ValueError(f"severity {value!r} is not one of {', '.join(SEVERITIES)}")
        return normal

    @field_validator("time")
    @classmethod
    def time_is_utc(cls, value: datetime) -> datetime:
        return _as_utc(value)

    def subject(self) -> str:
        """The stream subject of this event, ``errors.<severity>.<agent token>``."""
        return f"{ERRORS_SUBJECT_PREFIX}.{self.severity}.{subject_token(self.agent)}"


class ErrorBatch(BaseModel):
    """Body of ``POST /errors`` carrying several events."""

    model_config = ConfigDict(extra="forbid")

    events: list[ErrorEvent] = Field(min_length=1, max_length=10_000)


class PublishResult(BaseModel):
    """Reply to a publish: every listed event is stored or safely spooled on disk."""

    accepted: list[str] = Field(description="Ids of the events accepted, in request order.")
    stored: int = Field(description="How many the stream acknowledged.")
    spooled: int = Field(description="How many wait in the on-disk spool for NATS to return.")


class ErrorQuery(BaseModel):
    """Filters and paging of ``GET /errors``; results are newest first."""

    model_config = ConfigDict(extra="forbid")

    since: datetime | None = None
    until: datetime | None = None
    min_severity: Severity | None = None
    agent: ShortText | None = None
    host: ShortText | None = None
    error_type: ShortText | None = None
    text: ShortText | None = Field(default=None, description="Substring of message or type.")
    before_seq: int | None = Field(default=None, ge=1, description="Paging cursor.")
    limit: int = Field(default=100, ge=1, le=1000)

    @field_validator("since", "until")
    @classmethod
    def naive_times_are_utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _as_utc(value)


class StoredEvent(BaseModel):
    """An event with its stream sequence number."""

    seq: int
    event: ErrorEvent


class ErrorPage(BaseModel):
    """One page of ``GET /errors``; pass ``next_before_seq`` as ``before_seq`` for the next."""

    items: list[StoredEvent]
    next_before_seq: int | None


class AgentCounts(BaseModel):
    """Error counts of one agent by severity."""

    total: int
    by_severity: dict[Severity, int]


class ErrorCounts(BaseModel):
    """Reply of ``GET /errors/counts``: per-agent counts since a time."""

    since: datetime | None
    agents: dict[str, AgentCounts]
