"""`aisys check` against the session system: every step passes and nothing is left behind; with
one application really removed from Serve, the check fails and names that step."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cluster.base.constants import APP_RESOURCES
from cluster.base.settings import Settings
from cluster.ops import system
from cluster.ops._dashboard import DashboardClient
from cluster.ops._progress import Progress
from cluster.ops.check import ERROR_AGENT
from cluster.ops.cli import main
from cluster.ops.serve_config import build_serve_config
from tests.conftest import wait_for_condition
from tests.integration.conftest import settings_file

pytestmark = pytest.mark.integration

STEPS = [
    "security.token",
    "registry.http",
    "legacy.service_registry@mainpc",
    # Both host tags are on the session's one node: its 7120 is one port, checked once.
    "legacy.system_digital_twin@mainpc",
    "core.request",
    "errors.publish",
    "resources.lease",
    "observability.metrics",
    "cleanup",
]
LINE = re.compile(r"^(PASS|FAIL|SKIP) (\S+)(?: (\d+)ms)?(?:: (.*)| \((.*)\))?$")


def run_check(
    settings: Settings, directory: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, dict[str, tuple[str, str]]]:
    """Run `aisys check` in-process; return its exit code, its run name and step -> (verdict,
    detail)."""
    code = main(["--config", str(settings_file(settings, directory)), "check"])
    text = capsys.readouterr().out
    sys.stdout.write(text)  # shown with the test's report when it fails
    lines = text.splitlines()
    assert lines[-1].startswith("check passed: " if code == 0 else "check FAILED: ")
    name = lines[0].split()[0]
    steps = {}
    for line in lines[1:-1]:
        match = LINE.match(line)
        assert match, f"not a step line: {line!r}"
        verdict, step, _, reason, detail = match.groups()
        steps[step] = (verdict, reason or detail or "")
    return code, name, steps


def assert_nothing_left(http: httpx.Client, name: str, leases: bool = True) -> None:
    agents = http.get("/core/agents", params={"tag": "aisys-check"}).json()["agents"]
    assert [a["agent_id"] for a in agents if a["agent_id"].startswith(name)] == []
    for agent_id in (name, f"{name}-http", f"{name}-sr-mainpc", f"{name}-sdt-mainpc"):
        assert http.get(f"/core/agents/{agent_id}").status_code == 404
    if leases:
        granted = http.get("/resources/leases").json()["granted"]
        assert not [g for g in granted if g["owner"] == name]
    assert name not in http.get("/security/trust").json()


def test_check_passes_and_removes_what_it_created(
    aisys_system: Settings, http: httpx.Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, name, steps = run_check(aisys_system, tmp_path, capsys)

    assert code == 0, steps
    assert list(steps) == STEPS
    assert {step: verdict for step, (verdict, _) in steps.items()} == dict.fromkeys(STEPS, "PASS")
    assert re.fullmatch(r"aisys-check-[0-9a-f]{8}", name)
    # The session's GPUs are the NVML double's: the lease is really granted, on the best fit
    # (pc2's 3060 leaves less over than mainpc's 4090).
    assert steps["resources.lease"][1] == (
        "granted on pc2 GPU 0, released (source nvml-double: not a measured device)"
    )
    assert_nothing_left(http, name)
    # The identity is gone: its name can be taken again (the check's secret is lost with it).
    created = http.post("/security/agents", json={"agent_id": name})
    assert created.status_code == 200, created.text
    # The error event stays (the stream is append-only), findable by the run's name.
    events = http.get("/errors/", params={"agent": ERROR_AGENT, "text": name}).json()["items"]
    assert [e["event"]["correlation_id"] for e in events] == [name]


@pytest.fixture
def resources_removed(aisys_system: Settings, http: httpx.Client) -> Iterator[None]:
    """The ``resources`` application deleted from Serve (as `serve deploy` without it does),
    then deployed again and RUNNING before the next test."""
    config = build_serve_config(aisys_system)
    without = dict(
        config, applications=[a for a in config["applications"] if a["name"] != APP_RESOURCES]
    )
    token = aisys_system.ray.auth_token
    assert token is not None
    client = DashboardClient(system.dashboard_url(aisys_system), token.get_secret_value())
    try:
        client.deploy(without)
        wait_for_condition(
            lambda: APP_RESOURCES not in client.serve_details().get("applications", {}),
            timeout_s=120,
            interval_s=0.5,
        )
        wait_for_condition(lambda: http.get("/resources/gpus").status_code == 404, timeout_s=60)
        yield
    finally:
        client.close()
        system.deploy(aisys_system, Progress(quiet=True))
        assert http.get("/resources/gpus").status_code == 200


@pytest.mark.usefixtures("resources_removed")
def test_a_removed_application_fails_its_step_and_only_that_one(
    aisys_system: Settings,
    http: httpx.Client,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, name, steps = run_check(aisys_system, tmp_path, capsys)

    assert code == 1
    verdict, reason = steps["resources.lease"]
    assert verdict == "FAIL"
    assert reason.startswith("GET /resources/gpus answered 404")
    assert "is the 'resources' application running? see `aisys status`" in reason
    others = {step: v for step, (v, _) in steps.items() if step != "resources.lease"}
    assert others == dict.fromkeys([s for s in STEPS if s != "resources.lease"], "PASS")
    assert_nothing_left(http, name, leases=False)
