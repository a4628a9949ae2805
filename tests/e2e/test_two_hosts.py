"""Two hosts for real: ``aisys up`` on a head and a worker in two network namespaces.

The head (host profile ``mainpc``) runs in namespace A and the worker (``pc2``) in namespace B;
they reach each other only over a veth pair, as two machines on a LAN do. Each has its own data
dir, the worker holding a copy of the head's Ray token. The Serve config hands every service
the head's data-dir path; on two machines that path is on each one's own disk, so PC2's
namespace sees its own data dir mounted at the head's path. The checks: every replica runs on
the node of its host tag, a registration made through PC2's Serve proxy is read back through
MainPC's, and a backup taken on the head holds each host's own files. Teardown runs ``aisys
down`` on both and fails if any process of theirs survives.

Serve starts a proxy only on the head and on nodes running a replica; services pinned to PC2
(the SecurityGateway among them) give PC2 its proxy, and the fixture checks that this holds.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e._hosts import (
    TwoHosts,
    http,
    legacy,
    login,
    tail,
    two_host_cluster,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def two_hosts() -> Iterator[TwoHosts]:
    """A head in one namespace and a worker in another, with every application deployed."""
    with two_host_cluster() as cluster:
        yield cluster


def _status(cluster: TwoHosts) -> dict[str, Any]:
    result = cluster.main.aisys("status", "--json")
    assert result.returncode == 0, (
        f"`aisys status` says unhealthy or failed:\n{tail(result.stdout + result.stderr)}"
    )
    status: dict[str, Any] = json.loads(result.stdout)
    return status


def test_each_replica_runs_on_the_node_of_its_host_tag(two_hosts: TwoHosts) -> None:
    status = _status(two_hosts)

    nodes = {tuple(n["tags"]): n["ip"] for n in status["nodes"] if n["alive"]}
    assert nodes == {("mainpc",): two_hosts.main.ns.ip, ("pc2",): two_hosts.pc2.ns.ip}
    apps = {app["name"]: app for app in status["applications"]}
    assert apps["core"]["status"] == "RUNNING"
    assert [d["hosts"] for d in apps["core"]["deployments"]] == [["mainpc"]]
    for app in apps.values():
        for deployment in app["deployments"]:
            assert deployment["hosts"] == [deployment["host_tag"]], (app["name"], deployment)


def test_twin_shows_both_hosts_measured_on_each_and_simulates_load(two_hosts: TwoHosts) -> None:
    token = login(two_hosts)
    base = f"http://{two_hosts.main.ns.ip}:{two_hosts.ports['http']}/core"
    deadline = time.monotonic() + 60
    while True:
        twin = json.loads(http(two_hosts.main, "GET", f"{base}/twin", token=token)["body"])
        hosts = {h["host"]: h for h in twin["hosts"]}
        if all(h.get("cpu_percent") is not None for h in hosts.values()) or (
            time.monotonic() > deadline
        ):
            break
        time.sleep(0.5)
    assert set(hosts) == {"mainpc", "pc2"}
    # Each host's probe actor runs on that host's node: it reports that node's own address.
    assert hosts["mainpc"]["ip"] == two_hosts.main.ns.ip
    assert hosts["pc2"]["ip"] == two_hosts.pc2.ns.ip
    for host in hosts.values():
        assert 0 <= host["cpu_percent"] <= 100 and host["memory_total_mb"] > 0
        # The NVML double's devices (tests/e2e/_hosts.py), read on each host, shown as such.
        assert [g["source"] for g in host["gpus"]] == ["nvml-double"]
    assert [g["total_mb"] for g in hosts["mainpc"]["gpus"] + hosts["pc2"]["gpus"]] == [24564, 12288]
    answer = http(
        two_hosts.main,
        "POST",
        f"{base}/twin/simulate_load",
        json.dumps({"host": "pc2", "cpu_percent": 5, "ram_mb": 64}),
        token,
    )
    assert answer["status"] == 200, answer
    result = json.loads(answer["body"])
    assert result["host"] == "pc2" and result["recommendation"] in (
        "proceed",
        "caution_high_cpu",
        "deny_insufficient_resources",
    )
    assert {c["resource"] for c in result["checks"]} >= {"cpu", "ram"}


def test_registration_through_pc2_is_read_back_through_mainpc(two_hosts: TwoHosts) -> None:
    port = two_hosts.ports["http"]
    agent_id = f"e2e-{secrets.token_hex(4)}"
    registration = {"agent_id": agent_id, "host": "10.0.0.9", "port": 5000}
    token = login(two_hosts)

    posted = http(
        two_hosts.pc2,
        "POST",
        f"http://{two_hosts.pc2.ns.ip}:{port}/core/agents",
        json.dumps(registration),
        token,
    )
    assert posted["status"] == 200, posted
    got = http(
        two_hosts.main,
        "GET",
        f"http://{two_hosts.main.ns.ip}:{port}/core/agents/{agent_id}",
        token=token,
        timeout_s=20,
    )

    assert got["status"] == 200, got
    record = json.loads(got["body"])
    assert {k: record[k] for k in registration} == registration


def test_legacy_registration_through_pc2_7120_is_returned_by_mainpc_7100(
    two_hosts: TwoHosts,
) -> None:
    ports = two_hosts.ports
    name = f"e2e-legacy-{secrets.token_hex(4)}"
    registration = {  # what BaseAgent sends to localhost:7120 on PC2 (docs/legacy-protocol.md 2.2)
        "action": "register_agent",
        "agent_name": name,
        "status": "HEALTHY",
        "location": "MainPC",
        "registration_data": {
            "agent_id": name,
            "agent_type": "ResourceManager",
            "host": two_hosts.pc2.ns.ip,
            "port": 7113,
            "health_check_port": 7114,
            "capabilities": ["basic_agent"],
            "dependencies": [],
            "metadata": {},
        },
    }
    done = legacy(two_hosts.pc2, ports["legacy_sdt_pc2"], registration, "success")
    assert done["reply"] == {"status": "success"}
    lookup = {"action": "get_agent_endpoint", "agent_name": name}
    found = legacy(two_hosts.main, ports["legacy_sr"], lookup, "success", timeout_s=20)
    reply = found["reply"]
    assert reply["status"] == "success", reply
    assert (reply["host"], reply["port"]) == (two_hosts.pc2.ns.ip, 7113)
    # The command dialect without an ip: the registrant's address on the LAN is recorded.
    other = f"{name}-sdc"
    command = {"command": "REGISTER", "payload": {"name": other, "port": 5562}}
    assert legacy(two_hosts.pc2, ports["legacy_sdt_pc2"], command, "SUCCESS")["reply"] == {
        "status": "SUCCESS",
        "message": f"Service {other} registered successfully",
    }
    discover = {"command": "DISCOVER", "payload": {"name": other}}
    found = legacy(two_hosts.main, ports["legacy_sdt_mainpc"], discover, "SUCCESS", timeout_s=20)
    payload = found["reply"]["payload"]
    assert (payload["ip"], payload["host"], payload["port"]) == (
        two_hosts.pc2.ns.ip,
        two_hosts.pc2.ns.ip,
        5562,
    )


def test_aisys_check_passes_on_the_head(two_hosts: TwoHosts) -> None:
    """`aisys check` on MainPC: every step passes across both hosts, as `aisys up` saw too."""
    main_ip, pc2_ip = two_hosts.main.ns.ip, two_hosts.pc2.ns.ip
    result = two_hosts.main.aisys("check", timeout_s=300)

    output = tail(result.stdout + result.stderr, 60)
    assert result.returncode == 0, output
    lines = {
        line.split()[1]: line
        for line in result.stdout.splitlines()
        if line.startswith(("PASS ", "FAIL ", "SKIP "))
    }
    assert list(lines) == [
        "security.token",
        "registry.http",
        "legacy.service_registry@mainpc",
        "legacy.system_digital_twin@mainpc",
        "legacy.system_digital_twin@pc2",
        "core.request",
        "errors.publish",
        "resources.lease",
        "observability.metrics",
        "cleanup",
    ], output
    assert all(line.startswith("PASS ") for line in lines.values()), output
    # The throw-away agent listens on MainPC's LAN address; PC2's 7120 is reached over the LAN.
    assert f"agent at {main_ip}:" in lines["core.request"]
    assert (
        f"tcp://{pc2_ip}:{two_hosts.ports['legacy_sdt_pc2']}"
        in lines["legacy.system_digital_twin@pc2"]
    )
    # The NVML double's GPUs: the lease is granted on the best fit, pc2's 3060.
    assert "granted on pc2 GPU 0, released" in lines["resources.lease"]
    # The head's `aisys up` ended with the same check.
    assert "check passed: 10 steps" in (two_hosts.main.data_dir / "up-head.log").read_text()


def test_metrics_show_both_hosts_each_measured_on_its_own_node(two_hosts: TwoHosts) -> None:
    """``curl :7000/observability/metrics``: host figures for both tags, each from its node."""
    token = login(two_hosts)
    url = f"http://{two_hosts.main.ns.ip}:{two_hosts.ports['http']}/observability/metrics"
    info: dict[str, str] = {}
    text = ""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        answer = http(two_hosts.main, "GET", url, token=token)
        assert answer["status"] == 200, answer
        text = answer["body"]
        info = {
            labels["host"]: labels["ip"]
            for labels in (
                dict(re.findall(r'(\w+)="([^"]*)"', body))
                for body in re.findall(r"^aisys_host_info\{([^}]*)\}", text, re.MULTILINE)
            )
        }
        if set(info) == {"mainpc", "pc2"} and 'aisys_host_cpu_used_ratio{host="pc2"}' in text:
            break
        time.sleep(1)
    # Each host's probe runs on that host's node, so it reports that node's own address.
    host_lines = [line for line in text.splitlines() if line.startswith("aisys_host_")]
    assert info == {"mainpc": two_hosts.main.ns.ip, "pc2": two_hosts.pc2.ns.ip}, host_lines
    for host in ("mainpc", "pc2"):
        assert f'aisys_host_cpu_used_ratio{{host="{host}"}}' in text
        assert f'aisys_host_memory_total_bytes{{host="{host}"}}' in text
        assert f'aisys_host_up{{host="{host}"}} 1.0' in text


def test_backup_on_the_head_holds_each_hosts_own_files(two_hosts: TwoHosts, tmp_path: Path) -> None:
    """`aisys backup` on MainPC reads PC2's databases on PC2's node, not the head's disk."""
    archive = tmp_path / "aisys-backup.tar.gz"
    result = two_hosts.main.aisys("backup", str(archive), timeout_s=300)
    assert result.returncode == 0, tail(result.stdout + result.stderr)

    with tarfile.open(archive, "r:gz") as tar:
        manifest: dict[str, Any] = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        tar.extractall(tmp_path, filter="data")
    sections = {"+".join(s["tags"]): s for s in manifest["sections"]}
    assert set(sections) == {"mainpc", "pc2"}, manifest["sections"]
    pc2_files, main_files = set(sections["pc2"]["files"]), set(sections["mainpc"]["files"])
    # The SecurityGateway and the ResourceScheduler run on pc2, the registry on mainpc.
    assert {"security.sqlite3", "resources.sqlite3"} <= pc2_files
    assert "registry.sqlite3" in main_files
    assert not {"security.sqlite3", "resources.sqlite3"} & main_files
    assert "registry.sqlite3" not in pc2_files
    users = sqlite3.connect(tmp_path / sections["pc2"]["root"] / "security.sqlite3")
    try:
        tables = {row[0] for row in users.execute("SELECT name FROM sqlite_master")}
    finally:
        users.close()
    assert tables, "PC2's security database in the archive is empty"
    assert "ERRORS" in manifest["streams"]
