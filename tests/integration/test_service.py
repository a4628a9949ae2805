"""The unit `aisys service install` writes, run the way systemd runs it, serving HTTPS.

Its ``ExecStart=`` argv with exactly its ``Environment=`` (on systemd's clean environment) in a
session of its own; ``systemctl stop`` is SIGTERM to that main process, after which systemd
SIGKILLs whatever is left in the unit (``KillMode=mixed``), so a clean stop leaves nothing of
the data dir running. Then the same command again, as at the next boot: the registration made
before is back. The system serves HTTPS from a self-signed certificate (``ray.tls_certfile``):
its keeper's ``aisys up`` and ``aisys check`` pass over it, and plain HTTP gets no answer.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from pydantic import SecretStr

from cluster.base.settings import RaySettings, Settings
from cluster.ops._procs import MARKER_ENV, terminate
from cluster.ops.service import STOP_TIMEOUT_S
from tests._systemd_unit import directives, exec_start
from tests._tls import self_signed_certificate
from tests.conftest import SESSION_RAY_TOKEN, wait_for_condition
from tests.integration.conftest import ADMIN_PASSWORD, make_settings, settings_file

pytestmark = pytest.mark.integration

#: What systemd puts in a system service's environment before ``Environment=`` (User= set).
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def owned_processes(data_dir: Path) -> list[psutil.Process]:
    """Live processes whose ``AISYS_OWNER`` marker names ``data_dir``: keeper, Ray, NATS."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if f"{data_dir}/" in proc.environ().get(MARKER_ENV, "") and (
                proc.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def describe(procs: list[psutil.Process]) -> str:
    lines = []
    for proc in procs:
        try:
            lines.append(f"{proc.pid} {' '.join(proc.cmdline())[:160]}")
        except psutil.Error:
            continue
    return "\n".join(lines)


class Unit:
    """One installed unit and the processes it ran (the main process is the keeper)."""

    def __init__(self, path: Path, settings: Settings, config: Path) -> None:
        text = path.read_text()
        self.argv, unit_env = exec_start(text)
        [user] = directives(text)["User"]
        account = pwd.getpwnam(user)
        self.env = {
            "PATH": SYSTEMD_PATH,
            "HOME": account.pw_dir,
            "USER": user,
            "LOGNAME": user,
            "SHELL": account.pw_shell,
            **unit_env,
        }
        self.cwd = account.pw_dir  # WorkingDirectory=~
        self.settings = settings
        self.config = config
        self.log = settings.data_dir / "journal.log"
        self.main: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """``systemctl start``: the main process in a session of its own, output to the journal."""
        with self.log.open("ab") as journal:
            self.main = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=journal,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> int:
        """``systemctl stop``: SIGTERM to the main process, wait up to TimeoutStopSec."""
        assert self.main is not None
        self.main.send_signal(signal.SIGTERM)
        try:
            return self.main.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the keeper did not stop within TimeoutStopSec={STOP_TIMEOUT_S}s\n{self.journal()}"
            ) from None

    def journal(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def aisys(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.argv[0], "--config", str(self.config), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def wait_up(self, timeout_s: float = 420) -> None:
        """Until the keeper has deployed and ``aisys status`` is healthy."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.main is not None
            if self.main.poll() is not None:
                raise AssertionError(f"the keeper exited {self.main.returncode}\n{self.journal()}")
            deployed = "==> Deployed" in self.journal(lines=10_000)
            if deployed and self.aisys("status").returncode == 0:
                return
            time.sleep(3)
        raise AssertionError(f"not up within {timeout_s}s\n{self.journal()}")


@pytest.fixture
def installed(tmp_path: Path) -> Iterator[Unit]:
    """``aisys service install --role embedded`` of a private HTTPS system, cleaned up after."""
    cert, key = self_signed_certificate(tmp_path / "tls")
    settings = make_settings(
        ray=RaySettings(auth_token=SecretStr(SESSION_RAY_TOKEN), tls_certfile=cert, tls_keyfile=key)
    )
    config = settings_file(settings, settings.data_dir)
    units = tmp_path / "units"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AISYS_", "RAY_"))}
    aisys = str(Path(sys.executable).with_name("aisys"))
    result = subprocess.run(
        [aisys, "--config", str(config), "service", "install", "--role", "embedded"]
        + ["--unit-dir", str(units)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    unit = Unit(units / "aisys-embedded.service", settings, config)
    try:
        yield unit
    finally:
        if unit.main is not None and unit.main.poll() is None:
            unit.stop()
        terminate(owned_processes(settings.data_dir))  # what a failed test left: systemd's kill
        shutil.rmtree(settings.data_dir, ignore_errors=True)


def _https(settings: Settings) -> httpx.Client:
    """A client of the system's HTTPS port that trusts only its certificate, logged in."""
    base_url = f"https://127.0.0.1:{settings.ports.http}"
    client = httpx.Client(base_url=base_url, verify=settings.ray.http_verify, timeout=30)
    grant = {
        "grant_type": "password",
        "username": settings.security.admin_user,
        "password": ADMIN_PASSWORD,
    }
    answer = client.post("/security/token", json=grant)
    assert answer.status_code == 200, answer.text
    client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
    return client


def register(settings: Settings, agent_id: str) -> None:
    client = _https(settings)
    try:
        registration = {"agent_id": agent_id, "host": "10.1.1.1", "port": 7000}
        response = client.post("/core/agents", json=registration)
    finally:
        client.close()
    assert response.status_code == 200, response.text
    # Plain HTTP on the same port gets no answer: the proxy speaks TLS only.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{settings.ports.http}/core/agents", timeout=10)


def registered(settings: Settings, agent_id: str) -> bool:
    client = _https(settings)
    try:
        response = client.get(f"/core/agents/{agent_id}")
    finally:
        client.close()
    return response.status_code == 200 and response.json()["host"] == "10.1.1.1"


def stop_cleanly(unit: Unit) -> None:
    """``systemctl stop``: exit 0, and nothing left for systemd's SIGKILL of the group."""
    assert unit.stop() == 0, unit.journal()
    left = owned_processes(unit.settings.data_dir)
    assert not left, f"left running after the keeper's stop:\n{describe(left)}\n{unit.journal()}"


@pytest.mark.timeout(1200)
def test_unit_starts_stops_cleanly_and_comes_back_with_its_state(installed: Unit) -> None:
    unit = installed
    assert unit.argv[1:] == ["--config", str(unit.config), "supervise", "--role", "embedded"]
    assert unit.env["AISYS_DATA_DIR"] == str(unit.settings.data_dir)

    unit.start()
    unit.wait_up()
    agent_id = f"boot-{uuid.uuid4().hex[:8]}"
    register(unit.settings, agent_id)
    stop_cleanly(unit)

    unit.start()  # the next boot
    unit.wait_up()
    wait_for_condition(lambda: registered(unit.settings, agent_id), timeout_s=60, interval_s=1)
    stop_cleanly(unit)
