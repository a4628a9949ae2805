"""Backup -> wipe the data dir -> restore: every piece of state is back, field by field."""

from __future__ import annotations

import asyncio
import shutil
import stat
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from cluster.base.constants import ERRORS_STREAM, LOGS_STREAM
from cluster.base.errors import ClusterError, ConfigError
from cluster.base.nats_client import NatsClient, nats_client
from cluster.base.settings import Settings
from cluster.ops import backup, system
from cluster.ops._progress import Progress
from tests.conftest import wait_for_condition

pytestmark = pytest.mark.integration


def _errors(http: httpx.Client, agent: str) -> list[dict[str, Any]]:
    """The agent's events as ``GET /errors`` returns them (newest first), without seqs."""
    page = http.get("/errors/", params={"agent": agent, "limit": 50})
    assert page.status_code == 200, page.text
    return [item["event"] for item in page.json()["items"]]


def _state(http: httpx.Client, ids: dict[str, str]) -> dict[str, Any]:
    """Everything the test created, as the services report it now."""
    agents = {a: http.get(f"/core/agents/{a}").json() for a in ids["agents"].split()}
    silences = http.get("/observability/silences").json()
    perf = http.get("/observability/perf/metrics", params={"agent": ids["perf_agent"]})
    return {
        "agents": agents,
        "trust": http.get(f"/security/trust/{ids['trust_agent']}", params={"history": 50}).json(),
        "lease": http.get(f"/resources/leases/{ids['lease']}").json(),
        "errors": _errors(http, ids["error_agent"]),
        "rule": [r for r in http.get("/observability/rules").json() if r["name"] == ids["rule"]],
        "silence": [s for s in silences if s["id"] == ids["silence"]],
        "perf": perf.json(),
        "revoked": http.get(
            "/security/verify", headers={"Authorization": f"Bearer {ids['revoked']}"}
        ).status_code,
    }


async def _delete_first_error(broker: NatsClient) -> int:
    """Delete the ERRORS stream's first message; return the stream's new first sequence."""
    nc = await broker.connect()
    try:
        js = nc.jetstream()
        first = (await js.stream_info(ERRORS_STREAM)).state.first_seq
        await js.delete_msg(ERRORS_STREAM, first)
        return int((await js.stream_info(ERRORS_STREAM)).state.first_seq)
    finally:
        await nc.close()


def _make_identity_state(http: httpx.Client, tag: str) -> dict[str, str]:
    """An agent identity with trust evidence, and one of its tokens revoked."""
    trust_agent = f"bk-{tag}-trust"
    created = http.post("/security/agents", json={"agent_id": trust_agent, "scopes": ["read"]})
    assert created.status_code == 200, created.text
    for success in (True, True, False):
        outcome = http.post(f"/security/trust/{trust_agent}/outcomes", json={"success": success})
        assert outcome.status_code == 200, outcome.text
    grant = {
        "grant_type": "client_credentials",
        "client_id": trust_agent,
        "client_secret": created.json()["client_secret"],
    }
    token = http.post("/security/token", json=grant)
    assert token.status_code == 200, token.text
    revoked = token.json()["access_token"]
    assert http.post("/security/revoke", json={"token": revoked}).status_code == 200
    return {
        "trust_agent": trust_agent,
        "secret": created.json()["client_secret"],
        "revoked": revoked,
    }


def _make_observability_state(http: httpx.Client, tag: str) -> dict[str, str]:
    rule = f"Bk{tag}"
    body = {"name": rule, "metric": "aisys_host_cpu_used_ratio", "op": ">=", "threshold": 2.0}
    assert http.put(f"/observability/rules/{rule}", json=body).status_code in (200, 201)
    silence = http.post(
        "/observability/silences",
        json={"matchers": {"alertname": rule}, "duration_s": 3600, "comment": "backup test"},
    )
    assert silence.status_code == 201, silence.text
    perf_agent = f"bk-{tag}-perf"
    metric = {"agent": perf_agent, "action": "answer", "duration_s": 0.25, "metadata": {"n": 1}}
    assert http.post("/observability/perf/metrics", json=metric).status_code == 201
    return {"rule": rule, "silence": silence.json()["id"], "perf_agent": perf_agent}


def _make_state(http: httpx.Client, settings: Settings) -> dict[str, str]:
    tag = uuid.uuid4().hex[:6]
    agents = [f"bk-{tag}-{i}" for i in range(3)]
    for i, agent in enumerate(agents):
        body = {"agent_id": agent, "host": "10.2.0.1", "port": 6000 + i, "capabilities": ["bk"]}
        assert http.post("/core/agents", json=body).status_code == 200
    lease = http.post(
        "/resources/leases", json={"owner": f"bk-{tag}", "vram_mb": 256, "ttl_s": 3600}
    )
    assert lease.status_code in (201, 202), lease.text
    # The stream's first sequence must be past 1 at backup time: after a restore the messages
    # number from 1 again, and the index must not keep the old numbers.
    early = [{"agent": f"bk-{tag}-early", "message": f"e{i}", "severity": "info"} for i in range(2)]
    assert http.post("/errors/", json={"events": early}).status_code == 200
    assert asyncio.run(_delete_first_error(nats_client(settings))) > 1
    error_agent = f"bk-{tag}-err"
    events = [{"agent": error_agent, "message": f"m{i}", "severity": "error"} for i in range(5)]
    assert http.post("/errors/", json={"events": events}).status_code == 200
    return {
        "agents": " ".join(agents),
        "lease": lease.json()["lease_id"],
        "error_agent": error_agent,
        **_make_identity_state(http, tag),
        **_make_observability_state(http, tag),
    }


def _restore_refused_then_done(settings: Settings, archive: Path, progress: Progress) -> Any:
    """Stop the system; a restore over its state is refused; wipe it and restore."""
    system.down(settings, progress)
    with pytest.raises(ConfigError, match="already holds state"):
        backup.restore(settings, archive, progress)
    assert (settings.data_dir / "registry.sqlite3").is_file()  # refused: nothing deleted
    shutil.rmtree(settings.data_dir)
    settings.data_dir.mkdir()
    return backup.restore(settings, archive, progress)


def _assert_owner_only(settings: Settings) -> None:
    """The restored data dir, whatever modes the archive's members had: 0700 and 0600."""
    data = settings.data_dir
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    loose = [
        f"{path} {stat.S_IMODE(path.lstat().st_mode):o}"
        for path in data.rglob("*")
        if settings.ray_temp_dir not in path.parents
        and not path.is_symlink()
        and (path.is_dir() or path.is_file())
        and stat.S_IMODE(path.lstat().st_mode) != (0o700 if path.is_dir() else 0o600)
    ]
    assert not loose, loose
    assert (data / "security.sqlite3").is_file()


def test_backup_wipe_restore_brings_every_piece_of_state_back(
    aisys_system: Settings, http: httpx.Client, tmp_path: Path
) -> None:
    ids = _make_state(http, aisys_system)
    wait_for_condition(lambda: len(_errors(http, ids["error_agent"])) == 5, timeout_s=30)
    before = _state(http, ids)
    assert len(before["trust"]["history"]) == 3
    assert before["silence"] and before["perf"] and before["rule"]
    assert before["revoked"] == 401
    progress = Progress(quiet=True)
    archive = tmp_path / "aisys.tar.gz"

    manifest = backup.backup(aisys_system, archive, progress)  # while the system runs
    # The embedded default: one node carries both tags, its data dir is read once.
    [section] = manifest.sections
    assert section.tags == ["mainpc", "pc2"] and section.root == "hosts/mainpc+pc2/data"
    assert {"registry.sqlite3", "security.sqlite3", "errors/index.sqlite3"} <= set(section.files)
    assert manifest.streams[ERRORS_STREAM] >= 6 and LOGS_STREAM in manifest.streams
    with pytest.raises(ClusterError, match="is running"):
        backup.restore(aisys_system, archive, progress)

    report = _restore_refused_then_done(aisys_system, archive, progress)
    assert report.streams == manifest.streams
    _assert_owner_only(aisys_system)
    system.up(aisys_system, progress)  # leaves the session system running for other tests

    wait_for_condition(lambda: _errors(http, ids["error_agent"]) == before["errors"], timeout_s=60)
    after = _state(http, ids)
    # Health keeps evolving after a restore (TTLs expire, probes run); the registration doesn't.
    live = {"health", "health_note", "critical_since", "last_seen_at"}

    def registration(record: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in record.items() if k not in live}

    assert {a: registration(r) for a, r in after["agents"].items()} == {
        a: registration(r) for a, r in before["agents"].items()
    }
    for key in ("lease", "rule", "errors", "silence", "perf", "revoked"):
        assert after[key] == before[key], key
    trust_before, trust_after = before["trust"], after["trust"]
    assert trust_after["history"] == trust_before["history"]
    assert trust_after["score"] == pytest.approx(trust_before["score"], abs=1e-3)  # decay only
    # The agent identity (hashed secret) is back: its client credentials still work.
    grant = {
        "grant_type": "client_credentials",
        "client_id": ids["trust_agent"],
        "client_secret": ids["secret"],
    }
    assert http.post("/security/token", json=grant).status_code == 200

    # A new event gets a sequence number the old stream had used: it must still be indexed.
    fresh = {"agent": f"{ids['error_agent']}-new", "message": "after restore", "severity": "error"}
    assert http.post("/errors/", json={"events": [fresh]}).status_code == 200
    wait_for_condition(lambda: len(_errors(http, fresh["agent"])) == 1, timeout_s=30)
