"""``aisys import-legacy`` against real stores: a real redis-server, legacy SQLite files, NATS.

The end-to-end test imports all four sources into the session system twice through the CLI's
entry point and compares, field by field, what the services hold after each run.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from actors.errors.models import ErrorEvent
from actors.errors.stream import ensure_stream
from cluster.base.constants import ERRORS_STREAM
from cluster.base.errors import LegacySourceUnreadable
from cluster.base.nats_client import nats_client
from cluster.base.settings import ErrorBusSettings, Settings
from cluster.ops.cli import main
from cluster.ops.legacy_import.registry import read_registry, safe_url
from cluster.ops.nats_server import NatsServer
from deployments.errors.core import ErrorBusCore
from tests._legacy_stores import (
    registry_values,
    write_errors_db,
    write_perf_db,
    write_trust_db,
)
from tests._redis import redis_server
from tests.conftest import free_port, short_tmp_dir, wait_for_condition
from tests.integration._errorbus import stream_count
from tests.integration.conftest import settings_file

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_url() -> Iterator[str]:
    workdir = short_tmp_dir("redis-")
    with redis_server(workdir) as url:
        yield url


def fill(url: str, values: dict[str, bytes]) -> None:
    client = redis.Redis.from_url(url)
    try:
        for key, value in values.items():
            client.set(key, value)  # SET service_registry:<id> <json>, as the legacy registry
    finally:
        client.close()


# The Redis reader, against a real redis-server


def test_registry_reader_skips_what_it_cannot_read_with_the_reason(redis_url: str) -> None:
    now = time.time()
    values, expected = registry_values(now)
    fill(redis_url, values)
    client = redis.Redis.from_url(redis_url)
    client.hset("service_registry:r-Hash", mapping={"host": "x"})
    client.set("other:key", b"{}")
    client.close()

    read = read_registry(redis_url, now)

    assert read.read == {"keys": len(values) + 1}
    assert sorted(i.registration.agent_id for i in read.items) == sorted(expected.agents)
    for reason, key in expected.skipped.items():
        assert read.tally.skipped[reason].examples == [key]
    [invalid] = [r for r in read.tally.skipped if r.startswith("not a valid registration")]
    assert "capability 'text generation'" in invalid
    assert read.tally.skipped["not a string (a hash)"].examples == ["service_registry:r-Hash"]
    assert read.notes == {"no last_registered: registered at the time of the import": 1}
    nlu = next(i for i in read.items if i.registration.agent_id == "r-NLUAgent")
    assert nlu.registered_at == pytest.approx(now - 3600, abs=1e-3)  # utcnow() read as UTC
    assert nlu.registration.check == "none"
    assert nlu.registration.capabilities == ["nlu", "reasoning"]


def test_an_unreachable_redis_fails_the_source_without_showing_the_password() -> None:
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    with pytest.raises(LegacySourceUnreadable, match="Redis: Error") as caught:
        read_registry(url, time.time())
    assert "s3cret" not in str(caught.value)
    assert caught.value.location == safe_url(url) == url.replace("s3cret", "***")


# ErrorBus's side, against a real nats-server


def test_errorbus_skips_imported_ids_even_after_the_stream_forgot_them(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    settings = ErrorBusSettings(ack_timeout_s=2.0)
    events = [ErrorEvent(id=f"legacy.errors:{i}", agent="Auth", message=f"m{i}") for i in range(5)]

    async def run() -> None:
        core = ErrorBusCore(nats_server.client, settings, tmp_path)
        core.start()
        try:
            assert await core.publisher.wait_connected(10)
            first = await core.import_events(events + events[:1])
            assert first.imported == {"events": 5}
            assert first.skipped["already present"].examples == [events[0].id]
            assert await stream_count(nats_server.client) == 5
            second = await core.import_events(events)
            assert second.imported == {} and second.skipped["already present"].count == 5
            # Days later: retention emptied the stream, the index followed it, and the stream's
            # duplicate window is long gone (a new stream remembers no message id).
            nc = await nats_server.client.connect()
            js = nc.jetstream()
            await js.delete_stream(ERRORS_STREAM)
            await ensure_stream(js, settings)
            await nc.close()
            core.index.prune_before(10**9)
            third = await core.import_events(events)
            assert third.imported == {} and third.skipped["already present"].count == 5
            assert await stream_count(nats_server.client) == 0
        finally:
            await core.close()

    asyncio.run(run())


# The whole command, twice, against the session system


def _subject_counts(settings: Settings, agents: list[str]) -> dict[str, int]:
    async def count() -> dict[str, int]:
        nc = await nats_client(settings).connect()
        try:
            js = nc.jetstream()
            counts = {}
            for agent in agents:
                info = await js.stream_info(ERRORS_STREAM, subjects_filter=f"errors.*.{agent}")
                counts[agent] = sum((info.state.subjects or {}).values())
            return counts
        finally:
            await nc.close()

    return asyncio.run(count())


def _state(http: httpx.Client, agents: dict[str, list[str]]) -> dict[str, Any]:
    """What the services hold for the imported agents, as they report it."""

    def get(path: str, **params: str | int) -> Any:
        response = http.get(path, params=params)
        assert response.status_code == 200, (path, response.text)
        return response.json()

    return {
        "registry": {a: get(f"/core/agents/{a}") for a in agents["registry"]},
        "trust": {a: get(f"/security/trust/{a}", history=100) for a in agents["trust"]},
        "perf": {
            a: (
                get("/observability/perf/metrics", agent=a),
                get("/observability/perf/usage", agent=a),
            )
            for a in agents["perf"]
        },
        "errors": {a: get("/errors/", agent=a, limit=100)["items"] for a in agents["errors"]},
    }


def _complete(state: dict[str, Any], events: int) -> bool:
    return sum(len(items) for items in state["errors"].values()) == events


def test_importing_all_four_sources_twice_gives_the_state_of_once(
    aisys_system: Settings,
    http: httpx.Client,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tag = uuid.uuid4().hex[:6]
    now = time.time()
    values, registry = registry_values(now, prefix=f"r{tag}")
    fill(redis_url, values)
    trust = write_trust_db(tmp_path / "agent_trust_scores.db", now, prefix=f"m{tag}")
    perf = write_perf_db(tmp_path / "performance_metrics.db", now, prefix=f"p{tag}")
    errors = write_errors_db(tmp_path / "error_system.db", now, prefix=f"e{tag}")
    agents = {
        "registry": registry.agents,
        "trust": trust.agents,
        "perf": perf.agents,
        "errors": errors.agents,
    }
    argv = [
        "--config",
        str(settings_file(aisys_system, tmp_path)),
        "import-legacy",
        "--redis",
        redis_url,
        "--trust-db",
        str(tmp_path / "agent_trust_scores.db"),
        "--perf-db",
        str(tmp_path / "performance_metrics.db"),
        "--errors-db",
        str(tmp_path / "error_system.db"),
    ]

    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "  imported  3 agents\n" in out
    assert "  imported  6 outcomes, 1 aggregates\n" in out
    assert "  imported  3 metrics, 2 usage\n" in out
    assert "  imported  6 events\n" in out
    assert "(value is a JSON list, not an object): service_registry:" in out
    assert "(older than the metrics retention of 30 days): metrics:" in out
    assert "FAILED" not in out
    holder: dict[str, Any] = {}

    def imported_and_indexed() -> bool:
        holder["state"] = _state(http, agents)
        return _complete(holder["state"], errors.imported["events"])

    wait_for_condition(imported_and_indexed, timeout_s=60, interval_s=0.5)
    first = holder["state"]
    streamed = _subject_counts(aisys_system, errors.agents)
    assert sum(streamed.values()) == errors.imported["events"]

    assert main(argv) == 0
    again = capsys.readouterr().out
    assert again.count("  imported  nothing\n") == 4
    assert "(already present): " in again and "(already imported): " in again
    second = _state(http, agents)

    # Field by field: the registry, the perf log and the ErrorBus hold exactly what they held.
    assert second["registry"] == first["registry"]
    assert second["perf"] == first["perf"]
    assert second["errors"] == first["errors"]
    assert _subject_counts(aisys_system, errors.agents) == streamed
    # Trust: the same history; the score and evidence only decayed for the seconds between.
    for agent in trust.agents:
        assert second["trust"][agent]["history"] == first["trust"][agent]["history"]
        assert second["trust"][agent]["score"] == pytest.approx(first["trust"][agent]["score"])
        assert second["trust"][agent]["evidence"] == pytest.approx(
            first["trust"][agent]["evidence"], rel=1e-3
        )

    nlu = first["registry"][f"r{tag}-NLUAgent"]
    assert (nlu["health"], nlu["check"], nlu["port"]) == ("unknown", "none", 5709)
    assert nlu["registered_at"] == pytest.approx(now - 3600, abs=1e-3)
    phi3 = first["trust"][f"m{tag}-phi3"]
    assert len(phi3["history"]) == 4 and phi3["score"] != 0.5
    tiny = first["trust"][f"m{tag}-tinyllama"]
    assert tiny["history"] == [] and tiny["score"] > 0.5  # 7 of 10, twenty minutes ago
    metrics, usage = first["perf"][f"p{tag}-tts"]
    assert len(metrics) == 3 and len(usage) == 2
    kinds = sorted(i["event"]["error_type"] for i in first["errors"][f"e{tag}-Auth"])
    assert kinds == ["LOGIN_ERROR", "TIMEOUT", "legacy_agent_health"]


def test_unreadable_stores_fail_only_their_source_and_a_rerun_completes(
    aisys_system: Settings,
    http: httpx.Client,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tag = uuid.uuid4().hex[:6]
    now = time.time()
    fill(redis_url, {f"service_registry:b{tag}-Broken": b'{"host": "10.0.0.5", "port": '})
    errors_db = tmp_path / "error_system.db"
    errors = write_errors_db(errors_db, now, prefix=f"b{tag}")
    db = sqlite3.connect(errors_db)
    db.execute("DROP TABLE agent_health")
    db.commit()
    db.close()
    (tmp_path / "perf.db").write_text("not a database\n" * 100)
    trust_db = tmp_path / "missing" / "agent_trust_scores.db"
    config = str(settings_file(aisys_system, tmp_path))
    argv = [
        "--config",
        config,
        "import-legacy",
        "--redis",
        redis_url,
        "--trust-db",
        str(trust_db),
        "--perf-db",
        str(tmp_path / "perf.db"),
        "--errors-db",
        str(errors_db),
    ]

    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "  FAILED    the file does not exist\n" in out
    assert "  FAILED    not an SQLite database: file is not a database\n" in out
    assert "  FAILED    table agent_health is missing\n" in out
    assert "(value is not JSON (Expecting value)): service_registry:" in out
    assert "  imported  4 events\n" in out  # the errors table still came in

    def indexed() -> bool:
        page = http.get("/errors/", params={"agent": f"b{tag}-Auth"}).json()
        return len(page["items"]) == 2

    wait_for_condition(indexed, timeout_s=60, interval_s=0.5)

    trust_db.parent.mkdir()
    write_trust_db(trust_db, now, prefix=f"b{tag}")
    fixed = ["--config", config, "import-legacy", "--trust-db", str(trust_db)]
    fixed += ["--errors-db", str(errors_db)]
    assert main(fixed) == 1  # agent_health is still missing
    out = capsys.readouterr().out
    assert "  imported  6 outcomes, 1 aggregates\n" in out
    assert f"  skipped   {errors.imported['events'] - 2} (already present): legacy.errors:" in out
    report = http.get(f"/security/trust/b{tag}-phi3", params={"history": 10}).json()
    assert len(report["history"]) == 4


def test_the_command_needs_a_source_and_a_known_zone(
    aisys_system: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(settings_file(aisys_system, tmp_path))
    assert main(["--config", config, "import-legacy"]) == 2
    assert "name at least one source" in capsys.readouterr().err
    db = tmp_path / "e.db"
    write_errors_db(db, time.time())
    argv = ["--config", config, "import-legacy", "--errors-db", str(db), "--local-tz", "Mars/Base"]
    assert main(argv) == 2
    assert "'Mars/Base' is not a known time zone" in capsys.readouterr().err
