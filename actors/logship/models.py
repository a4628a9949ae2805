"""Messages of log shipping: the :class:`LogRecord` on ``logs.<host>.<source>`` and the counters.

Every message of the ``LOGS`` stream is one :class:`LogRecord` as JSON (schema ``version`` 1);
its ``Nats-Msg-Id`` is :meth:`LogRecord.msg_id`, derived from where the line lies in its file, so
publishing the same line again is stored once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cluster.base.constants import LOGS_SUBJECT_PREFIX
from cluster.base.settings import LogSeverity

__all__ = ["LogRecord", "ShipperStats", "SourceStats"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LogRecord(_Model):
    """One log line as shipped."""

    version: Literal[1] = 1
    host: str = Field(description="Host tag of the machine the file is on.")
    source: str = Field(description="Configured source the file belongs to.")
    path: str
    file_id: str = Field(description="<device>:<inode>:<fingerprint> of the file.")
    offset: int = Field(ge=0, description="Byte offset of the line in the file.")
    read_at: datetime = Field(description="When the shipper read the line (UTC).")
    line: str = Field(description="The line without its newline (UTF-8, invalid bytes replaced).")
    truncated: bool = Field(
        default=False, description="The line was longer than max_line_bytes and is cut there."
    )
    error_type: str | None = Field(default=None, description="Of the first matching pattern.")
    severity: LogSeverity | None = None

    def subject(self) -> str:
        return f"{LOGS_SUBJECT_PREFIX}.{self.host}.{self.source}"

    def msg_id(self) -> str:
        """Deterministic id of this line: the same bytes of the same file give the same id."""
        return f"{self.host}:{self.source}:{self.file_id}:{self.offset}"


class SourceStats(_Model):
    """Counters of one source of one shipper, since the shipper started."""

    source: str
    files: int = Field(ge=0, description="Files followed now.")
    unshipped_bytes: int = Field(ge=0, description="Bytes of them beyond the shipped positions.")
    lines: dict[str, int] = Field(
        default_factory=dict, description="Lines shipped by error_type ('none': unclassified)."
    )
    bytes: int = Field(default=0, ge=0, description="Bytes of the lines shipped.")
    duplicates: int = Field(default=0, ge=0, description="Lines the stream had already stored.")


class ShipperStats(_Model):
    """What the hub samples from one host's shipper each round."""

    host: str
    connected: bool = Field(description="Connected to NATS, LOGS stream set up.")
    sources: list[SourceStats] = Field(default_factory=list)
    error: str | None = Field(default=None, description="Why the shipper could not be read.")
