"""Models of reading the ``LOGS`` stream back: the filter, a stored line, a page.

``GET /observability/logs`` pages newest first over the stream's sequence numbers (pass a page's
``next_before_seq`` as ``before_seq``); ``GET /observability/logs/stream`` follows new lines as
Server-Sent Events. Both take the same :class:`LogFilter`.

Example::

    flt = LogFilter(host="mainpc", min_severity="warning", text="redis")
    flt.matches(entry)      # the checks the subject filter cannot make
    flt.subject()           # "logs.mainpc.*"
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from actors.logship.models import LogRecord
from cluster.base.constants import LOGS_SUBJECT_PREFIX
from cluster.base.settings import LogSeverity

__all__ = [
    "CLASS_PATTERN",
    "LOG_SEVERITIES",
    "MAX_PAGE",
    "TOKEN_PATTERN",
    "UNCLASSIFIED",
    "LogEntry",
    "LogFilter",
    "LogPage",
    "LogQuery",
]

#: Severities from lowest to highest; a line no pattern matched has none and ranks below all.
LOG_SEVERITIES: Final[tuple[LogSeverity, ...]] = ("debug", "info", "warning", "error", "critical")
#: The ``class`` that selects unclassified lines (the exporter's label for them, too).
UNCLASSIFIED: Final = "none"
#: The most lines one page returns; a larger ``limit`` is refused (422).
MAX_PAGE: Final = 1000
#: A host tag or source name: one NATS subject token, no wildcards.
TOKEN_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
#: An error type as the log patterns name them (``LogPattern.error_type``), or ``none``.
CLASS_PATTERN: Final = r"^[a-z][a-z0-9_]{0,63}$"


def _rank(severity: LogSeverity | None) -> int:
    return -1 if severity is None else LOG_SEVERITIES.index(severity)


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class LogEntry(LogRecord):
    """A shipped line as stored: its ``LOGS`` sequence number and when the stream stored it."""

    seq: int = Field(ge=1, description="Stream sequence number; the SSE event id.")
    stored_at: datetime = Field(description="When the stream stored the line (UTC).")


class LogFilter(BaseModel):
    """What a reader asks for; every field optional, all of them must hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str | None = Field(default=None, pattern=TOKEN_PATTERN)
    source: str | None = Field(default=None, pattern=TOKEN_PATTERN)
    error_class: str | None = Field(
        default=None,
        pattern=CLASS_PATTERN,
        description=f"The line's error_type; {UNCLASSIFIED!r} selects unclassified lines.",
    )
    min_severity: LogSeverity | None = Field(
        default=None, description="Lines classified at this severity or above (unclassified: no)."
    )
    text: str | None = Field(
        default=None, min_length=1, max_length=256, description="Substring, case-insensitive."
    )

    def subject(self) -> str:
        """The stream subject filter: ``logs.<host|*>.<source|*>``."""
        return f"{LOGS_SUBJECT_PREFIX}.{self.host or '*'}.{self.source or '*'}"

    def matches(self, entry: LogRecord) -> bool:
        """Whether ``entry`` passes every filter (the subject's too, checked again here)."""
        if self.host is not None and entry.host != self.host:
            return False
        if self.source is not None and entry.source != self.source:
            return False
        if self.error_class is not None and (entry.error_type or UNCLASSIFIED) != self.error_class:
            return False
        if self.min_severity is not None and _rank(entry.severity) < _rank(self.min_severity):
            return False
        return self.text is None or self.text.lower() in entry.line.lower()


class LogQuery(LogFilter):
    """Filters and paging of ``GET /observability/logs``; results are newest first."""

    since: datetime | None = Field(default=None, description="Stored at or after (naive: UTC).")
    until: datetime | None = Field(default=None, description="Stored at or before (naive: UTC).")
    before_seq: int | None = Field(
        default=None, ge=1, description="Paging cursor: lines before this sequence number."
    )
    limit: int = Field(default=100, ge=1, le=MAX_PAGE)

    @field_validator("since", "until")
    @classmethod
    def naive_times_are_utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _as_utc(value)

    @model_validator(mode="after")
    def since_is_not_after_until(self) -> LogQuery:
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ValueError("since is after until; give a time range that runs forward")
        return self

    def in_range(self, entry: LogEntry) -> bool:
        return (self.since is None or entry.stored_at >= self.since) and (
            self.until is None or entry.stored_at <= self.until
        )


class LogPage(BaseModel):
    """One page of ``GET /observability/logs``, newest first.

    ``next_before_seq`` is the cursor of the next (older) page, None once the scan reached the
    start of the stream or ``since``. A page examines a bounded stretch of the stream, so with
    narrow filters it may hold fewer than ``limit`` lines and still have a cursor: ask again.
    """

    items: list[LogEntry]
    next_before_seq: int | None
    scanned: int = Field(ge=0, description="Stream sequence numbers this page examined.")
    last_seq: int = Field(
        ge=0, description="The stream's last sequence number then; follow after it for newer lines."
    )
