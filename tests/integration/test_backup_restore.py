"""Backup -> wipe the data dir -> restore: every piece of state is back, field by field."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from cluster import backup, system
from cluster._progress import Progress
from cluster.errors import ClusterError
from cluster.settings import Settings
from tests.conftest import wait_for_condition

pytestmark = pytest.mark.integration


def _state(http: httpx.Client, ids: dict[str, str]) -> dict[str, Any]:
    """Everything the test created, as the services report it now."""
    agents = {a: http.get(f"/core/agents/{a}").json() for a in ids["agents"].split()}
    errors = http.get("/errors/", params={"agent": ids["error_agent"], "limit": 50}).json()
    return {
        "agents": agents,
        "trust": http.get(f"/security/trust/{ids['trust_agent']}", params={"history": 50}).json(),
        "lease": http.get(f"/resources/leases/{ids['lease']}").json(),
        "errors": sorted(item["event"]["id"] for item in errors["items"]),
        "rule": [r for r in http.get("/observability/rules").json() if r["name"] == ids["rule"]],
    }


def _make_state(http: httpx.Client) -> dict[str, str]:
    tag = uuid.uuid4().hex[:6]
    agents = [f"bk-{tag}-{i}" for i in range(3)]
    for i, agent in enumerate(agents):
        body = {"agent_id": agent, "host": "10.2.0.1", "port": 6000 + i, "capabilities": ["bk"]}
        assert http.post("/core/agents", json=body).status_code == 200
    trust_agent = f"bk-{tag}-trust"
    created = http.post("/security/agents", json={"agent_id": trust_agent, "scopes": ["read"]})
    assert created.status_code == 200
    for success in (True, True, False):
        http.post(f"/security/trust/{trust_agent}/outcomes", json={"success": success})
    lease = http.post(
        "/resources/leases", json={"owner": f"bk-{tag}", "vram_mb": 256, "ttl_s": 3600}
    )
    assert lease.status_code in (201, 202), lease.text
    error_agent = f"bk-{tag}-err"
    events = [{"agent": error_agent, "message": f"m{i}", "severity": "error"} for i in range(5)]
    assert http.post("/errors/", json={"events": events}).status_code == 200
    rule = f"Bk{tag}"
    body = {"name": rule, "metric": "aisys_host_cpu_used_ratio", "op": ">=", "threshold": 2.0}
    assert http.put(f"/observability/rules/{rule}", json=body).status_code in (200, 201)
    return {
        "agents": " ".join(agents),
        "trust_agent": trust_agent,
        "secret": created.json()["client_secret"],
        "lease": lease.json()["lease_id"],
        "error_agent": error_agent,
        "rule": rule,
    }


def test_backup_wipe_restore_brings_every_piece_of_state_back(
    aisys_system: Settings, http: httpx.Client, tmp_path: Path
) -> None:
    ids = _make_state(http)
    wait_for_condition(lambda: len(_state(http, ids)["errors"]) == 5, timeout_s=30)
    before = _state(http, ids)
    progress = Progress(quiet=True)
    archive = tmp_path / "aisys.tar.gz"

    manifest = backup.backup(aisys_system, archive, progress)  # while the system runs
    assert manifest.streams["ERRORS"] >= 5 and "registry.sqlite3" in manifest.files
    with pytest.raises(ClusterError, match="is running"):
        backup.restore(aisys_system, archive, progress)

    system.down(aisys_system, progress)
    shutil.rmtree(aisys_system.data_dir)
    aisys_system.data_dir.mkdir()
    backup.restore(aisys_system, archive, progress)
    system.up(aisys_system, progress)  # leaves the session system running for other tests

    def restored() -> bool:
        return bool(_state(http, ids)["errors"] == before["errors"])

    wait_for_condition(restored, timeout_s=60)
    after = _state(http, ids)
    # Health keeps evolving after a restore (TTLs expire, probes run); the registration doesn't.
    live = {"health", "health_note", "critical_since", "last_seen_at"}

    def registration(record: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in record.items() if k not in live}

    assert {a: registration(r) for a, r in after["agents"].items()} == {
        a: registration(r) for a, r in before["agents"].items()
    }
    assert after["lease"] == before["lease"]
    assert after["rule"] == before["rule"]
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
