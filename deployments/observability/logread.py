"""Reading the ``LOGS`` stream back, bounded: pages newest first, and a live follow.

JetStream reads forward only, so a page walks the stream *backwards in windows*: for each
window of sequence numbers ``[lo, hi)`` an ephemeral pull consumer (no acks, in memory,
filtered to ``logs.<host|*>.<source|*>``) starts at ``lo`` and is asked for a batch at a time
until it passes ``hi``. One page examines at most ``logs.read_scan_max`` sequence numbers and
holds at most one window's lines, whatever the stream's size. ``since`` and ``until`` become
sequence bounds through a consumer that starts at that time (its info names the first sequence
stored then), so a range far back costs no scan of what came after it.

A follow is one pull consumer from ``after_seq + 1`` (or from new lines) that is asked for at
most :data:`FOLLOW_BATCH` lines at a time, and only after the last batch was handed on: the
replica never buffers more than one batch per connection.

Example::

    reader = LogReader(broker, settings.observability.logs)
    page = await reader.page(LogQuery(host="mainpc", limit=50))
    async for entry in await reader.follow(LogFilter(text="oom"), after_seq=page.items[0].seq):
        ...  # None: nothing new for sse_keepalive_s
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from actors.logship.models import LogRecord
from cluster.base.constants import LOGS_STREAM
from cluster.base.errors import ClusterError, ConfigError
from cluster.base.nats_client import NatsClient
from cluster.base.settings import LogShippingSettings
from deployments.observability.log_models import LogEntry, LogFilter, LogPage, LogQuery

__all__ = ["FOLLOW_BATCH", "WINDOW", "LogReader"]

logger = logging.getLogger(__name__)

#: Sequence numbers one consumer of a page covers.
WINDOW: Final = 1000
#: Lines a follow takes from the stream at once (and so buffers per connection at most).
FOLLOW_BATCH: Final = 100
#: Lines a page's consumer is asked for at once.
_FETCH: Final = 250
#: Bound of connecting to NATS (nats-py's connect can keep retrying on its own).
_CONNECT_TIMEOUT_S: Final = 10.0
#: An abandoned reader's consumer is removed by the server after this long.
_INACTIVE_S: Final = 30.0
_UNAVAILABLE = (nats.errors.Error, nats.js.errors.Error, TimeoutError, OSError)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _stored_at(msg: Msg) -> datetime:
    """When the stream stored ``msg``, cut to the microsecond.

    nats-py's ``metadata.timestamp`` divides the nanoseconds of the reply subject as a float and
    can land a microsecond *after* the true time; a ``since`` equal to a line's own time would
    then miss it. Cut down, the time is never later than the server's, so ranges hold.
    """
    tokens = (msg.reply or "").split(".")
    # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<nanos>.<pending> (9 tokens), or
    # the form with domain and account hash, whose nanos are at Msg.Ack.Timestamp.
    nanos = int(tokens[7] if len(tokens) == 9 else tokens[Msg.Ack.Timestamp])
    return _EPOCH + timedelta(microseconds=nanos // 1000)


def _entry(msg: Msg) -> LogEntry | None:
    """The stored line of ``msg``; None (logged) for a message that is not a LogRecord."""
    seq = msg.metadata.sequence.stream
    try:
        record = LogRecord.model_validate_json(msg.data)
    except ValidationError as exc:
        logger.warning("LOGS message %d is not a LogRecord: %s", seq, exc)
        return None
    return LogEntry(seq=seq, stored_at=_stored_at(msg), **dict(record))


@dataclass(frozen=True)
class _Follow:
    name: str
    sub: JetStreamContext.PullSubscription


def _consumer_config(
    policy: DeliverPolicy,
    *,
    start_seq: int | None = None,
    start_time: datetime | None = None,
    subject: str | None = None,
) -> ConsumerConfig:
    """An ephemeral reader: no acks, in memory, removed by the server once abandoned."""
    return ConsumerConfig(
        name=f"logs-read-{secrets.token_hex(8)}",
        deliver_policy=policy,
        opt_start_seq=start_seq,
        opt_start_time=start_time,
        filter_subject=subject,
        ack_policy=AckPolicy.NONE,
        inactive_threshold=_INACTIVE_S,
        mem_storage=True,
        num_replicas=1,
    )


class LogReader:
    """Pages and follows of ``LOGS`` over one NATS connection, made on first use.

    Args:
        broker: the NATS URL and aisys's credentials.
        settings: the log shipping section (``read_scan_max``, ``sse_keepalive_s``).
    """

    def __init__(self, broker: NatsClient, settings: LogShippingSettings) -> None:
        self._broker = broker
        self.settings = settings
        self._nc: Client | None = None
        self._lock = asyncio.Lock()

    async def _js(self) -> JetStreamContext:
        async with self._lock:
            if self._nc is None or self._nc.is_closed:
                self._nc = await self._connect()
            return self._nc.jetstream(timeout=self.settings.ack_timeout_s)

    async def _connect(self) -> Client:
        try:
            user, password = self._broker.credentials()
        except ConfigError as exc:
            raise ClusterError(f"logs: {exc}") from exc

        async def on_error(exc: Exception) -> None:
            logger.debug("NATS client error: %s", exc)

        nc = Client()
        try:
            # Once connected, the client reconnects by itself (max_reconnect_attempts=-1).
            await asyncio.wait_for(
                nc.connect(
                    servers=[self._broker.url],
                    user=user,
                    password=password,
                    connect_timeout=2,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    error_cb=on_error,
                ),
                _CONNECT_TIMEOUT_S,
            )
        except _UNAVAILABLE as exc:
            await nc.close()
            raise ClusterError(
                f"logs: NATS at {self._broker.display_url} is not reachable: {exc!r}"
            ) from exc
        return nc

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.close()
        self._nc = None

    # -- pages ---------------------------------------------------------------------------

    async def page(self, query: LogQuery) -> LogPage:
        """The newest ``query.limit`` matching lines before ``query.before_seq``.

        Raises:
            ClusterError: NATS is not reachable.
        """
        js = await self._js()
        try:
            return await self._page(js, query)
        except nats.js.errors.NotFoundError:
            return LogPage(items=[], next_before_seq=None, scanned=0, last_seq=0)  # none shipped
        except _UNAVAILABLE as exc:
            raise ClusterError(f"logs: reading the {LOGS_STREAM} stream failed: {exc!r}") from exc

    async def _page(self, js: JetStreamContext, query: LogQuery) -> LogPage:
        state = (await js.stream_info(LOGS_STREAM)).state
        lower, upper = max(state.first_seq, 1), state.last_seq + 1
        if query.before_seq is not None:
            upper = min(upper, query.before_seq)
        if query.until is not None and upper > lower:
            after_until = query.until + timedelta(microseconds=1)
            upper = min(upper, await self._first_seq_at(js, after_until))
        if query.since is not None and upper > lower:
            lower = max(lower, await self._first_seq_at(js, query.since))
        budget = self.settings.read_scan_max
        items: list[LogEntry] = []
        hi = upper
        while hi > lower and budget > 0:
            lo = max(lower, hi - min(WINDOW, budget))
            window = await self._window(js, query.subject(), lo, hi)
            budget -= hi - lo
            for entry in reversed(window):
                if query.matches(entry) and query.in_range(entry):
                    items.append(entry)
                    if len(items) == query.limit:
                        return LogPage(
                            items=items,
                            next_before_seq=entry.seq,
                            scanned=upper - lo,
                            last_seq=state.last_seq,
                        )
            hi = lo
        cursor = hi if hi > lower else None
        return LogPage(
            items=items, next_before_seq=cursor, scanned=upper - hi, last_seq=state.last_seq
        )

    async def _first_seq_at(self, js: JetStreamContext, when: datetime) -> int:
        """The first sequence the stream stored at or after ``when`` (last + 1: none)."""
        config = _consumer_config(DeliverPolicy.BY_START_TIME, start_time=when)
        info = await js.add_consumer(LOGS_STREAM, config)
        await self._delete(js, info.name)
        # A new consumer reports the sequence before the one it starts at as delivered.
        return int(info.delivered.stream_seq if info.delivered else 0) + 1

    async def _window(self, js: JetStreamContext, subject: str, lo: int, hi: int) -> list[LogEntry]:
        """The lines on ``subject`` with ``lo <= seq < hi``, oldest first."""
        config = _consumer_config(DeliverPolicy.BY_START_SEQUENCE, start_seq=lo, subject=subject)
        info = await js.add_consumer(LOGS_STREAM, config)
        entries: list[LogEntry] = []
        sub = None
        try:
            sub = await js.pull_subscribe_bind(
                consumer=info.name, stream=LOGS_STREAM, pending_msgs_limit=2 * _FETCH
            )
            pending = int(info.num_pending or 0)
            while pending > 0:
                try:
                    msgs = await sub.fetch(min(pending, _FETCH), self.settings.ack_timeout_s)
                except TimeoutError:
                    return entries  # retention removed what was pending
                for msg in msgs:
                    if msg.metadata.sequence.stream >= hi:
                        return entries
                    entry = _entry(msg)
                    if entry is not None:
                        entries.append(entry)
                pending = int(msgs[-1].metadata.num_pending)
            return entries
        finally:
            if sub is not None:
                with contextlib.suppress(*_UNAVAILABLE):
                    await sub.unsubscribe()
            await self._delete(js, info.name)

    # -- follow --------------------------------------------------------------------------

    async def follow(self, flt: LogFilter, after_seq: int | None) -> AsyncIterator[LogEntry | None]:
        """Start following now; iterate the matching lines stored after ``after_seq`` (or new).

        The iterator yields None when nothing was handed on for ``sse_keepalive_s``, so the
        caller can send a keep-alive. The consumer exists before this returns: a line stored
        after it returned is always seen.

        Raises:
            ClusterError: NATS is not reachable, or no line was ever shipped (no stream).
        """
        js = await self._js()
        try:
            follow = await self._follow_consumer(js, flt.subject(), after_seq)
        except nats.js.errors.NotFoundError as exc:
            raise ClusterError(f"logs: no {LOGS_STREAM} stream yet (no line was shipped)") from exc
        except _UNAVAILABLE as exc:
            raise ClusterError(f"logs: cannot follow the {LOGS_STREAM} stream: {exc!r}") from exc
        return self._iterate(js, follow, flt, after_seq)

    async def _follow_consumer(
        self, js: JetStreamContext, subject: str, after_seq: int | None
    ) -> _Follow:
        if after_seq is None:
            config = _consumer_config(DeliverPolicy.NEW, subject=subject)
        else:
            config = _consumer_config(
                DeliverPolicy.BY_START_SEQUENCE, start_seq=after_seq + 1, subject=subject
            )
        info = await js.add_consumer(LOGS_STREAM, config)
        sub = await js.pull_subscribe_bind(
            consumer=info.name, stream=LOGS_STREAM, pending_msgs_limit=2 * FOLLOW_BATCH
        )
        return _Follow(info.name, sub)

    async def _iterate(
        self,
        js: JetStreamContext,
        follow: _Follow,
        flt: LogFilter,
        after_seq: int | None,
    ) -> AsyncIterator[LogEntry | None]:
        keepalive_s = self.settings.sse_keepalive_s
        last_sent = time.monotonic()
        try:
            while True:
                try:
                    msgs = await follow.sub.fetch(FOLLOW_BATCH, timeout=keepalive_s)
                except TimeoutError:
                    msgs = []
                    follow = await self._still_there(js, follow, flt, after_seq)
                for msg in msgs:
                    entry = _entry(msg)
                    after_seq = msg.metadata.sequence.stream
                    if entry is not None and flt.matches(entry):
                        last_sent = time.monotonic()
                        yield entry
                if time.monotonic() - last_sent >= keepalive_s:
                    last_sent = time.monotonic()
                    yield None
        finally:
            with contextlib.suppress(*_UNAVAILABLE):
                await follow.sub.unsubscribe()
            await self._delete(js, follow.name)

    async def _still_there(
        self, js: JetStreamContext, follow: _Follow, flt: LogFilter, after_seq: int | None
    ) -> _Follow:
        """The follow's consumer, made again after ``after_seq`` if NATS lost it (a restart)."""
        try:
            await follow.sub.consumer_info()
        except nats.js.errors.NotFoundError:
            logger.info("a log follow's consumer is gone; following again after %s", after_seq)
            with contextlib.suppress(*_UNAVAILABLE):
                await follow.sub.unsubscribe()
            return await self._follow_consumer(js, flt.subject(), after_seq)
        except _UNAVAILABLE as exc:
            logger.debug("log follow: NATS unavailable for now: %s", exc)
        return follow

    @staticmethod
    async def _delete(js: JetStreamContext, name: str | None) -> None:
        if name is None:
            return
        # Best effort: a consumer left behind goes by itself after _INACTIVE_S.
        with contextlib.suppress(*_UNAVAILABLE):
            await js.delete_consumer(LOGS_STREAM, name)
