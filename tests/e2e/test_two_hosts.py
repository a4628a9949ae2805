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
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from cluster._procs import MARKER_ENV, terminate
from tests.conftest import free_port, short_tmp_dir
from tests.e2e.netns import Netns, require_netns, veth_pair

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
AISYS = str(Path(sys.executable).with_name("aisys"))
PORT_NAMES = ("gcs", "dashboard", "http", "grpc", "nats", "ray_client", "dashboard_agent")
LEGACY_PORT_NAMES = ("legacy_sr", "legacy_sr_health", "legacy_sdt_mainpc", "legacy_sdt_pc2")
UP_TIMEOUT_S = 150.0
ADMIN_PASSWORD = "e2e-admin-password"

# Sent through `python -c` inside a namespace: one legacy REQ client asks `frame` at `address`
# until `wanted` is the reply's status or the deadline; writes {"reply", "elapsed_s"} as JSON.
_ZMQ_SCRIPT = """
import json, sys, time
import zmq
address, frame, wanted, timeout_s = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
ctx = zmq.Context()
start = time.monotonic()
reply = None
while time.monotonic() - start < timeout_s:
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 5000)
    sock.connect(address)
    try:
        sock.send(frame.encode())
        reply = json.loads(sock.recv())
    except zmq.Again:
        reply = None
    finally:
        sock.close(linger=0)
    if reply is not None and reply.get("status") == wanted:
        break
    time.sleep(0.01)
print(json.dumps({"reply": reply, "elapsed_s": time.monotonic() - start}))
"""

# Sent through `python -c` inside a namespace: retries until the host answers other than
# "not there yet" (connection refused, 404 or 503 while a Serve proxy starts) or the deadline,
# then writes {"status": ..., "body": ...} as JSON.
_HTTP_SCRIPT = """
import json, sys, time
import httpx
method, url, body, timeout_s = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
headers = {"content-type": "application/json"}
if sys.argv[5]:
    headers["authorization"] = "Bearer " + sys.argv[5]
deadline = time.monotonic() + timeout_s
result = {"status": None, "body": "no attempt"}
while True:
    try:
        r = httpx.request(method, url, content=body or None, timeout=10, headers=headers)
        result = {"status": r.status_code, "body": r.text}
        if r.status_code not in (404, 503):
            break
    except httpx.HTTPError as exc:
        result = {"status": None, "body": repr(exc)}
    if time.monotonic() > deadline:
        break
    time.sleep(0.2)
sys.stdout.write(json.dumps(result))
"""

# Waits (inside a namespace) until HOST:PORT accepts TCP connections; exits 1 at the deadline.
_PORT_SCRIPT = """
import socket, sys, time
host, port, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
while time.monotonic() < deadline:
    try:
        socket.create_connection((host, port), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
"""


@dataclass(frozen=True)
class Host:
    """One host of the cluster: its namespace, data dir and the environment of its commands."""

    ns: Netns
    data_dir: Path
    env: dict[str, str]

    def aisys(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        return self.ns.run([AISYS, *args], env=self.env, timeout_s=timeout_s)

    def python(self, script: str, *args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
        return self.ns.run(
            [sys.executable, "-c", script, *args], env=self.env, timeout_s=timeout_s + 30
        )


@dataclass(frozen=True)
class TwoHosts:
    main: Host
    pc2: Host
    ports: dict[str, int]


def _host_env(data_dir: Path, main_ip: str, pc2_ip: str, ports: dict[str, int]) -> dict[str, str]:
    """The environment of an ``aisys`` command on one host: its data dir, both IPs, the ports."""
    # Drop this session's Ray token (tests/conftest.py) and any outer aisys or Ray settings:
    # each host reads the cluster's token from its own data dir.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AISYS_", "RAY_"))}
    env.update(
        AISYS_SECURITY__ADMIN_PASSWORD=ADMIN_PASSWORD,
        AISYS_DATA_DIR=str(data_dir),
        AISYS_HOSTS__MAINPC__TAG="mainpc",
        AISYS_HOSTS__MAINPC__ROLE="head",
        AISYS_HOSTS__MAINPC__NODE_IP=main_ip,
        AISYS_HOSTS__PC2__TAG="pc2",
        AISYS_HOSTS__PC2__ROLE="worker",
        AISYS_HOSTS__PC2__NODE_IP=pc2_ip,
        AISYS_RAY__OBJECT_STORE_MEMORY_MB="200",
        RAY_USAGE_STATS_ENABLED="0",
    )
    for name, port in ports.items():
        if name not in LEGACY_PORT_NAMES:
            env[f"AISYS_PORTS__{name.upper()}"] = str(port)
    # The legacy gateway on random ports too (section `legacy_gateway.ports`, per host).
    env["AISYS_LEGACY_GATEWAY__PORTS"] = json.dumps(
        {
            "mainpc": {
                "service_registry": ports["legacy_sr"],
                "service_registry_health": ports["legacy_sr_health"],
                "system_digital_twin": ports["legacy_sdt_mainpc"],
            },
            "pc2": {"system_digital_twin": ports["legacy_sdt_pc2"]},
        }
    )
    return env


def _owned_processes(data_dirs: list[Path]) -> list[psutil.Process]:
    """Live processes whose aisys marker names one of ``data_dirs`` (so this test started them)."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            owner = proc.environ().get(MARKER_ENV, "")
            mine = any(f"{d}/" in owner for d in data_dirs)
            if mine and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _wait_for_file(path: Path, proc: subprocess.Popen[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.is_file():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear (head exit code {proc.poll()})")
        time.sleep(0.05)


def _start_head(main: Host) -> subprocess.Popen[str]:
    """Start ``aisys up --role head`` in the background: it blocks until PC2 joins."""
    with (main.data_dir / "up-head.log").open("w") as out:
        return main.ns.popen(
            [AISYS, "up", "--role", "head", "--wait", str(UP_TIMEOUT_S)],
            env=main.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )


def _join_worker(main: Host, pc2: Host, head: subprocess.Popen[str], ports: dict[str, int]) -> None:
    """Start PC2's node with a copy of the head's token, then wait for the head's deploy."""
    log = main.data_dir / "up-head.log"
    # The head writes the cluster's token first; PC2 gets a copy, as the operator would scp it.
    token = main.data_dir / "ray_token"
    _wait_for_file(token, head, 30)
    shutil.copy2(token, pc2.data_dir / "ray_token")
    reach = pc2.python(_PORT_SCRIPT, main.ns.ip, str(ports["gcs"]), "90", timeout_s=90)
    assert reach.returncode == 0, (
        f"the head's GCS at {main.ns.ip}:{ports['gcs']} is not reachable from PC2's namespace; "
        f"head log:\n{_tail(log.read_text())}"
    )
    worker = pc2.aisys(
        "up", "--role", "worker", "--address", f"{main.ns.ip}:{ports['gcs']}", timeout_s=180
    )
    assert worker.returncode == 0, (
        f"worker `aisys up` failed:\n{_tail(worker.stdout + worker.stderr)}"
    )
    try:
        code = head.wait(timeout=UP_TIMEOUT_S + 30)
    except subprocess.TimeoutExpired:
        code = None
    assert code == 0, f"head `aisys up` exited {code}:\n{_tail(log.read_text())}"


def _pc2_hosts_a_service(main: Host) -> None:
    """Serve only runs a proxy where a replica runs: PC2 must host at least one service."""
    generated = main.aisys("serve-config")
    assert generated.returncode == 0, _tail(generated.stdout + generated.stderr)
    config: dict[str, Any] = yaml.safe_load(generated.stdout)
    pinned = {
        tag
        for app in config["applications"]
        for deployment in app["deployments"]
        for tag in deployment.get("ray_actor_options", {}).get("resources", {})
    }
    assert "pc2" in pinned, "no service is pinned to pc2, so PC2 would have no Serve proxy"


def _teardown(hosts: list[Host], head: subprocess.Popen[str] | None) -> list[str]:
    """Stop both hosts with ``aisys down``; return what went wrong (nothing, normally)."""
    problems = []
    if head is not None and head.poll() is None:
        problems.append("head `aisys up` was still running at teardown; killed it")
        head.kill()
        head.wait(timeout=30)
    for host in hosts:
        result = host.aisys("down", timeout_s=120)
        if result.returncode != 0:
            problems.append(
                f"`aisys down` in {host.ns.name} exited {result.returncode}:\n"
                f"{_tail(result.stdout + result.stderr)}"
            )
    data_dirs = [h.data_dir for h in hosts]
    left = _owned_processes(data_dirs)
    if left:
        problems.append(
            "processes survived `aisys down`: " + ", ".join(f"{p.pid} {p.name()}" for p in left)
        )
        terminate(left)  # they carry this test's own markers
    return problems


@pytest.fixture(scope="module")
def two_hosts() -> Iterator[TwoHosts]:
    """A head in one namespace and a worker in another, with every application deployed."""
    require_netns()
    ports = {name: free_port() for name in PORT_NAMES + LEGACY_PORT_NAMES}
    with veth_pair() as (a, b):
        dirs = [short_tmp_dir("aisys-e2a-"), short_tmp_dir("aisys-e2b-")]
        main = Host(a, dirs[0], _host_env(dirs[0], a.ip, b.ip, ports))
        # The services pinned to pc2 write under the head's data-dir path, on PC2's own disk.
        pc2 = Host(b.with_bind(dirs[1], dirs[0]), dirs[1], _host_env(dirs[1], a.ip, b.ip, ports))
        head = None
        problems: list[str] = []
        try:
            head = _start_head(main)
            _join_worker(main, pc2, head, ports)
            _pc2_hosts_a_service(main)
            yield TwoHosts(main, pc2, ports)
        finally:
            problems = _teardown([pc2, main], head)
            for d in dirs:
                shutil.rmtree(d, ignore_errors=True)
    assert not problems, "\n".join(problems)


def _status(cluster: TwoHosts) -> dict[str, Any]:
    result = cluster.main.aisys("status", "--json")
    assert result.returncode == 0, (
        f"`aisys status` says unhealthy or failed:\n{_tail(result.stdout + result.stderr)}"
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


def _http(
    host: Host, method: str, url: str, body: str = "", token: str = "", timeout_s: float = 60
) -> Any:
    result = host.python(
        _HTTP_SCRIPT, method, url, body, str(timeout_s), token, timeout_s=timeout_s
    )
    assert result.returncode == 0, _tail(result.stdout + result.stderr)
    return json.loads(result.stdout)


def _login(cluster: TwoHosts) -> str:
    """Log in as the admin through PC2's proxy (the SecurityGateway runs on PC2)."""
    login = _http(
        cluster.pc2,
        "POST",
        f"http://{cluster.pc2.ns.ip}:{cluster.ports['http']}/security/token",
        json.dumps({"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD}),
    )
    assert login["status"] == 200, login
    token: str = json.loads(login["body"])["access_token"]
    return token


def test_twin_shows_both_hosts_measured_on_each_and_simulates_load(two_hosts: TwoHosts) -> None:
    token = _login(two_hosts)
    base = f"http://{two_hosts.main.ns.ip}:{two_hosts.ports['http']}/core"
    deadline = time.monotonic() + 60
    while True:
        twin = json.loads(_http(two_hosts.main, "GET", f"{base}/twin", token=token)["body"])
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
        assert host["gpus"] == []  # no NVIDIA device here: zero GPUs, never an invented one
    answer = _http(
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
    http = two_hosts.ports["http"]
    agent_id = f"e2e-{secrets.token_hex(4)}"
    registration = {"agent_id": agent_id, "host": "10.0.0.9", "port": 5000}
    token = _login(two_hosts)

    posted = _http(
        two_hosts.pc2,
        "POST",
        f"http://{two_hosts.pc2.ns.ip}:{http}/core/agents",
        json.dumps(registration),
        token,
    )
    assert posted["status"] == 200, posted
    got = _http(
        two_hosts.main,
        "GET",
        f"http://{two_hosts.main.ns.ip}:{http}/core/agents/{agent_id}",
        token=token,
        timeout_s=20,
    )

    assert got["status"] == 200, got
    record = json.loads(got["body"])
    assert {k: record[k] for k in registration} == registration


def _legacy(host: Host, port: int, frame: object, wanted: str, timeout_s: float = 60) -> Any:
    address = f"tcp://{host.ns.ip}:{port}"
    result = host.python(
        _ZMQ_SCRIPT, address, json.dumps(frame), wanted, str(timeout_s), timeout_s=timeout_s
    )
    assert result.returncode == 0, _tail(result.stdout + result.stderr)
    return json.loads(result.stdout)


def test_legacy_registration_through_pc2_7120_is_returned_by_mainpc_7100(
    two_hosts: TwoHosts,
) -> None:
    ports = two_hosts.ports
    name = f"e2e-legacy-{secrets.token_hex(4)}"
    registration = {  # what BaseAgent sends to localhost:7120 on PC2 (legacy-protocol.md 2.2)
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
    done = _legacy(two_hosts.pc2, ports["legacy_sdt_pc2"], registration, "success")
    assert done["reply"] == {"status": "success"}
    lookup = {"action": "get_agent_endpoint", "agent_name": name}
    found = _legacy(two_hosts.main, ports["legacy_sr"], lookup, "success", timeout_s=20)
    reply = found["reply"]
    assert reply["status"] == "success", reply
    assert (reply["host"], reply["port"]) == (two_hosts.pc2.ns.ip, 7113)
    # The command dialect without an ip: the registrant's address on the LAN is recorded.
    other = f"{name}-sdc"
    command = {"command": "REGISTER", "payload": {"name": other, "port": 5562}}
    assert _legacy(two_hosts.pc2, ports["legacy_sdt_pc2"], command, "SUCCESS")["reply"] == {
        "status": "SUCCESS",
        "message": f"Service {other} registered successfully",
    }
    discover = {"command": "DISCOVER", "payload": {"name": other}}
    found = _legacy(two_hosts.main, ports["legacy_sdt_mainpc"], discover, "SUCCESS", timeout_s=20)
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

    output = _tail(result.stdout + result.stderr, 60)
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
    # No GPU in either namespace: the lease is refused, never granted on an invented device.
    assert "refused with LeaseUnavailable" in lines["resources.lease"]
    # The head's `aisys up` ended with the same check.
    assert "check passed: 10 steps" in (two_hosts.main.data_dir / "up-head.log").read_text()


def test_metrics_show_both_hosts_each_measured_on_its_own_node(two_hosts: TwoHosts) -> None:
    """``curl :7000/observability/metrics``: host figures for both tags, each from its node."""
    token = _login(two_hosts)
    url = f"http://{two_hosts.main.ns.ip}:{two_hosts.ports['http']}/observability/metrics"
    info: dict[str, str] = {}
    text = ""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        answer = _http(two_hosts.main, "GET", url, token=token)
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
    assert result.returncode == 0, _tail(result.stdout + result.stderr)

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
