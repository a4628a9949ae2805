"""``cluster.yaml`` (the ``ray up`` config): Ray's own schema accepts it, each host's start
commands are aisys's own ``aisys up --role head|worker --detach`` with that host's settings, the
token file is aisys's, and ``ray stop`` (what ``ray down`` runs on the head) is aisys's clean
stop of both hosts (tests/e2e/test_ray_up.py runs all of it for real)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray.autoscaler
import yaml

from cluster.base.settings import PortSettings, Settings, load_settings
from cluster.ops import cluster_stop
from cluster.ops.cli import _parser

REPO = Path(__file__).resolve().parents[2]
CLUSTER_YAML = REPO / "cluster.yaml"
RAY_SCHEMA = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
SHIM = REPO / "scripts" / "ray-up-bin" / "ray"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CLUSTER_YAML.read_text())
    return loaded


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(RAY_SCHEMA.read_text())
    return loaded


def _aisys_up(commands: list[str]) -> tuple[dict[str, str], list[str]]:
    """The variables set for, and the argv of, the one ``aisys up`` among ``commands``."""
    ups = [c for c in commands if "aisys up" in c]
    assert len(ups) == 1, f"expected one `aisys up` command, got {ups}"
    words = shlex.split(ups[0])
    env = {}
    while "=" in words[0] and not words[0].startswith(("~", "/")):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    return env, words


def _settings(env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in [k for k in os.environ if k.startswith("AISYS_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings(data_dir=tmp_path)


def test_rays_shipped_schema_accepts_the_file(
    config: dict[str, Any], schema: dict[str, Any]
) -> None:
    jsonschema.validate(config, schema)


def test_ray_up_preparation_keeps_exactly_one_worker(
    config: dict[str, Any], schema: dict[str, Any]
) -> None:
    # What `ray up` runs before validating: the local provider's defaults and node types.
    from ray.autoscaler._private.util import prepare_config

    prepared = prepare_config(config)
    jsonschema.validate(prepared, schema)
    assert len(config["provider"]["worker_ips"]) == 1
    (node_type,) = prepared["available_node_types"].values()
    assert node_type["min_workers"] == node_type["max_workers"] == 1
    assert prepared["max_workers"] == 1


def test_head_start_is_aisys_up_head_detached_with_the_autoscaler(
    config: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, argv = _aisys_up(config["head_start_ray_commands"])
    assert argv[0] == cluster_stop.REMOTE_AISYS
    args = _parser().parse_args(argv[1:])
    assert (args.command, args.role, args.detach, args.address) == ("up", "head", True, None)

    settings = _settings(env, tmp_path, monkeypatch)
    provider = config["provider"]
    assert settings.hosts[settings.head_host].node_ip == provider["head_ip"]
    (worker,) = (p for p in settings.hosts.values() if p.role == "worker")
    assert worker.node_ip == provider["worker_ips"][0]
    assert settings.tag_of(settings.head_host) == "mainpc" and worker.tag == "pc2"
    # `ray up` leaves the cluster config there; the head's autoscaler then starts PC2.
    assert settings.ray.autoscaling_config == Path("~/ray_bootstrap_config.yaml")
    # Ray's v1 autoscaler: the v2 one `ray up` asks for starts no local-provider worker.
    assert env["RAY_enable_autoscaler_v2"] == "0"


def test_worker_start_is_aisys_up_worker_joining_the_heads_gcs(
    config: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, argv = _aisys_up(config["worker_start_ray_commands"])
    assert argv[0] == cluster_stop.REMOTE_AISYS
    args = _parser().parse_args(argv[1:])
    assert (args.command, args.role, args.detach) == ("up", "worker", True)
    settings = _settings(env, tmp_path, monkeypatch)
    (worker,) = (p for p in settings.hosts.values() if p.role == "worker")
    assert worker.node_ip == config["provider"]["worker_ips"][0]
    assert "AISYS_RAY__AUTOSCALING_CONFIG" not in env

    # The address as the worker's shell expands it: $RAY_HEAD_IP (set by the autoscaler) and
    # aisys's GCS port, 6380 unless AISYS_PORTS__GCS says otherwise.
    address = next(a for a in argv if a.startswith("--address="))
    for gcs, expected in ((None, PortSettings().gcs), ("23456", 23456)):
        shell_env = {"PATH": os.environ["PATH"], "RAY_HEAD_IP": "10.1.2.3"}
        if gcs is not None:
            shell_env["AISYS_PORTS__GCS"] = gcs
        expanded = subprocess.run(
            ["bash", "-c", f'echo "{address.split("=", 1)[1]}"'],
            env=shell_env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert expanded == f"10.1.2.3:{expected}"


def test_start_commands_stop_with_aisys_down_never_ray_stop(config: dict[str, Any]) -> None:
    for key in (
        "setup_commands",
        "head_setup_commands",
        "worker_setup_commands",
        "head_start_ray_commands",
        "worker_start_ray_commands",
    ):
        assert not any("ray stop" in c for c in config[key]), (key, config[key])
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert config[key][0] == f"{cluster_stop.REMOTE_AISYS} down"


def test_the_heads_secrets_are_synced_to_the_workers_not_mounted(config: dict[str, Any]) -> None:
    """The head generates the token and NATS password; its autoscaler copies them to PC2."""
    default = load_settings(data_dir=Path("~/.local/share/aisys"))
    secrets = [str(default.ray_token_path), str(default.data_dir / "nats_password")]
    assert config["cluster_synced_files"] == secrets
    # Nothing to make on the machine running `ray up`: the only file mount is the project.
    assert config["file_mounts"] == {"~/aisys": "."}


def test_every_host_installs_the_project_it_starts_from(config: dict[str, Any]) -> None:
    assert config["setup_commands"] == ["make -C ~/aisys venv"]
    assert cluster_stop.REMOTE_AISYS == "~/aisys/.venv/bin/aisys"


@pytest.mark.parametrize("key", ["head_setup_commands", "worker_setup_commands"])
def test_setup_puts_the_ray_shim_first_on_the_login_shells_path(
    config: dict[str, Any], key: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "aisys").symlink_to(REPO)
    env = {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin"}
    for _ in range(2):  # `ray up` runs them again on every run: one line only
        for command in config[key]:
            subprocess.run(["bash", "-c", command], env=env, check=True, timeout=30)
    bashrc = (home / ".bashrc").read_text()
    assert bashrc.count("ray-up-bin") == 1, bashrc
    found = subprocess.run(
        ["bash", "-c", "source ~/.bashrc; command -v ray"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert found == f"{home}/aisys/scripts/ray-up-bin/ray"
    assert SHIM.stat().st_mode & 0o111


def test_worker_stop_commands_reach_each_worker_with_the_bootstrap_key() -> None:
    bootstrap = {
        "provider": {"type": "local", "head_ip": "10.0.0.1", "worker_ips": ["10.0.0.2"]},
        "auth": {"ssh_user": "aisys", "ssh_private_key": "~/ray_bootstrap_key.pem"},
    }

    (cmd,) = cluster_stop.worker_stop_commands(bootstrap)

    assert cmd[0] == "ssh"
    assert cmd[cmd.index("-i") + 1] == str(Path("~/ray_bootstrap_key.pem").expanduser())
    assert "StrictHostKeyChecking=no" in cmd and "BatchMode=yes" in cmd
    assert cmd[-2] == "aisys@10.0.0.2"
    # A login shell, as Ray runs the start commands: the same AISYS_* environment.
    assert cmd[-1].startswith("bash --login -c -i ")
    assert cmd[-1].endswith(f"{cluster_stop.REMOTE_AISYS} down'")
    assert cluster_stop.worker_stop_commands({"provider": {"worker_ips": []}}) == []


def test_ray_stop_is_aisys_down_here_then_on_every_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bootstrap = tmp_path / "ray_bootstrap_config.yaml"
    bootstrap.write_text(
        yaml.safe_dump(
            {
                "provider": {"worker_ips": ["10.0.0.2", "10.0.0.3"]},
                "auth": {"ssh_user": "aisys", "ssh_private_key": str(tmp_path / "key.pem")},
            }
        )
    )
    monkeypatch.setattr(cluster_stop, "BOOTSTRAP_CONFIG", bootstrap)
    calls: list[list[str]] = []

    def run(cmd: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        failed = cmd[0] == "ssh" and "aisys@10.0.0.3" in cmd
        return subprocess.CompletedProcess(cmd, 255 if failed else 0)

    monkeypatch.setattr(subprocess, "run", run)

    assert cluster_stop.main(["--force"]) == 1  # one worker did not answer

    # The head first: its autoscaler must not restart a worker that was just stopped.
    assert calls[0][0].endswith("aisys") and calls[0][1:] == ["down"]
    assert [c[-2] for c in calls[1:]] == ["aisys@10.0.0.2", "aisys@10.0.0.3"]


def test_ray_stop_on_a_host_without_bootstrap_config_stops_only_this_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster_stop, "BOOTSTRAP_CONFIG", tmp_path / "absent.yaml")
    calls: list[list[str]] = []

    def run(cmd: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(subprocess, "run", run)

    assert cluster_stop.main([]) == 0
    assert len(calls) == 1 and calls[0][1:] == ["down"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["stop", "--force"], "python -m cluster.ops.cluster_stop --force"),
        (["status", "--address", "x"], "ray status --address x"),
    ],
)
def test_the_shim_sends_stop_to_cluster_stop_and_the_rest_to_the_venvs_ray(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    """Against a stand-in venv whose python and ray print what they were given."""
    checkout = tmp_path / "aisys"
    (checkout / "scripts" / "ray-up-bin").mkdir(parents=True)
    shim = checkout / "scripts" / "ray-up-bin" / "ray"
    shim.write_bytes(SHIM.read_bytes())
    shim.chmod(0o755)
    (checkout / ".venv" / "bin").mkdir(parents=True)
    for name in ("python", "ray"):
        fake = checkout / ".venv" / "bin" / name
        fake.write_text(f'#!/bin/sh\necho {name} "$@"\n')
        fake.chmod(0o755)

    out = subprocess.run(
        [str(shim), *args], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()

    assert out == expected
