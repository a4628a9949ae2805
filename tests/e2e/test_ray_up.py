"""``ray up cluster.yaml`` for real: the shipped start commands bring up the whole system.

Two network namespaces are the two PCs, each running its own ``sshd`` (Debian's
openssh-server) on its veth address; ``ray up`` runs in MainPC's namespace, as on MainPC, with a
copy of the shipped ``cluster.yaml`` in which only what differs on this machine is replaced: the
IP addresses, the cluster name, the ssh user and key, the data dir of the secrets the head
generates and its autoscaler copies to PC2 (each host's data dir is a temp dir, not
``~/.local/share/aisys``), and the file mount and setup command that would copy the project and
``make venv`` (the namespaces have no network; every host already has this checkout and its venv
at ``~/aisys``). The head and worker setup and start commands are the shipped ones.

Each host's sshd and everything it starts see the host as a PC would: its own home, a temp dir
mounted over ``/root`` in that namespace's mount namespace (so ``~/.bashrc``, ``~/aisys`` and
``~/ray_bootstrap_*`` are per host and never the machine's; the Python installation under
``/root`` this venv runs on is mounted back in), and aisys's settings through ``SetEnv`` in its
sshd config: a settings file in its data dir (``AISYS_CONFIG``) and the GCS port the worker's
start command reads. PC2 sees its own data dir at the head's path, as on two disks (the synced
secrets and the Serve config name the head's path).

Checked: ``aisys check`` passes (the head's ``aisys supervise`` runs it once the worker joined;
the time from ``ray up`` to that is printed for the README), every replica runs on the node of
its host tag, ``ray down`` leaves no process of either host's data dir, and no ``ray stop`` ran:
a sentinel process that ``ray stop`` would kill (its command line names ``log_monitor.py``)
outlives ``ray down``.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from cluster.base.settings import PortSettings
from cluster.ops._procs import terminate
from tests.conftest import free_port, short_tmp_dir
from tests.e2e._hosts import LEGACY_PORT_NAMES, owned_processes, tail
from tests.e2e.netns import Netns, require_netns, veth_pair

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SHIPPED = REPO / "cluster.yaml"
SSHD = "/usr/sbin/sshd"
ADMIN_PASSWORD = "e2e-admin-password"
UP_TIMEOUT_S = 480.0
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class SshHost:
    """One PC: its namespace, data dir, home and the environment of its sessions."""

    ns: Netns
    data_dir: Path
    home: Path
    env: dict[str, str]

    def aisys(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        return self.ns.run([str(VENV_BIN / "aisys"), *args], env=self.env, timeout_s=timeout_s)


def _require_tools() -> None:
    for tool in (SSHD, shutil.which("ssh"), shutil.which("rsync"), shutil.which("ssh-keygen")):
        if tool is None or not Path(tool).exists():
            pytest.fail(
                "the ray up test needs openssh-server (sshd), openssh-client and rsync: "
                "`make system-deps` installs them"
            )


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "aisys-e2e", "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )


def _settings_file(data_dir: Path, ports: dict[str, int]) -> Path:
    """The host's aisys settings: its data dir, the test's ports, a small object store."""
    settings: dict[str, Any] = {
        "data_dir": str(data_dir),
        "ports": {k: v for k, v in ports.items() if k not in LEGACY_PORT_NAMES},
        "legacy_gateway": {
            "ports": {
                "mainpc": {
                    "service_registry": ports["legacy_sr"],
                    "service_registry_health": ports["legacy_sr_health"],
                    "system_digital_twin": ports["legacy_sdt_mainpc"],
                },
                "pc2": {"system_digital_twin": ports["legacy_sdt_pc2"]},
            }
        },
        "ray": {"object_store_memory_mb": 200},
        "security": {"admin_password": ADMIN_PASSWORD},
    }
    path = data_dir / "aisys.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def _host_env(settings_file: Path, gcs_port: int) -> dict[str, str]:
    """What a host's sessions see (SetEnv of its sshd): aisys's settings file and the GCS port
    the worker's start command reads."""
    return {"AISYS_CONFIG": str(settings_file), "AISYS_PORTS__GCS": str(gcs_port)}


def _as_root_home(ns: Netns, home: Path, stage: Path) -> Netns:
    """``ns`` with ``home`` mounted over ``/root``, and back in it what of ``/root`` this test's
    Python runs from (pyenv's installation, which the venv's interpreter links to)."""
    python = Path(os.path.realpath(sys.executable))
    if not python.is_relative_to("/root"):
        return ns.with_bind(home, Path("/root"))
    top = Path("/root") / python.relative_to("/root").parts[0]
    (home / top.name).mkdir(exist_ok=True)
    staged = stage / top.name
    staged.mkdir(parents=True, exist_ok=True)
    return ns.with_bind(top, staged).with_bind(home, Path("/root")).with_bind(staged, top)


def _start_sshd(
    ns: Netns, work: Path, authorized: Path, set_env: dict[str, str]
) -> subprocess.Popen[str]:
    """Start ``sshd -D`` in ``ns`` on its veth address; returns once it listens."""
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    host_key = work / "ssh_host_ed25519_key"
    _keygen(host_key)
    config = work / "sshd_config"
    config.write_text(
        "\n".join(
            [
                "Port 22",
                f"ListenAddress {ns.ip}",
                f"HostKey {host_key}",
                f"PidFile {work / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized}",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "MaxStartups 100",
                "MaxSessions 100",
                "SetEnv " + " ".join(f"{k}={v}" for k, v in set_env.items()),
                "",
            ]
        )
    )
    log = work / "sshd.log"
    with log.open("w") as out:
        proc = ns.popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            env={"PATH": SYSTEM_PATH},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while "Server listening on" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"sshd in {ns.name} did not start:\n{tail(log.read_text())}")
        time.sleep(0.05)
    return proc


def _home(path: Path) -> Path:
    """A host's home: the project at ~/aisys (this checkout and its venv), an empty .bashrc."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "aisys").symlink_to(REPO)
    (path / ".bashrc").write_text("# aisys e2e host\n")
    return path


def _test_cluster_yaml(name: str, main: SshHost, pc2: SshHost, key: Path) -> dict[str, Any]:
    """The shipped cluster.yaml with this machine's addresses, user, key, data dir and setup."""
    shipped: dict[str, Any] = yaml.safe_load(SHIPPED.read_text())
    ips = {
        shipped["provider"]["head_ip"]: main.ns.ip,
        shipped["provider"]["worker_ips"][0]: pc2.ns.ip,
    }

    def with_ips(commands: list[str]) -> list[str]:
        out = []
        for command in commands:
            for old, new in ips.items():
                command = command.replace(old, new)
            out.append(command)
        return out

    config = dict(shipped)
    config["cluster_name"] = name
    config["provider"] = {"type": "local", "head_ip": main.ns.ip, "worker_ips": [pc2.ns.ip]}
    config["auth"] = {"ssh_user": "root", "ssh_private_key": str(key)}
    # Each host's data dir is a temp dir (PC2 sees its own at the head's path).
    default = "~/.local/share/aisys/"
    assert all(path.startswith(default) for path in shipped["cluster_synced_files"])
    config["cluster_synced_files"] = [
        path.replace(default, f"{main.data_dir}/") for path in shipped["cluster_synced_files"]
    ]
    # No network in the namespaces: the project and its venv are already at ~/aisys.
    config["file_mounts"] = {}
    config["setup_commands"] = ["test -x ~/aisys/.venv/bin/aisys"]
    for key_name in (
        "head_setup_commands",
        "worker_setup_commands",
        "head_start_ray_commands",
        "worker_start_ray_commands",
    ):
        config[key_name] = with_ips(shipped[key_name])
    for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
        assert not any("ray stop" in c for c in commands), commands
    return config


def _sentinel() -> subprocess.Popen[bytes]:
    """A process `ray stop` would kill, anywhere on the machine (it matches `log_monitor.py`)."""
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(3600)", "aisys-e2e/log_monitor.py"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@dataclass
class Cluster:
    main: SshHost
    pc2: SshHost
    launcher: Path
    config: Path
    work: Path
    up_output: str = ""
    up_to_check_s: float = 0.0
    up_returned_s: float = 0.0


def _launcher_env(launcher: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AISYS_", "RAY_"))}
    env.update(HOME=str(launcher), PATH=f"{VENV_BIN}:{SYSTEM_PATH}", RAY_USAGE_STATS_ENABLED="0")
    return env


def _ray(cluster: Cluster, *args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    """``ray ARGS cluster.yaml`` in MainPC's namespace, as the operator runs it on MainPC."""
    return cluster.main.ns.run(
        [str(VENV_BIN / "ray"), *args, str(cluster.config)],
        env=_launcher_env(cluster.launcher),
        timeout_s=timeout_s,
    )


def _ssh(cluster: Cluster, host: SshHost, command: str) -> subprocess.CompletedProcess[str]:
    """``command`` in a login shell on ``host``, as Ray runs its commands there."""
    key = cluster.launcher / ".ssh" / "id_ed25519"
    options = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    options += ["-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-i", str(key)]
    remote = f"bash --login -c -i 'source ~/.bashrc; {command}'"
    return cluster.main.ns.run(
        ["ssh", *options, f"root@{host.ns.ip}", remote],
        env=_launcher_env(cluster.launcher),
        timeout_s=60,
    )


def _logs(cluster: Cluster) -> str:
    """What to read when ray up did not bring the system up: every log of both hosts."""
    parts = [f"--- ray up output:\n{tail(cluster.up_output, 40)}"]
    for host in (cluster.main, cluster.pc2):
        files = [host.data_dir / "supervise.log"]
        logs = host.data_dir / "ray" / "session_latest" / "logs"
        files += sorted(logs.glob("monitor*")) if logs.is_dir() else []
        for path in files:
            if path.is_file():
                parts.append(f"--- {host.ns.name} {path}:\n{tail(path.read_text(), 30)}")
        errors = []
        for path in sorted((logs / "serve").glob("*.log") if logs.is_dir() else []):
            lines = path.read_text(errors="replace").splitlines()
            for i, line in enumerate(lines):
                if "Traceback" in line:
                    errors += [f"{path.name}: {text}" for text in lines[i : i + 40]]
        if errors:
            parts.append(f"--- {host.ns.name} Serve errors:\n" + "\n".join(errors[-80:]))
    for name in ("main", "pc2"):
        log = cluster.work / f"sshd-{name}" / "sshd.log"
        if log.is_file():
            parts.append(f"--- sshd {name}:\n{tail(log.read_text(), 15)}")
    return "\n".join(parts)


def _wait_for_check(cluster: Cluster, started: float) -> None:
    """Poll the head's supervise log until its ``aisys check`` passed (or failed)."""
    log = cluster.main.data_dir / "supervise.log"
    deadline = started + UP_TIMEOUT_S
    while True:
        text = log.read_text() if log.is_file() else ""
        if "check passed" in text:
            cluster.up_to_check_s = time.monotonic() - started
            return
        if "check FAILED" in text or time.monotonic() > deadline:
            raise AssertionError(
                f"`aisys check` did not pass within {UP_TIMEOUT_S:.0f}s of `ray up`:\n"
                + _logs(cluster)
            )
        time.sleep(0.5)


def _leftovers(data_dirs: list[Path]) -> list[psutil.Process]:
    """This test's processes: marked with one of ``data_dirs``, or naming one in their command
    line (a Ray agent that rewrote its environ with a long title has lost its marker)."""
    found = {p.pid: p for p in owned_processes(data_dirs)}
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.pid != me and any(f"{d}/" in cmdline for d in data_dirs):
            try:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    found.setdefault(proc.pid, proc)
            except psutil.Error:
                continue
    return list(found.values())


def _teardown(cluster: Cluster) -> list[str]:
    """Stop whatever `ray down` left (nothing, normally); return what was left."""
    problems = []
    hosts = [cluster.pc2, cluster.main]
    left = _leftovers([h.data_dir for h in hosts])
    if left:
        problems.append(
            "processes of the test's data dirs were still running: "
            + ", ".join(f"{p.pid} {p.name()}" for p in left)
        )
        for host in hosts:
            host.aisys("down", timeout_s=180)
        terminate(_leftovers([h.data_dir for h in hosts]))  # this test's own data dirs
    return problems


def _remove_ray_up_files(name: str, bootstrap: Path) -> None:
    """What `ray up` of cluster ``name`` left in /tmp: the local provider's state and lock, the
    cached config (named in the head's bootstrap config) and the ssh control sockets' dir."""
    for suffix in ("state", "lock"):
        Path(f"/tmp/ray/cluster-{name}.{suffix}").unlink(missing_ok=True)
    if bootstrap.is_file():
        provider = (yaml.safe_load(bootstrap.read_text()) or {}).get("provider", {})
        cached = Path(provider.get("_config_cache_path") or "/nonexistent")
        if cached.name.startswith("ray-config-"):
            cached.unlink(missing_ok=True)
    user = hashlib.sha256(getpass.getuser().encode()).hexdigest()[:10]
    cluster = hashlib.sha256(name.encode()).hexdigest()[:10]
    shutil.rmtree(f"/tmp/ray_ssh_{user}/{cluster}", ignore_errors=True)


@pytest.fixture(scope="module")
def ray_up_cluster() -> Iterator[Cluster]:
    """``ray up`` of the shipped cluster.yaml onto two namespace hosts; ``ray down`` after."""
    require_netns()
    _require_tools()
    ports = {name: free_port() for name in (*PortSettings.model_fields, *LEGACY_PORT_NAMES)}
    work = short_tmp_dir("aisys-ru-")
    dirs = [short_tmp_dir("aisys-rua-"), short_tmp_dir("aisys-rub-")]
    name = f"aisys-e2e-{secrets.token_hex(4)}"
    launcher = work / "launcher"
    (launcher / ".ssh").mkdir(parents=True)
    key = launcher / ".ssh" / "id_ed25519"
    _keygen(key)
    sshds: list[subprocess.Popen[str]] = []
    sentinel = _sentinel()
    problems: list[str] = []
    try:
        with veth_pair() as (a, b):
            homes = [_home(work / "home-main"), _home(work / "home-pc2")]
            main_env = _host_env(_settings_file(dirs[0], ports), ports["gcs"])
            pc2_env = _host_env(_settings_file(dirs[1], ports), ports["gcs"])
            main_ns = _as_root_home(a, homes[0], work / "stage")
            pc2_ns = _as_root_home(b, homes[1], work / "stage").with_bind(dirs[1], dirs[0])
            main = SshHost(main_ns, dirs[0], homes[0], main_env)
            pc2 = SshHost(pc2_ns, dirs[1], homes[1], pc2_env)
            for host, label in ((main, "main"), (pc2, "pc2")):
                sshd_dir = work / f"sshd-{label}"
                sshd_dir.mkdir()
                sshds.append(_start_sshd(host.ns, sshd_dir, key.with_suffix(".pub"), host.env))
            config = work / "cluster.yaml"
            config.write_text(yaml.safe_dump(_test_cluster_yaml(name, main, pc2, key)))
            cluster = Cluster(main, pc2, launcher, config, work)
            for host in (main, pc2):
                host.env.update(
                    HOME="/root",
                    PATH=f"{VENV_BIN}:{SYSTEM_PATH}",
                    AISYS_HOSTS__MAINPC__NODE_IP=a.ip,
                    AISYS_HOSTS__PC2__NODE_IP=b.ip,
                )
            try:
                started = time.monotonic()
                up = _ray(cluster, "up", "-y", "--no-config-cache", timeout_s=UP_TIMEOUT_S)
                cluster.up_returned_s = time.monotonic() - started
                cluster.up_output = up.stdout + up.stderr
                assert up.returncode == 0, f"`ray up` exited {up.returncode}:\n" + _logs(cluster)
                _wait_for_check(cluster, started)
                sys.stderr.write(
                    f"\nray up returned after {cluster.up_returned_s:.1f} s; `aisys check` "
                    f"passed {cluster.up_to_check_s:.1f} s after `ray up` started\n"
                )
                yield cluster
            finally:
                problems = _teardown(cluster)
    finally:
        for proc in sshds:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        alive = sentinel.poll() is None
        sentinel.kill()
        sentinel.wait(timeout=10)
        _remove_ray_up_files(name, work / "home-main" / "ray_bootstrap_config.yaml")
        for path in (work, *dirs):
            shutil.rmtree(path, ignore_errors=True)
    assert alive, "a `ray stop` ran on this machine: the sentinel process was killed"
    assert not problems, "\n".join(problems)


def _status(cluster: Cluster) -> dict[str, Any]:
    result = cluster.main.aisys("status", "--json")
    assert result.returncode == 0, (
        f"`aisys status` on the head says unhealthy or failed:\n"
        f"{tail(result.stdout + result.stderr)}"
    )
    status: dict[str, Any] = json.loads(result.stdout)
    return status


def test_ray_up_places_every_replica_on_the_node_of_its_host_tag(
    ray_up_cluster: Cluster,
) -> None:
    status = _status(ray_up_cluster)

    nodes = {tuple(n["tags"]): n["ip"] for n in status["nodes"] if n["alive"]}
    assert nodes == {("mainpc",): ray_up_cluster.main.ns.ip, ("pc2",): ray_up_cluster.pc2.ns.ip}
    apps = {app["name"]: app for app in status["applications"]}
    assert apps and all(app["status"] == "RUNNING" for app in apps.values()), apps
    for app in apps.values():
        for deployment in app["deployments"]:
            assert deployment["hosts"] == [deployment["host_tag"]], (app["name"], deployment)
    # NATS runs on PC2, its host, started by PC2's start command.
    assert status["nats"]["reachable"] and status["nats"]["jetstream"], status["nats"]
    assert f"//{ray_up_cluster.pc2.ns.ip}:" in status["nats"]["url"]


def test_ray_up_nodes_use_aisys_temp_dir_token_and_check(ray_up_cluster: Cluster) -> None:
    """Each node runs under its data dir's Ray temp dir; the head's supervise ran the check."""
    for host in (ray_up_cluster.main, ray_up_cluster.pc2):
        session = host.data_dir / "ray" / "session_latest"
        assert session.exists(), f"no Ray session under {host.data_dir / 'ray'}"
    # The head generated the secrets; its autoscaler copied them to PC2's own data dir.
    for name in ("ray_token", "nats_password"):
        secret = ray_up_cluster.main.data_dir / name
        if name == "ray_token" or secret.exists():
            assert (ray_up_cluster.pc2.data_dir / name).read_text() == secret.read_text(), name
    text = (ray_up_cluster.main.data_dir / "supervise.log").read_text()
    assert "check passed" in text, tail(text)


def test_ray_down_stops_both_hosts_and_nothing_else(ray_up_cluster: Cluster) -> None:
    """`ray down` runs `ray stop` on the head; there it is the shim that runs `aisys down`."""
    cluster = ray_up_cluster
    # Never let a real `ray stop` run: the head's login shell must find the project's shim.
    found = _ssh(cluster, cluster.main, "command -v ray")
    shim = "/root/aisys/scripts/ray-up-bin/ray"
    assert found.stdout.strip().splitlines()[-1:] == [shim], (
        f"`ray` in the head's login shell is not the shim:\n{found.stdout}{found.stderr}"
    )
    dirs = [cluster.main.data_dir, cluster.pc2.data_dir]
    assert owned_processes(dirs), "nothing of the test's hosts runs before `ray down`"

    down = _ray(cluster, "down", "-y", timeout_s=300)

    output = tail(down.stdout + down.stderr, 40)
    assert down.returncode == 0, output
    # The head's `ray stop` was the shim: aisys down there, then on PC2 over ssh.
    assert f"aisys down on root@{cluster.pc2.ns.ip}" in down.stdout + down.stderr, output
    deadline = time.monotonic() + 30
    while (left := _leftovers(dirs)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, (
        "processes survived `ray down`: "
        + ", ".join(f"{p.pid} {' '.join(p.cmdline()[:3])}" for p in left)
        + f"\n{output}"
    )
