"""The `aisys` CLI against the running system: status, idempotent up, serve-config."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from cluster.base.settings import Settings
from tests.integration.conftest import settings_file

pytestmark = pytest.mark.integration


def aisys(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI with exactly ``settings`` (through a settings file, no other AISYS_ vars)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AISYS_")}
    env["AISYS_CONFIG"] = str(settings_file(settings, settings.data_dir))
    executable = str(Path(sys.executable).with_name("aisys"))
    return subprocess.run([executable, *args], env=env, capture_output=True, text=True, timeout=300)


def test_status_json_reports_hosts_apps_nats_and_agents(aisys_system: Settings) -> None:
    result = aisys(aisys_system, "status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    [node] = status["nodes"]
    assert node["alive"] and node["tags"] == ["mainpc", "pc2"]
    core = next(app for app in status["applications"] if app["name"] == "core")
    assert core["status"] == "RUNNING"
    assert core["url"].endswith(f":{aisys_system.ports.http}/core")
    assert core["deployments"][0]["hosts"] == ["mainpc.pc2"]
    assert status["nats"]["reachable"] and status["nats"]["jetstream"]
    assert isinstance(status["registered_agents"], int)


def test_second_up_reports_what_is_already_running(aisys_system: Settings) -> None:
    result = aisys(aisys_system, "up")
    assert result.returncode == 0, result.stderr
    assert "already running" in result.stderr
    assert "RUNNING" in result.stdout and "Dashboard" in result.stdout
    # `up` ends with the end-to-end check (tests/integration/test_check.py has its steps).
    assert "\nCHECK\n" in result.stdout and "PASS core.request" in result.stdout
    assert "check passed: " in result.stdout


def test_up_with_no_check_skips_the_check(aisys_system: Settings) -> None:
    result = aisys(aisys_system, "up", "--no-check")
    assert result.returncode == 0, result.stderr
    assert "RUNNING" in result.stdout and "CHECK" not in result.stdout


def test_serve_config_command_writes_a_deployable_yaml(
    aisys_system: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "serve.yaml"
    result = aisys(aisys_system, "serve-config", "--out", str(out))
    assert result.returncode == 0, result.stderr
    schema = ServeDeploySchema.model_validate(yaml.safe_load(out.read_text()))
    assert schema.http_options.port == aisys_system.ports.http


def test_status_exits_nonzero_when_nothing_runs() -> None:
    from tests.integration.conftest import make_settings

    settings = make_settings()
    try:
        result = aisys(settings, "status")
    finally:
        shutil.rmtree(settings.data_dir, ignore_errors=True)
    assert result.returncode == 2
    assert "no Ray cluster answers" in result.stderr


def test_status_exits_1_and_names_what_is_unhealthy(aisys_system: Settings) -> None:
    from cluster.ops import system

    server = system.embedded_nats(aisys_system)
    assert server.stop()
    try:
        result = aisys(aisys_system, "status")
        assert result.returncode == 1, result.stdout + result.stderr
        assert "UNHEALTHY" in result.stdout
    finally:
        server.start()
    assert aisys(aisys_system, "status").returncode == 0
