"""The log shipper of one host: tail every source, classify, publish, then commit positions.

A pass reads up to ``batch_size`` lines of each source, publishes them to ``logs.<host>.<source>``
with a ``Nats-Msg-Id`` derived from the line's place in its file, and stores the positions of the
lines the stream acknowledged, in that order. So a line is in the stream before its position is
on disk: a crash in between publishes it again and JetStream's duplicate window keeps one copy.
While NATS is unreachable nothing moves; the log files themselves are the buffer.

Example::

    shipper = LogShipper("pc2", settings.observability.logs, ray_temp_dir, store, stream)
    await shipper.run()        # forever; or ``await shipper.ship_once()`` for one pass
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from actors.logship.classify import LineClassifier
from actors.logship.models import LogRecord, ShipperStats, SourceStats
from actors.logship.publish import LogStream
from actors.logship.store import PositionStore
from actors.logship.tail import Line, SourceTailer
from cluster.base.errors import ClusterError
from cluster.base.settings import LogShippingSettings

__all__ = ["LogShipper"]

logger = logging.getLogger(__name__)

#: Longest wait between two connect attempts while NATS is unreachable.
MAX_RETRY_S = 30.0
#: Label of lines no pattern matched, in the counters.
UNCLASSIFIED = "none"


class _Counters:
    def __init__(self) -> None:
        self.lines: Counter[str] = Counter()
        self.bytes = 0
        self.duplicates = 0


class LogShipper:
    """Ships the configured sources of host ``host``; see the module docstring.

    Args:
        host: the host tag, the middle token of the subjects.
        settings: sources, patterns, batch and line limits.
        ray_temp_dir: what ``{ray_temp_dir}`` in a glob stands for on this host.
        store: committed positions.
        stream: the ``LOGS`` publisher.
        clock: seconds since the epoch.
    """

    def __init__(
        self,
        host: str,
        settings: LogShippingSettings,
        ray_temp_dir: Path,
        store: PositionStore,
        stream: LogStream,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._host = host
        self._ray_temp_dir = ray_temp_dir
        self._store = store
        self._stream = stream
        self._clock = clock
        self._lock = asyncio.Lock()
        self._counters: dict[str, _Counters] = {}
        self._settings = settings
        self._classifier = LineClassifier(settings.patterns)
        self._tailers = self._build_tailers()

    @property
    def settings(self) -> LogShippingSettings:
        return self._settings

    async def reconfigure(self, settings: LogShippingSettings) -> None:
        """Switch to ``settings``: the positions are kept, the sources and patterns replaced."""
        if settings == self._settings:
            return
        async with self._lock:
            self._close_tailers()
            self._settings = settings
            self._classifier = LineClassifier(settings.patterns)
            self._tailers = self._build_tailers()
            await self._stream.reconfigure(settings)

    async def run(self) -> None:
        """Ship until cancelled: connect (retrying with backoff), then pass after pass."""
        retry_s = self._settings.poll_interval_s
        while True:
            if not self._stream.ready:
                try:
                    await self._stream.connect()
                except ClusterError as exc:
                    logger.warning("%s; retrying in %.1f s", exc, retry_s)
                    await asyncio.sleep(retry_s)
                    retry_s = min(retry_s * 2, MAX_RETRY_S)
                    continue
                retry_s = self._settings.poll_interval_s
            more = False
            if self._stream.connected:
                try:
                    more = await self.ship_once()
                except Exception:
                    # Loop boundary: a failed pass (a file error, a bug) must not end shipping;
                    # it is logged with its traceback and the next pass starts from the
                    # committed positions.
                    logger.exception("log shipping pass failed")
            if not more:
                await asyncio.sleep(self._settings.poll_interval_s)

    async def ship_once(self) -> bool:
        """One pass over every source; True when a source had more lines than one batch."""
        async with self._lock:
            more = False
            for name, tailer in self._tailers.items():
                lines = tailer.poll(self._settings.batch_size)
                stored = await self._ship(name, lines) if lines else 0
                self._store.save(name, *tailer.take_changes())
                if stored < len(lines):
                    return False  # NATS did not take it all: the rest waits for the next pass
                more = more or len(lines) == self._settings.batch_size
            return more

    def stats(self) -> ShipperStats:
        sources = []
        for name, tailer in self._tailers.items():
            counters = self._counters.setdefault(name, _Counters())
            sources.append(
                SourceStats(
                    source=name,
                    files=tailer.file_count,
                    unshipped_bytes=tailer.unread_bytes,
                    lines=dict(counters.lines),
                    bytes=counters.bytes,
                    duplicates=counters.duplicates,
                )
            )
        return ShipperStats(host=self._host, connected=self._stream.connected, sources=sources)

    async def close(self) -> None:
        async with self._lock:
            self._close_tailers()
        await self._stream.close()

    async def _ship(self, source: str, lines: list[Line]) -> int:
        read_at = datetime.fromtimestamp(self._clock(), UTC)
        records = [self._record(source, line, read_at) for line in lines]
        acked = await self._stream.publish(
            [(r.subject(), r.msg_id(), r.model_dump_json().encode()) for r in records]
        )
        self._tailers[source].commit(lines[: len(acked)])
        counters = self._counters.setdefault(source, _Counters())
        for line, record, duplicate in zip(lines, records, acked, strict=False):
            if duplicate:
                counters.duplicates += 1
                continue
            counters.lines[record.error_type or UNCLASSIFIED] += 1
            counters.bytes += line.end - line.offset
        return len(acked)

    def _record(self, source: str, line: Line, read_at: datetime) -> LogRecord:
        match = self._classifier.classify(line.text)
        return LogRecord(
            host=self._host,
            source=source,
            path=line.path,
            file_id=f"{line.key.dev}:{line.key.ino}:{line.fingerprint}",
            offset=line.offset,
            read_at=read_at,
            line=line.text,
            truncated=line.truncated,
            error_type=match.error_type if match else None,
            severity=match.severity if match else None,
        )

    def _build_tailers(self) -> dict[str, SourceTailer]:
        s = self._settings
        tailers = {}
        for name, globs in s.resolved_sources(self._ray_temp_dir).items():
            if not globs:
                logger.info(
                    "log source %r is not watched: its globs are relative and "
                    "observability.logs.legacy_root is not set",
                    name,
                )
                continue
            positions = self._store.load(name)
            tailers[name] = SourceTailer(
                globs, positions, s.max_line_bytes, s.rotate_wait_s, self._clock
            )
        return tailers

    def _close_tailers(self) -> None:
        for tailer in self._tailers.values():
            tailer.close()
