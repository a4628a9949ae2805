"""The two-host harness of the e2e tests: a head and a worker in two network namespaces.

The head (host profile ``mainpc``) runs in namespace A and the worker (``pc2``) in namespace B;
they reach each other only over a veth pair, as two machines on a LAN do. Each has its own data
dir, the worker holding copies of the head's Ray token and NATS password. The Serve config hands
every service the head's data-dir path; on two machines that path is on each one's own disk, so
PC2's namespace sees its own data dir mounted at the head's path. Processes in both namespaces
share this machine's process table: each host's are found by its data dir's ``AISYS_OWNER``
markers, and stopped by pid (:func:`kill_host` for a power cut, ``aisys down`` for a clean stop).

Two ways to bring the cluster up, as an owner would: :func:`start_head` + :func:`join_worker`
(``aisys up --role head`` in the foreground, then the worker), or :func:`start_keepers`
(``aisys up --detach`` on both, as the boot units and ``ray up`` do; ``aisys supervise`` then
keeps each host running).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml

from cluster.ops._procs import MARKER_ENV, terminate
from tests.conftest import free_port, short_tmp_dir
from tests.e2e.netns import Netns, require_netns, veth_pair

REPO = Path(__file__).resolve().parents[2]
AISYS = str(Path(sys.executable).with_name("aisys"))
PORT_NAMES = (
    "gcs",
    "dashboard",
    "http",
    "grpc",
    "nats",
    "ray_client",
    "dashboard_agent",
    "gcs_store",
)
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


def host_env(data_dir: Path, main_ip: str, pc2_ip: str, ports: dict[str, int]) -> dict[str, str]:
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
        # GPUs from the NVML double on both hosts (mainpc a 4090, pc2 a 3060), with or without
        # a GPU on this machine; each node advertises its host's devices (--num-gpus 1).
        AISYS_RESOURCES__NVML_DOUBLE=str(
            REPO / "tests" / "fixtures" / "nvml" / "double_hosts.json"
        ),
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


def owned_processes(data_dirs: list[Path]) -> list[psutil.Process]:
    """Live processes of ``data_dirs`` (so this test started them): those whose aisys marker
    names one, and those running inside one (the GCS store's redis-server retitles itself,
    which can hide its marker)."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            owner = proc.environ().get(MARKER_ENV, "")
            cwd = proc.cwd()
            mine = any(f"{d}/" in owner or f"{cwd}/".startswith(f"{d}/") for d in data_dirs)
            if mine and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def wait_for_file(path: Path, proc: subprocess.Popen[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.is_file():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear (head exit code {proc.poll()})")
        time.sleep(0.05)


def start_head(main: Host) -> subprocess.Popen[str]:
    """Start ``aisys up --role head`` in the background: it blocks until PC2 joins."""
    with (main.data_dir / "up-head.log").open("w") as out:
        return main.ns.popen(
            [AISYS, "up", "--role", "head", "--wait", str(UP_TIMEOUT_S)],
            env=main.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )


def join_worker(main: Host, pc2: Host, head: subprocess.Popen[str], ports: dict[str, int]) -> None:
    """Start PC2's node with a copy of the head's token, then wait for the head's deploy."""
    log = main.data_dir / "up-head.log"
    # The head writes the cluster's token and NATS password first; PC2 gets copies, as the
    # operator would scp them (PC2's nats-server admits only aisys's user with that password).
    token = main.data_dir / "ray_token"
    wait_for_file(token, head, 30)
    wait_for_file(main.data_dir / "nats_password", head, 30)
    token_copy(main, pc2)
    reach = pc2.python(_PORT_SCRIPT, main.ns.ip, str(ports["gcs"]), "90", timeout_s=90)
    assert reach.returncode == 0, (
        f"the head's GCS at {main.ns.ip}:{ports['gcs']} is not reachable from PC2's namespace; "
        f"head log:\n{tail(log.read_text())}"
    )
    worker = pc2.aisys(
        "up", "--role", "worker", "--address", f"{main.ns.ip}:{ports['gcs']}", timeout_s=180
    )
    assert worker.returncode == 0, (
        f"worker `aisys up` failed:\n{tail(worker.stdout + worker.stderr)}"
    )
    try:
        code = head.wait(timeout=UP_TIMEOUT_S + 30)
    except subprocess.TimeoutExpired:
        code = None
    assert code == 0, f"head `aisys up` exited {code}:\n{tail(log.read_text())}"


def pc2_hosts_a_service(main: Host) -> None:
    """Serve only runs a proxy where a replica runs: PC2 must host at least one service."""
    generated = main.aisys("serve-config")
    assert generated.returncode == 0, tail(generated.stdout + generated.stderr)
    config: dict[str, Any] = yaml.safe_load(generated.stdout)
    pinned = {
        tag
        for app in config["applications"]
        for deployment in app["deployments"]
        for tag in deployment.get("ray_actor_options", {}).get("resources", {})
    }
    assert "pc2" in pinned, "no service is pinned to pc2, so PC2 would have no Serve proxy"


def teardown(hosts: list[Host], head: subprocess.Popen[str] | None) -> list[str]:
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
                f"{tail(result.stdout + result.stderr)}"
            )
    data_dirs = [h.data_dir for h in hosts]
    left = owned_processes(data_dirs)
    if left:
        problems.append(
            "processes survived `aisys down`: " + ", ".join(f"{p.pid} {p.name()}" for p in left)
        )
        terminate(left)  # they carry this test's own markers
    return problems


def http(
    host: Host, method: str, url: str, body: str = "", token: str = "", timeout_s: float = 60
) -> Any:
    result = host.python(
        _HTTP_SCRIPT, method, url, body, str(timeout_s), token, timeout_s=timeout_s
    )
    assert result.returncode == 0, tail(result.stdout + result.stderr)
    return json.loads(result.stdout)


def login(cluster: TwoHosts) -> str:
    """Log in as the admin through PC2's proxy (the SecurityGateway runs on PC2)."""
    login = http(
        cluster.pc2,
        "POST",
        f"http://{cluster.pc2.ns.ip}:{cluster.ports['http']}/security/token",
        json.dumps({"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD}),
    )
    assert login["status"] == 200, login
    token: str = json.loads(login["body"])["access_token"]
    return token


def legacy(host: Host, port: int, frame: object, wanted: str, timeout_s: float = 60) -> Any:
    address = f"tcp://{host.ns.ip}:{port}"
    result = host.python(
        _ZMQ_SCRIPT, address, json.dumps(frame), wanted, str(timeout_s), timeout_s=timeout_s
    )
    assert result.returncode == 0, tail(result.stdout + result.stderr)
    return json.loads(result.stdout)


def token_copy(main: Host, pc2: Host) -> None:
    """Give PC2 the head's Ray token and NATS password, as the owner copies them once (scp)."""
    for name in ("ray_token", "nats_password"):
        shutil.copy2(main.data_dir / name, pc2.data_dir / name)


def wait_until(what: str, probe: Any, timeout_s: float, every_s: float = 1.0) -> float:
    """Poll ``probe()`` until it is truthy; return the seconds it took. Fails with ``what``."""
    start = time.monotonic()
    last: Any = None
    while time.monotonic() - start < timeout_s:
        last = probe()
        if last:
            return time.monotonic() - start
        time.sleep(every_s)
    raise AssertionError(f"{what} not within {timeout_s:.0f}s; last answer: {last!r}")


def status(host: Host) -> tuple[int, dict[str, Any] | None, str]:
    """``aisys status --json`` on ``host``: exit code, the parsed status (if any), output tail."""
    result = host.aisys("status", "--json", timeout_s=90)
    try:
        parsed: dict[str, Any] | None = json.loads(result.stdout)
    except json.JSONDecodeError:
        parsed = None
    return result.returncode, parsed, tail(result.stdout + result.stderr, 20)


def start_keepers(cluster: TwoHosts) -> float:
    """Boot both hosts as the units do (``aisys up --detach``, worker first: it waits for the
    head); return the seconds until ``aisys status`` on the head is healthy."""
    start = time.monotonic()
    address = f"{cluster.main.ns.ip}:{cluster.ports['gcs']}"
    head = cluster.main.aisys("up", "--role", "head", "--detach", timeout_s=180)
    assert head.returncode == 0, tail(head.stdout + head.stderr)
    token_copy(cluster.main, cluster.pc2)
    worker = cluster.pc2.aisys(
        "up", "--role", "worker", "--address", address, "--detach", timeout_s=180
    )
    assert worker.returncode == 0, tail(worker.stdout + worker.stderr)
    wait_healthy(cluster.main, UP_TIMEOUT_S + 60)
    return time.monotonic() - start


def wait_healthy(main: Host, timeout_s: float) -> float:
    """Wait until ``aisys status`` on the head exits 0; the supervise log tail on failure."""
    log = main.data_dir / "supervise.log"
    try:
        return wait_until("`aisys status` healthy", lambda: status(main)[0] == 0, timeout_s, 2)
    except AssertionError as exc:
        text = log.read_text(errors="replace") if log.exists() else "(no supervise log)"
        raise AssertionError(f"{exc}\n{status(main)[2]}\nsupervise log:\n{tail(text)}") from None


def kill_host(host: Host) -> int:
    """A power cut: SIGKILL every process of ``host``'s data dir at once; return how many."""
    procs = owned_processes([host.data_dir])
    for proc in procs:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(procs, timeout=10)
    return len(procs)


@contextmanager
def two_host_cluster(
    extra_env: Mapping[str, str] | None = None, *, keepers: bool = False
) -> Iterator[TwoHosts]:
    """Two namespaces with a head and a worker; every application deployed; stopped after.

    Args:
        extra_env: more ``AISYS_*`` settings for both hosts.
        keepers: boot with ``aisys up --detach`` (``aisys supervise`` on both) instead of
            ``aisys up --role head`` in the foreground.
    """
    require_netns()
    ports = {name: free_port() for name in PORT_NAMES + LEGACY_PORT_NAMES}
    with veth_pair() as (a, b):
        dirs = [short_tmp_dir("aisys-e2a-"), short_tmp_dir("aisys-e2b-")]
        envs = [{**host_env(d, a.ip, b.ip, ports), **(extra_env or {})} for d in dirs]
        main = Host(a, dirs[0], envs[0])
        # The services pinned to pc2 write under the head's data-dir path, on PC2's own disk.
        pc2 = Host(b.with_bind(dirs[1], dirs[0]), dirs[1], envs[1])
        cluster = TwoHosts(main, pc2, ports)
        head = None
        problems: list[str] = []
        try:
            if keepers:
                start_keepers(cluster)
            else:
                head = start_head(main)
                join_worker(main, pc2, head, ports)
            pc2_hosts_a_service(main)
            yield cluster
        finally:
            problems = teardown([pc2, main], head)
            for d in dirs:
                shutil.rmtree(d, ignore_errors=True)
    assert not problems, "\n".join(problems)
