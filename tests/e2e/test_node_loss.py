"""A PC goes away and comes back: what keeps answering, what says it cannot, what is kept.

Both hosts boot as the systemd units boot them (``aisys up --detach``: ``aisys supervise`` keeps
each host running) in two network namespaces (tests/e2e/_hosts.py). A host "goes away" by a
power cut: every process of its data dir is SIGKILLed at once. It "comes back" by booting again.

- PC2 goes away: MainPC keeps answering registry reads and writes over HTTP and on 7100/7120,
  tokens issued before keep verifying, a request for a service that lived on PC2 gets an answer
  within ``ray.request_timeout_s`` (HTTP) or ``legacy_gateway.reply_timeout_s`` (legacy), and
  ``aisys status`` names the lost host. PC2 boots again: its services come back with their state.
- MainPC goes away (with GCS fault tolerance, the head's default): PC2's services keep serving
  through PC2's own proxy; the head boots again and PC2's node rejoins by itself (its raylet
  reconnects to the restarted GCS); ``aisys status`` is healthy again with no command on PC2.

Each test ends with everything acknowledged before and during the outage still there. The
figures it prints (time to recover) are the README's.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e._hosts import (
    ADMIN_PASSWORD,
    Host,
    TwoHosts,
    http,
    kill_host,
    legacy,
    login,
    owned_processes,
    status,
    two_host_cluster,
    wait_healthy,
    wait_until,
)

pytestmark = pytest.mark.e2e

REQUEST_TIMEOUT_S = 6.0
REPLY_TIMEOUT_S = 2.0
RECOVERY_TIMEOUT_S = 300.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[TwoHosts]:
    extra = {
        "AISYS_RAY__REQUEST_TIMEOUT_S": str(REQUEST_TIMEOUT_S),
        "AISYS_LEGACY_GATEWAY__REPLY_TIMEOUT_S": str(REPLY_TIMEOUT_S),
    }
    with two_host_cluster(extra, keepers=True) as booted:
        yield booted


def _url(host: Host, cluster: TwoHosts, path: str) -> str:
    return f"http://{host.ns.ip}:{cluster.ports['http']}{path}"


def _register(cluster: TwoHosts, via: Host, token: str) -> str:
    agent_id = f"loss-{secrets.token_hex(4)}"
    body = json.dumps({"agent_id": agent_id, "host": "10.9.9.9", "port": 5000})
    posted = http(via, "POST", _url(via, cluster, "/core/agents"), body, token, timeout_s=30)
    assert posted["status"] == 200, posted
    return agent_id


def _agent(cluster: TwoHosts, via: Host, token: str, agent_id: str) -> Any:
    return http(via, "GET", _url(via, cluster, f"/core/agents/{agent_id}"), token=token)


def _publish_error(cluster: TwoHosts, via: Host, token: str, marker: str) -> None:
    event = {"agent": marker, "error_type": "node_loss", "severity": "warning", "message": marker}
    answer = http(via, "POST", _url(via, cluster, "/errors/"), json.dumps(event), token)
    assert answer["status"] in (200, 201, 202), answer


def _errors_of(cluster: TwoHosts, via: Host, token: str, marker: str) -> list[Any]:
    answer = http(via, "GET", _url(via, cluster, f"/errors/?agent={marker}&limit=10"), token=token)
    if answer["status"] != 200:
        return []
    events: list[Any] = json.loads(answer["body"])["items"]
    return events


def _found_on_7100(cluster: TwoHosts, agent_id: str) -> None:
    """The legacy ServiceRegistry on MainPC answers a lookup of ``agent_id``."""
    lookup = {"action": "get_agent_endpoint", "agent_name": agent_id}
    found = legacy(cluster.main, cluster.ports["legacy_sr"], lookup, "success", timeout_s=30)
    assert found["reply"]["status"] == "success", found


def _raylet(host: Host) -> int:
    (pid,) = [p.pid for p in owned_processes([host.data_dir]) if p.name() == "raylet"]
    return pid


def _timed(call: Any) -> tuple[Any, float]:
    start = time.monotonic()
    result = call()
    return result, time.monotonic() - start


def test_pc2_goes_away_and_comes_back(cluster: TwoHosts) -> None:
    main, pc2, ports = cluster.main, cluster.pc2, cluster.ports
    token = login(cluster)
    before = _register(cluster, main, token)
    lost_marker = f"before-pc2-loss-{secrets.token_hex(3)}"
    _publish_error(cluster, pc2, token, lost_marker)

    assert kill_host(pc2) > 0
    wait_until(
        "`aisys status` naming pc2 as lost",
        lambda: (s := status(main))[0] == 1 and '"state": "lost"' in json.dumps(s[1], indent=1),
        120,
        2,
    )
    code, report, text = status(main)
    assert report is not None, text
    lost = [n for n in report["nodes"] if n["state"] == "lost"]
    assert [n["hosts"] for n in lost] == [["pc2"]], lost

    # MainPC keeps answering registry writes and reads; the token issued before verifies.
    during = _register(cluster, main, token)
    assert _agent(cluster, main, token, before)["status"] == 200
    _found_on_7100(cluster, during)
    # A service that lived on PC2 answers within the timeouts, never hangs.
    answer, took = _timed(
        lambda: http(
            main,
            "POST",
            _url(main, cluster, "/security/token"),
            json.dumps({"grant_type": "password", "username": "admin", "password": "x" * 12}),
            timeout_s=1,
        )
    )
    assert answer["status"] in (408, 503), answer
    assert took < REQUEST_TIMEOUT_S + 8, took
    report_error = {
        "action": "report_error",
        "error": {"error_id": secrets.token_hex(4), "agent_id": "a", "message": "m"},
    }
    reply, took = _timed(
        lambda: legacy(main, ports["legacy_sdt_mainpc"], report_error, "error", timeout_s=1)
    )
    assert reply["reply"] is not None and reply["reply"]["status"] == "error", reply
    assert reply["elapsed_s"] < REPLY_TIMEOUT_S + 3, reply

    # PC2 boots again: its services come back with what they had.
    address = f"{main.ns.ip}:{ports['gcs']}"
    start = time.monotonic()
    booted = pc2.aisys("up", "--role", "worker", "--address", address, "--detach", timeout_s=180)
    assert booted.returncode == 0, booted.stdout + booted.stderr
    wait_healthy(main, RECOVERY_TIMEOUT_S)
    took = time.monotonic() - start
    sys.stderr.write(f"\nPC2's services back {took:.1f}s after PC2 booted again\n")
    fresh = login(cluster)  # the SecurityGateway (PC2) has its users back
    assert _errors_of(cluster, main, fresh, lost_marker), "an acknowledged error event was lost"
    for agent_id in (before, during):
        assert _agent(cluster, main, fresh, agent_id)["status"] == 200, agent_id
    assert _agent(cluster, pc2, token, during)["status"] == 200  # old token, PC2's proxy


def test_mainpc_goes_away_pc2_keeps_serving_and_rejoins(cluster: TwoHosts) -> None:
    main, pc2 = cluster.main, cluster.pc2
    wait_healthy(main, RECOVERY_TIMEOUT_S)
    token = login(cluster)
    before = _register(cluster, main, token)
    raylet = _raylet(pc2)

    assert kill_host(main) > 0
    # PC2's services keep serving through PC2's proxy while the head is gone.
    credentials = {"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD}
    answer = http(pc2, "POST", _url(pc2, cluster, "/security/token"), json.dumps(credentials))
    assert answer["status"] == 200, answer
    during = f"during-head-loss-{secrets.token_hex(3)}"
    _publish_error(cluster, pc2, token, during)

    # MainPC boots again; PC2 is not touched.
    start = time.monotonic()
    booted = main.aisys("up", "--role", "head", "--detach", timeout_s=240)
    assert booted.returncode == 0, booted.stdout + booted.stderr
    wait_healthy(main, RECOVERY_TIMEOUT_S)
    sys.stderr.write(f"\nhealthy {time.monotonic() - start:.1f}s after MainPC booted again\n")
    _, report, text = status(main)
    assert report is not None, text
    alive = {tuple(n["hosts"]) for n in report["nodes"] if n["alive"]}
    assert alive == {("mainpc",), ("pc2",)}, report["nodes"]
    # PC2 rejoined by itself: the same raylet reconnected to the restarted GCS (its keeper
    # did not have to start a new node).
    assert _raylet(pc2) == raylet
    assert _agent(cluster, main, token, before)["status"] == 200
    assert _errors_of(cluster, main, token, during), "an event acknowledged during the outage"
    _found_on_7100(cluster, before)
