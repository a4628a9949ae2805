"""Logs you can read: ``GET /observability/logs``, ``/logs/stream`` and ``aisys logs``.

Lines are appended to a legacy agent's log file of the session system; its real log shipper
ships them to ``LOGS`` and they come back through the route (each filter, paging), a live follow
(SSE, resumed with ``Last-Event-ID``, ended cleanly before Serve's request timeout) and the CLI.
The first test drives :class:`LogReader` against a bare nats-server with lines published the
way the shipper publishes them, many more than one scan window holds.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from actors.logship.models import LogRecord
from actors.logship.publish import LogStream
from cluster.base.constants import LOGS_STREAM
from cluster.base.nats_client import nats_client
from cluster.base.settings import LogShippingSettings, Settings
from cluster.ops.nats_server import NatsServer
from deployments.observability.log_models import LogEntry, LogQuery
from deployments.observability.logread import WINDOW, LogReader
from tests.conftest import wait_for_condition
from tests.integration.conftest import settings_file

pytestmark = pytest.mark.integration

#: One line of each default class, and two unclassified ones.
LINES = [
    "all good",
    "redis: Connection refused",
    "request timeout after 5 s",
    "CUDA out of memory",
    "fine again",
]


def ship(settings: Settings, name: str, lines: list[str]) -> None:
    """Append ``lines`` to the legacy log ``name`` that the session's shipper follows."""
    root = settings.observability.logs.legacy_root
    assert root is not None
    (root / "logs").mkdir(parents=True, exist_ok=True)
    with (root / "logs" / f"{name}.log").open("a") as f:
        f.writelines(line + "\n" for line in lines)


def items(http: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    response = http.get("/observability/logs", params=params)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["items"]
    return found


def shipped(http: httpx.Client, tag: str, count: int) -> list[dict[str, Any]]:
    """Wait until ``count`` lines containing ``tag`` come back; return them, newest first."""
    wait_for_condition(lambda: len(items(http, text=tag)) >= count, timeout_s=90, interval_s=0.5)
    return items(http, text=tag)


def test_pages_cover_a_large_stream_once_in_bounded_scans(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    settings = LogShippingSettings(read_scan_max=WINDOW)
    total = 2 * WINDOW + 500

    async def main() -> None:
        stream = LogStream(nats_server.client, settings)
        await stream.connect()
        batch = []
        for i in range(total):
            record = LogRecord(
                host="pc2" if i % 3 == 0 else "mainpc",
                source="app",
                path=str(tmp_path / "app.log"),
                file_id="1:2:ab",
                offset=i,
                read_at=datetime.now(UTC),
                line=f"{i:05d}",
            )
            batch.append((record.subject(), record.msg_id(), record.model_dump_json().encode()))
        for start in range(0, total, 500):
            assert len(await stream.publish(batch[start : start + 500])) == 500
        await stream.close()

        reader = LogReader(nats_server.client, settings)
        try:
            seen: list[LogEntry] = []
            query = LogQuery(host="pc2", limit=300)
            while True:
                page = await reader.page(query)
                assert page.scanned <= WINDOW and page.last_seq == total
                seen.extend(page.items)
                if page.next_before_seq is None:
                    break
                query = query.model_copy(update={"before_seq": page.next_before_seq})
            seqs = [e.seq for e in seen]
            assert seqs == sorted({i + 1 for i in range(0, total, 3)}, reverse=True)
            assert all(e.host == "pc2" and e.line == f"{e.seq - 1:05d}" for e in seen)

            # A time range becomes sequence bounds: the lines stored in it, and only those.
            middle = (await reader.page(LogQuery(before_seq=1200, limit=1))).items[0]
            until = await reader.page(LogQuery(until=middle.stored_at, limit=1))
            assert until.items[0].seq >= middle.seq
            assert all(e.stored_at <= middle.stored_at for e in until.items)
            since = await reader.page(
                LogQuery(since=middle.stored_at, before_seq=middle.seq + 1, limit=1000)
            )
            assert since.items[0].seq == middle.seq and since.next_before_seq is None
            assert all(e.stored_at >= middle.stored_at for e in since.items)
            later = middle.stored_at + timedelta(hours=1)
            assert (await reader.page(LogQuery(since=later))).items == []
        finally:
            await reader.close()

    asyncio.run(main())


def test_shipped_lines_come_back_through_the_route_with_each_filter(
    http: httpx.Client, aisys_system: Settings
) -> None:
    tag = f"it-{uuid.uuid4().hex[:10]}"
    ship(aisys_system, tag, [f"{tag} {line}" for line in LINES])
    newest_first = shipped(http, tag, len(LINES))
    assert [i["line"] for i in newest_first] == [f"{tag} {line}" for line in reversed(LINES)]
    first = newest_first[-1]
    assert (first["host"], first["source"], first["error_type"]) == ("mainpc", "legacy", None)
    assert first["path"].endswith(f"/logs/{tag}.log") and first["seq"] >= 1

    def lines(**params: Any) -> list[str]:
        return [i["line"].removeprefix(f"{tag} ") for i in items(http, text=tag, **params)]

    # The session node carries both tags: its one shipper is named after the first, mainpc.
    assert len(lines(host="mainpc", source="legacy")) == len(LINES)
    assert lines(host="pc2") == [] and lines(source="ray") == []
    assert lines(**{"class": "timeout_error"}) == ["request timeout after 5 s"]
    assert lines(**{"class": "none"}) == ["fine again", "all good"]
    assert lines(severity="error") == ["CUDA out of memory", "redis: Connection refused"]
    assert lines(severity="critical") == ["CUDA out of memory"]
    assert len(items(http, text=tag.upper())) == len(LINES)  # case-insensitive

    stored = sorted(i["stored_at"] for i in newest_first)
    assert len(lines(since=stored[0], until=stored[-1])) == len(LINES)
    assert lines(since=stored[-1]) == lines()[: sum(1 for s in stored if s == stored[-1])]
    assert lines(until=stored[0]) == lines()[-sum(1 for s in stored if s == stored[0]) :]

    # Paging: two at a time, newest first, every line once.
    paged: list[int] = []
    params: dict[str, Any] = {"text": tag, "limit": 2}
    while len(paged) < len(LINES):
        page = http.get("/observability/logs", params=params).json()
        assert len(page["items"]) <= 2
        paged += [i["seq"] for i in page["items"]]
        assert page["next_before_seq"] is not None or len(paged) == len(LINES)
        params["before_seq"] = page["next_before_seq"]
    assert paged == [i["seq"] for i in newest_first]


def test_bad_parameters_are_refused_and_a_token_is_required(
    http: httpx.Client, anonymous_http: httpx.Client
) -> None:
    def refused(path: str, **params: Any) -> str:
        response = http.get(f"/observability/{path}", params=params)
        assert response.status_code == 422, (params, response.text)
        return response.text

    assert "1000" in refused("logs", limit=1001)
    assert "unknown query parameter" in refused("logs", lines=5)
    assert "unknown query parameter" in refused("logs/stream", since="2026-01-01T00:00:00Z")
    refused("logs", host="*")
    refused("logs", host="logs.>")
    refused("logs", severity="purple")
    refused("logs", **{"class": "Not A Class"})
    refused("logs", before_seq=0)
    refused("logs", since="yesterday")
    assert "since is after until" in refused(
        "logs", since="2026-01-02T00:00:00Z", until="2026-01-01T00:00:00Z"
    )
    refused("logs/stream", after_seq=-1)
    refused("logs/stream", severity="purple")
    for path in ("logs", "logs/stream"):
        response = anonymous_http.get(f"/observability/{path}")
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"].startswith("Bearer")


class Follower:
    """Reads one SSE stream on a thread, keeping every line; the test thread polls it."""

    def __init__(self, url: str, headers: dict[str, str], params: dict[str, Any]) -> None:
        self.lines: list[str] = []
        self.status: int | None = None
        self.ended_cleanly = False
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(url, headers, params), daemon=True)
        self._thread.start()

    def _read(self, url: str, headers: dict[str, str], params: dict[str, Any]) -> None:
        try:
            with httpx.stream("GET", url, params=params, headers=headers, timeout=60) as r:
                self.status = r.status_code
                for line in r.iter_lines():
                    self.lines.append(line)
                    if self._stop.is_set():  # a keep-alive comes at least every second
                        return
            self.ended_cleanly = True
        except BaseException as exc:  # reported by the test thread
            self.error = exc

    def events(self) -> list[tuple[int, str]]:
        """``(id, line)`` of each log event so far."""
        found, event_id = [], 0
        for line in list(self.lines):
            if line.startswith("id: "):
                event_id = int(line.removeprefix("id: "))
            elif line.startswith("data: "):
                found.append((event_id, LogEntry.model_validate_json(line[6:]).line))
        return found

    def close(self) -> None:
        """Go away: the connection closes with the next line read."""
        self._stop.set()
        assert self.join(30)

    def join(self, timeout_s: float) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()


def test_a_follow_sees_new_lines_resumes_and_ends_before_serves_timeout(
    http: httpx.Client, aisys_system: Settings
) -> None:
    tag = f"sse-{uuid.uuid4().hex[:10]}"
    url = f"http://127.0.0.1:{aisys_system.ports.http}/observability/logs/stream"
    auth = {"Authorization": http.headers["authorization"]}
    lifted = {**auth, "X-Request-Timeout-Seconds": "0"}
    live = Follower(url, lifted, {"text": tag})
    wait_for_condition(lambda: ": following" in live.lines or live.error is not None)
    assert live.error is None and live.status == 200 and live.lines[0] == "retry: 1000"

    ship(aisys_system, tag, [f"{tag} first after connecting"])
    wait_for_condition(lambda: bool(live.events()), timeout_s=90, interval_s=0.3)
    [(first_id, line)] = live.events()
    assert line == f"{tag} first after connecting"
    # Idle for sse_keepalive_s (1 s in this session): a comment keeps the connection alive.
    wait_for_condition(lambda: ": keep-alive" in live.lines, timeout_s=10)

    # A client that reconnects with Last-Event-ID gets what came after it, nothing twice.
    ship(aisys_system, tag, [f"{tag} second"])
    wait_for_condition(lambda: len(live.events()) == 2, timeout_s=90, interval_s=0.3)
    resumed = Follower(url, {**lifted, "Last-Event-ID": str(first_id)}, {"text": tag})
    wait_for_condition(lambda: bool(resumed.events()), timeout_s=30)
    assert [line for _, line in resumed.events()] == [f"{tag} second"]
    assert resumed.events()[0][0] == live.events()[1][0] > first_id

    # Under Serve's request timeout (here 8 s by header; 40 s by default) the stream ends
    # itself first and cleanly, telling the client to reconnect.
    start = time.monotonic()
    bounded = Follower(url, {**auth, "X-Request-Timeout-Seconds": "8"}, {"text": tag})
    assert bounded.join(30), bounded.lines
    assert bounded.error is None and bounded.ended_cleanly, bounded.error
    assert 4 < time.monotonic() - start < 8
    assert bounded.lines[-2].startswith(": the request timeout is near")
    # What that spares a client: a stream that outlives the bound (ErrorBus's follow does not
    # end itself) is cut by Serve's proxy in the middle of the body.
    errors_url = f"http://127.0.0.1:{aisys_system.ports.http}/errors/stream"
    cut = Follower(errors_url, {**auth, "X-Request-Timeout-Seconds": "3"}, {})
    assert cut.join(30), cut.lines
    assert not cut.ended_cleanly and isinstance(cut.error, httpx.RemoteProtocolError), cut.error

    # A client that goes away ends its stream: the replica removes the stream's consumer.
    assert asyncio.run(read_consumers(aisys_system)) >= 2
    live.close()
    resumed.close()
    wait_for_condition(lambda: asyncio.run(read_consumers(aisys_system)) == 0, timeout_s=30)


async def read_consumers(settings: Settings) -> int:
    """The ``LOGS`` consumers of log readers now (pages and follows)."""
    nc = await nats_client(settings).connect()
    try:
        infos = await nc.jetstream().consumers_info(LOGS_STREAM)
        return sum(1 for info in infos if (info.name or "").startswith("logs-read-"))
    finally:
        await nc.close()


def aisys(settings: Settings, token: str | None, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AISYS_")}
    env["AISYS_CONFIG"] = str(settings_file(settings, settings.data_dir))
    if token is not None:
        env["AISYS_TOKEN"] = token
    return start_logs_cli(list(args), env)


def start_logs_cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """``aisys logs *args``, started so that a SIGINT (Ctrl-C) reaches it.

    A process inherits an ignored SIGINT, and the suite's process may ignore it (a script's
    background job does, so a CI runner may). A caught signal is reset to the default by exec,
    so the child is started while this process catches SIGINT, and its Python turns SIGINT into
    KeyboardInterrupt as a terminal's would.
    """
    executable = str(Path(sys.executable).with_name("aisys"))
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(
            [executable, "logs", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        signal.signal(signal.SIGINT, previous)


def readline(process: subprocess.Popen[str], timeout_s: float) -> str:
    """The next line the process prints ('' if none came within ``timeout_s``)."""
    got: list[str] = []
    assert process.stdout is not None
    stdout = process.stdout
    reader = threading.Thread(target=lambda: got.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    return got[0] if got else ""


def test_the_cli_prints_lines_and_follows_new_ones(
    http: httpx.Client, aisys_system: Settings, admin_token: str
) -> None:
    tag = f"cli-{uuid.uuid4().hex[:10]}"
    ship(aisys_system, tag, [f"{tag} one", f"{tag} redis: Connection refused"])
    shipped(http, tag, 2)

    printed = aisys(aisys_system, admin_token, "--text", tag)
    out, err = printed.communicate(timeout=120)
    assert printed.returncode == 0, err
    rows = out.splitlines()
    assert len(rows) == 2 and rows[0].endswith(f"mainpc/legacy {tag} one")
    classified = f"mainpc/legacy ERROR [connection_error] {tag} redis: Connection refused"
    assert rows[1].endswith(classified)

    follow = aisys(aisys_system, admin_token, "-f", "--text", tag, "--limit", "1")
    try:
        assert readline(follow, 60).endswith("Connection refused\n")  # the history
        ship(aisys_system, tag, [f"{tag} three"])
        assert readline(follow, 90).endswith(f"mainpc/legacy {tag} three\n")
        follow.send_signal(signal.SIGINT)  # Ctrl-C
        assert follow.wait(30) == 0
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait(10)

    nobody = aisys(aisys_system, None, "--text", tag)
    _, err = nobody.communicate(timeout=120)
    assert nobody.returncode == 2 and "AISYS_TOKEN" in err


class _DroppingSse(BaseHTTPRequestHandler):
    """A stand-in for the hub that ends the first stream after two lines; the next must resume."""

    seen: ClassVar[list[dict[str, str]]] = []
    done = threading.Event()

    def log_message(self, *args: Any) -> None:
        pass  # keep the test output quiet

    def do_GET(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        type(self).seen.append({"path": self.path, **headers})
        if self.path.startswith("/observability/logs?"):
            body = b'{"items": [], "next_before_seq": null, "scanned": 0, "last_seq": 40}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        after = int(self.headers["Last-Event-ID"])
        for seq in range(after + 1, after + 3):
            line = LogEntry(
                host="pc2",
                source="app",
                path="/a.log",
                file_id="1:2:3",
                offset=seq,
                read_at=datetime.now(UTC),
                line=f"line {seq}",
                seq=seq,
                stored_at=datetime.now(UTC),
            )
            self.wfile.write(f"id: {seq}\nevent: log\ndata: {line.model_dump_json()}\n\n".encode())
            self.wfile.flush()
        if after > 40:  # the second stream stays open until the test ends
            type(self).done.wait(60)
        self.close_connection = True  # HTTP/1.0: the body ends here, the client reconnects


def test_the_cli_follow_resumes_after_a_dropped_stream_without_duplicates(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DroppingSse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AISYS_")}
    env |= {"AISYS_TOKEN": "t0ken", "AISYS_DATA_DIR": str(tmp_path)}
    url = f"http://127.0.0.1:{server.server_address[1]}"
    follow = start_logs_cli(["-f", "--url", url, "--host", "pc2"], env)
    try:
        printed = [readline(follow, 30) for _ in range(4)]
        assert [row.split(" ", 2)[2] for row in printed] == [f"line {n}\n" for n in range(41, 45)]
        follow.send_signal(signal.SIGINT)
        assert follow.wait(30) == 0
    finally:
        _DroppingSse.done.set()
        if follow.poll() is None:
            follow.kill()
            follow.wait(10)
        server.shutdown()
        server.server_close()
    streams = [r for r in _DroppingSse.seen if r["path"].startswith("/observability/logs/stream")]
    assert [r["last-event-id"] for r in streams[:2]] == ["40", "42"]
    assert all(r["path"].endswith("?host=pc2") for r in streams)
    assert {(r["authorization"], r["x-request-timeout-seconds"]) for r in streams} == {
        ("Bearer t0ken", "0")
    }
