"""``aisys logs``: read the shipped log lines, or follow them live.

It talks HTTP to ``GET /observability/logs`` (pages, newest first, printed oldest first like
``tail``) and ``GET /observability/logs/stream`` (``-f``, Server-Sent Events). The token is an
access token with the ``read`` scope, from ``AISYS_TOKEN`` or ``--token-file``; get one with
``aisys token login NAME`` (its ``access_token``) or from an agent identity.

A follow asks Serve not to time the stream out (``X-Request-Timeout-Seconds: 0``) and, when the
connection drops anyway, connects again with ``Last-Event-ID``: the stream resumes after the
last line printed, so no line is printed twice. Ctrl-C ends it (exit 0).

Example::

    AISYS_TOKEN=$(aisys token login me | jq -r .access_token) aisys logs -f --severity warning
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import httpx

from cluster.base.errors import ClusterError, ConfigError, ValidationFailed
from cluster.base.settings import Settings
from deployments.observability.log_models import MAX_PAGE, LogEntry, LogPage

__all__ = ["add_parser", "format_entry", "parse_since", "run", "sse_events"]

#: The environment variable holding the access token.
TOKEN_ENV = "AISYS_TOKEN"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: The most lines one ``aisys logs`` prints from the history.
_MAX_LIMIT = 100_000


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    logs = sub.add_parser("logs", help="print shipped log lines; -f follows new ones")
    logs.add_argument("-f", "--follow", action="store_true", help="then follow new lines")
    logs.add_argument("--host", help="host tag")
    logs.add_argument("--source", help="log source (legacy, ray, ...)")
    logs.add_argument("--class", dest="error_class", help="error type; 'none': unclassified")
    logs.add_argument(
        "--severity", choices=["debug", "info", "warning", "error", "critical"], help="minimum"
    )
    logs.add_argument("--since", help="10m, 2h, 1d or an ISO time")
    logs.add_argument("--text", help="substring, case-insensitive")
    logs.add_argument("--limit", type=int, default=100, help="history lines (default 100)")
    logs.add_argument("--json", action="store_true", help="one JSON object per line")
    logs.add_argument("--url", help="Serve HTTP base URL (default: this system's)")
    logs.add_argument("--token-file", type=Path, help=f"file with the token (else ${TOKEN_ENV})")


def parse_since(value: str, now: datetime) -> datetime:
    """``10m``/``2h``/``1d``/``30s`` before ``now``, or an ISO time (naive: UTC).

    Raises:
        ValidationFailed: neither form.
    """
    match = _DURATION.match(value.strip())
    if match:
        return now - timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValidationFailed(
            f"--since {value!r}: give a duration such as 10m, 2h, 1d, or an ISO time"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def format_entry(entry: LogEntry, as_json: bool) -> str:
    """One printed line: time, host/source, severity and class (when classified), the line."""
    if as_json:
        return entry.model_dump_json()
    when = entry.stored_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    label = f" {entry.severity.upper()} [{entry.error_type}]" if entry.severity else ""
    return f"{when[:-4]}Z {entry.host}/{entry.source}{label} {entry.line}"


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str | None, str, str]]:
    """``(id, event, data)`` of each event of a Server-Sent Events body; comments skipped."""
    event_id: str | None = None
    event, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield event_id, event, "\n".join(data)
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "id":
            event_id = value
        elif field == "event":
            event = value
        elif field == "data":
            data.append(value)


class _Client:
    def __init__(self, args: argparse.Namespace, settings: Settings) -> None:
        token = self._token(args)
        if args.url:
            base = args.url.rstrip("/")
        else:
            ray = settings.ray
            # Over HTTPS, the name the certificate carries: the head's address (as aisys check).
            head = settings.hosts[settings.head_host].node_ip or "127.0.0.1"
            host = head if ray.tls_certfile is not None else "127.0.0.1"
            base = f"{ray.http_scheme}://{host}:{settings.ports.http}"
        self.keepalive_s = settings.observability.logs.sse_keepalive_s
        self.http = httpx.Client(
            base_url=f"{base}/observability",
            headers={"Authorization": f"Bearer {token}"},
            verify=settings.ray.http_verify,
            timeout=httpx.Timeout(30.0, read=3 * self.keepalive_s + 10),
        )

    @staticmethod
    def _token(args: argparse.Namespace) -> str:
        if args.token_file is not None:
            try:
                token = str(args.token_file.read_text()).strip()
            except OSError as exc:
                raise ConfigError(f"logs: cannot read --token-file: {exc}") from exc
        else:
            token = os.environ.get(TOKEN_ENV, "").strip()
        if not token:
            raise ConfigError(
                f"logs: no access token; set {TOKEN_ENV} (the access_token of `aisys token "
                "login NAME`) or pass --token-file"
            )
        return token

    @staticmethod
    def check(response: httpx.Response) -> None:
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            error = ClusterError if response.status_code >= 500 else ValidationFailed
            raise error(f"logs: HTTP {response.status_code}: {detail}")


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    params = {
        "host": args.host,
        "source": args.source,
        "class": args.error_class,
        "severity": args.severity,
        "text": args.text,
    }
    return {k: v for k, v in params.items() if v is not None}


def _history(client: _Client, args: argparse.Namespace) -> tuple[list[LogEntry], int]:
    """The newest ``--limit`` matching lines, oldest first, and the stream's last sequence."""
    params = _filters(args)
    if args.since:
        params["since"] = parse_since(args.since, datetime.now(UTC)).isoformat()
    found: list[LogEntry] = []
    last_seq: int | None = None
    while len(found) < args.limit:
        params["limit"] = min(MAX_PAGE, args.limit - len(found))
        response = client.http.get("/logs", params=params)
        client.check(response)
        page = LogPage.model_validate_json(response.content)
        last_seq = page.last_seq if last_seq is None else last_seq
        found.extend(page.items)
        if page.next_before_seq is None:
            break
        params["before_seq"] = page.next_before_seq
    return found[::-1], last_seq or 0


def _follow(client: _Client, args: argparse.Namespace, after: int | None, out: TextIO) -> None:
    """Print new lines until interrupted; reconnect after a dropped stream, resuming."""
    params = _filters(args)
    while True:
        headers = {"X-Request-Timeout-Seconds": "0", "Accept": "text/event-stream"}
        if after is not None:
            headers["Last-Event-ID"] = str(after)
        try:
            with client.http.stream("GET", "/logs/stream", params=params, headers=headers) as r:
                if r.status_code >= 400:
                    r.read()
                    client.check(r)
                for event_id, event, data in sse_events(r.iter_lines()):
                    if event != "log":
                        continue
                    out.write(format_entry(LogEntry.model_validate_json(data), args.json) + "\n")
                    out.flush()
                    after = int(event_id) if event_id is not None else after
        except (httpx.TransportError, ClusterError) as exc:
            sys.stderr.write(f"aisys: log stream interrupted ({exc}); reconnecting\n")
        time.sleep(1.0)


def run(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    """``aisys logs``.

    Raises:
        ConfigError: no token.
        ValidationFailed: the service refused a parameter (or the token: 401/403).
        ClusterError: the service failed (history only; a follow keeps retrying).
    """
    if not 1 <= args.limit <= _MAX_LIMIT:
        raise ValidationFailed(f"--limit must be 1 to {_MAX_LIMIT}")
    client = _Client(args, settings)
    try:
        entries, last_seq = _history(client, args)
        for entry in entries:
            out.write(format_entry(entry, args.json) + "\n")
        out.flush()
        if args.follow:
            # After what the history saw, so a line shipped in between is not missed.
            _follow(client, args, last_seq, out)
    except KeyboardInterrupt:
        return 0
    finally:
        client.http.close()
    return 0
