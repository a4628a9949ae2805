"""Reading logs back, without NATS: the filter, the query's checks, the SSE body and its limit,
and the CLI's parsing and printing (tests/integration/test_logs.py runs them for real)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pydantic
import pytest

from cluster.base.errors import ValidationFailed
from cluster.base.settings import LogShippingSettings
from cluster.ops.logview import format_entry, parse_since, sse_events
from deployments.observability.log_models import LogEntry, LogFilter, LogQuery
from deployments.observability.log_sse import sse, stream_limit_s

T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def entry(seq: int = 7, **fields: object) -> LogEntry:
    values: dict[str, object] = {
        "host": "mainpc",
        "source": "legacy",
        "path": "/x/logs/a.log",
        "file_id": "1:2:ab",
        "offset": 0,
        "read_at": T0,
        "line": "redis: Connection REFUSED",
        "error_type": "connection_error",
        "severity": "error",
        "seq": seq,
        "stored_at": T0,
    }
    values.update(fields)
    return LogEntry.model_validate(values)


def test_every_filter_must_hold() -> None:
    line = entry()
    assert LogFilter().matches(line)
    assert LogFilter(host="mainpc", source="legacy", text="connection refused").matches(line)
    assert not LogFilter(host="pc2").matches(line)
    assert not LogFilter(source="ray").matches(line)
    assert LogFilter(error_class="connection_error").matches(line)
    assert not LogFilter(error_class="none").matches(line)
    assert LogFilter(error_class="none").matches(entry(error_type=None, severity=None))
    assert LogFilter(min_severity="warning").matches(line)
    assert LogFilter(min_severity="error").matches(line)
    assert not LogFilter(min_severity="critical").matches(line)
    # An unclassified line has no severity: any minimum leaves it out.
    assert not LogFilter(min_severity="debug").matches(entry(error_type=None, severity=None))
    assert not LogFilter(text="timeout").matches(line)


def test_the_subject_narrows_by_host_and_source() -> None:
    assert LogFilter().subject() == "logs.*.*"
    assert LogFilter(host="pc2").subject() == "logs.pc2.*"
    assert LogFilter(host="pc2", source="ray").subject() == "logs.pc2.ray"


@pytest.mark.parametrize(
    "bad",
    [
        {"host": "logs.>"},
        {"host": "*"},
        {"source": "a.b"},
        {"error_class": "Timeout"},
        {"min_severity": "purple"},
        {"text": ""},
        {"limit": 1001},
        {"limit": 0},
        {"before_seq": 0},
        {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
    ],
)
def test_a_bad_query_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        LogQuery.model_validate(bad)


def test_naive_times_are_utc_and_the_range_is_inclusive() -> None:
    query = LogQuery.model_validate({"since": "2026-01-02T03:04:05", "until": T0.isoformat()})
    assert query.since == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert query.in_range(entry(stored_at=T0))
    assert not query.in_range(entry(stored_at=T0 + timedelta(microseconds=1)))
    assert not query.in_range(entry(stored_at=T0 - timedelta(seconds=1)))


def test_a_stream_ends_a_little_before_serves_timeout_unless_the_client_lifts_it() -> None:
    assert stream_limit_s(None, 40.0) == 37.0
    assert stream_limit_s(None, None) is None
    assert stream_limit_s("0", 40.0) is None  # Serve: zero or less lifts the bound
    assert stream_limit_s("-1", 40.0) is None
    assert stream_limit_s("8", 40.0) == 6.0  # a short bound keeps a quarter of it
    assert stream_limit_s("120", 40.0) == 117.0
    assert stream_limit_s("soon", 40.0) == 37.0  # Serve ignores what is not a number


async def _items(*items: LogEntry | None, then_wait: bool = True) -> AsyncIterator[LogEntry | None]:
    for item in items:
        yield item
    if then_wait:
        await asyncio.sleep(3600)


def test_the_sse_body_has_ids_keepalives_and_ends_itself_at_the_limit() -> None:
    async def body() -> list[bytes]:
        return [chunk async for chunk in sse(_items(entry(seq=41), None, entry(seq=42)), 0.2)]

    chunks = asyncio.run(asyncio.wait_for(body(), 10))
    assert chunks[0] == b"retry: 1000\n: following\n\n"
    events = list(sse_events(iter(b"".join(chunks).decode().split("\n"))))
    assert [(i, e) for i, e, _ in events] == [("41", "log"), ("42", "log")]
    assert LogEntry.model_validate_json(events[0][2]) == entry(seq=41)
    assert b": keep-alive\n\n" in chunks
    assert chunks[-1].startswith(b": the request timeout is near")


def test_an_sse_body_without_a_limit_ends_when_its_source_does() -> None:
    async def body() -> list[bytes]:
        return [chunk async for chunk in sse(_items(entry(), then_wait=False), None)]

    chunks = asyncio.run(asyncio.wait_for(body(), 10))
    assert len(chunks) == 2 and chunks[1].startswith(b"id: 7\nevent: log\n")


def test_the_sse_parser_joins_data_lines_and_skips_comments() -> None:
    text = ": hello\nretry: 1000\n\nid: 3\nevent: log\ndata: a\ndata: b\n\ndata:c\n\n"
    assert list(sse_events(iter(text.split("\n")))) == [
        ("3", "log", "a\nb"),
        ("3", "message", "c"),  # the last id stays until another is given
    ]


def test_since_takes_durations_or_iso_times() -> None:
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    assert parse_since("10m", now) == now - timedelta(minutes=10)
    assert parse_since("2h", now) == now - timedelta(hours=2)
    assert parse_since("1.5d", now) == now - timedelta(hours=36)
    assert parse_since("30s", now) == now - timedelta(seconds=30)
    assert parse_since("2026-04-30T08:00:00", now) == datetime(2026, 4, 30, 8, tzinfo=UTC)
    with pytest.raises(ValidationFailed, match="10m, 2h, 1d"):
        parse_since("yesterday", now)


def test_a_printed_line_is_readable_or_json() -> None:
    assert (
        format_entry(entry(), as_json=False)
        == "2026-01-02T03:04:05.678Z mainpc/legacy ERROR [connection_error] "
        "redis: Connection REFUSED"
    )
    plain = entry(error_type=None, severity=None, line="hello")
    assert format_entry(plain, as_json=False) == "2026-01-02T03:04:05.678Z mainpc/legacy hello"
    assert json.loads(format_entry(entry(), as_json=True))["seq"] == 7


def test_the_read_settings_are_bounded() -> None:
    assert LogShippingSettings().read_scan_max == 20_000
    assert LogShippingSettings().sse_keepalive_s == 15.0
    with pytest.raises(pydantic.ValidationError):
        LogShippingSettings(read_scan_max=10)
    with pytest.raises(pydantic.ValidationError):
        LogShippingSettings(sse_keepalive_s=0)
