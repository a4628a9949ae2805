"""``aisys service install|remove``: the rendered units, systemd's own check of them, install
and remove in a unit dir of the test's own (tests/integration/test_service.py runs the unit's
command line as systemd would)."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Sequence
from io import StringIO
from pathlib import Path

import pytest

from cluster.base.errors import ConfigError
from cluster.ops import service
from cluster.ops.cli import main
from cluster.ops.service import UnitSpec, install, remove, render_unit, unit_name
from tests._systemd_unit import directives, exec_start, systemd_words

ME = pwd.getpwuid(os.geteuid()).pw_name


def spec(role: str = "head", **kwargs: object) -> UnitSpec:
    values: dict[str, object] = {
        "role": role,
        "executable": service.aisys_executable(),
        "user": ME,
        "env": {"AISYS_DATA_DIR": "/var/lib/aisys"},
    }
    if role == "worker":
        values["address"] = "192.168.1.10:6380"
    values.update(kwargs)
    return UnitSpec(**values)  # type: ignore[arg-type]


def verify(path: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify``; any line it prints (a directive it ignored) is a failure."""
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is missing: `make system-deps` installs systemd"
    return subprocess.run(
        [analyze, "verify", "--man=no", str(path)], capture_output=True, text=True, timeout=60
    )


def test_every_role_runs_the_keeper_with_this_venvs_aisys() -> None:
    aisys = service.aisys_executable()
    assert aisys.is_absolute() and os.access(aisys, os.X_OK) and aisys.name == "aisys"
    for role in service.ROLES:
        unit = directives(render_unit(spec(role)))
        argv = systemd_words(unit["ExecStart"][0])
        expected = [str(aisys), "supervise", "--role", role]
        if role == "worker":
            expected += ["--address", "192.168.1.10:6380"]
        assert argv == expected
        assert unit["Type"] == ["simple"] and unit["User"] == [ME]
        assert unit["WantedBy"] == ["multi-user.target"]
        assert unit["After"] == ["network-online.target"]
        assert unit["Wants"] == ["network-online.target"]
        # The keeper gets SIGTERM alone and stops Ray itself; then the group is killed.
        assert unit["KillMode"] == ["mixed"] and unit["KillSignal"] == ["SIGTERM"]
        assert int(unit["TimeoutStopSec"][0]) >= 60
        assert unit["Restart"] == ["on-failure"] and unit["RestartSec"] == ["10"]
        others = {unit_name(r) for r in service.ROLES if r != role}
        assert set(unit["Conflicts"][0].split()) == others


def test_config_host_and_env_reach_the_command_line_and_environment() -> None:
    text = render_unit(
        spec(
            "worker",
            host="pc2",
            config=Path("/etc/aisys/my settings.yaml"),
            env={"AISYS_DATA_DIR": "/srv/aisys data", "ODD": 'a"b\\c%d$e'},
        )
    )
    argv, env = exec_start(text)
    assert argv[1:] == [
        "--config",
        "/etc/aisys/my settings.yaml",
        "supervise",
        "--role",
        "worker",
        "--host",
        "pc2",
        "--address",
        "192.168.1.10:6380",
    ]
    assert env == {
        "AISYS_DATA_DIR": "/srv/aisys data",
        "ODD": 'a"b\\c%d$e',
        "PYTHONUNBUFFERED": "1",
    }
    assert text.startswith(service.WRITTEN_BY + "\n")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"role": "gpu"}, "unknown role 'gpu'"),
        ({"role": "worker", "address": None}, "needs --address"),
        ({"role": "head", "address": "1.2.3.4:6380"}, "--address is for --role worker"),
        ({"executable": Path("aisys")}, "absolute path"),
        ({"env": {"BAD NAME": "1"}}, "not a variable name"),
        ({"env": {"AISYS_X": "two\nlines"}}, "line break"),
    ],
)
def test_invalid_units_are_refused(kwargs: dict[str, object], message: str) -> None:
    role = kwargs.pop("role", "head")
    with pytest.raises(ConfigError, match=re.escape(message)):
        spec(str(role), **kwargs)


@pytest.mark.parametrize("role", service.ROLES)
def test_systemd_analyze_verify_accepts_every_rendered_unit(role: str, tmp_path: Path) -> None:
    path = tmp_path / unit_name(role)
    path.write_text(
        render_unit(spec(role, config=tmp_path / "a b%.yaml", env={"AISYS_X": "1 2 \\ $x"}))
    )
    result = verify(path)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


@pytest.mark.parametrize(
    ("good", "bad"),
    [
        ("KillMode=mixed", "KillMode=mixd"),
        ("Restart=on-failure", "Restart=on-failur"),
        ("Type=simple", "Type=simpel"),
        ("LimitNOFILE=65536", "LimitNOFILES=65536"),
    ],
)
def test_verify_catches_a_broken_unit(good: str, bad: str, tmp_path: Path) -> None:
    """The check above fails on a wrong unit: systemd warns and ignores the line (exit 0)."""
    path = tmp_path / unit_name("head")
    text = render_unit(spec("head"))
    assert good in text
    path.write_text(text.replace(good, bad))
    result = verify(path)
    assert result.returncode != 0 or result.stderr.strip()


def test_verify_catches_a_missing_executable(tmp_path: Path) -> None:
    path = tmp_path / unit_name("head")
    path.write_text(render_unit(spec("head", executable=tmp_path / "nothing" / "aisys")))
    result = verify(path)
    assert result.returncode != 0 and "is not executable" in result.stderr


class Systemctl:
    """Records the systemctl commands install/remove run where systemd manages the machine."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> None:
        self.calls.append(list(argv))


@pytest.fixture
def managed_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A unit dir that install/remove take for /etc/systemd/system on a systemd-booted host."""
    unit_dir = tmp_path / "system"
    monkeypatch.setattr(service, "SYSTEM_UNIT_DIR", unit_dir)
    monkeypatch.setattr(service, "systemd_booted", lambda: True)
    return unit_dir


def test_install_and_remove_run_systemctl_where_systemd_is_pid_1(managed_dir: Path) -> None:
    systemctl, out = Systemctl(), StringIO()
    path = install(spec("worker"), out, unit_dir=managed_dir, runner=systemctl)
    assert path == managed_dir / "aisys-worker.service" and path.read_text().startswith("#")
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert systemctl.calls == [["daemon-reload"], ["enable", "aisys-worker.service"]]
    assert "systemctl start aisys-worker.service" in out.getvalue()

    systemctl.calls.clear()
    assert remove(out, unit_dir=managed_dir, runner=systemctl) == [path]
    assert not path.exists()
    assert systemctl.calls == [["disable", "--now", "aisys-worker.service"], ["daemon-reload"]]


def test_install_now_also_starts_it(managed_dir: Path) -> None:
    systemctl = Systemctl()
    install(spec("head"), StringIO(), unit_dir=managed_dir, now=True, runner=systemctl)
    assert systemctl.calls[-1] == ["enable", "--now", "aisys-head.service"]


def test_without_systemd_as_pid_1_the_commands_are_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "SYSTEM_UNIT_DIR", tmp_path)
    monkeypatch.setattr(service, "systemd_booted", lambda: False)
    systemctl, out = Systemctl(), StringIO()
    install(spec("head"), out, unit_dir=tmp_path, runner=systemctl)
    assert systemctl.calls == []
    text = out.getvalue()
    assert "systemd is not running as PID 1" in text
    assert "  systemctl daemon-reload\n  systemctl enable aisys-head.service\n" in text
    # An enable run by hand later links the unit; remove takes the link with it.
    wants = tmp_path / "multi-user.target.wants"
    wants.mkdir()
    (wants / "aisys-head.service").symlink_to(tmp_path / "aisys-head.service")
    remove(out, role="head", unit_dir=tmp_path, runner=systemctl)
    assert systemctl.calls == [] and list(tmp_path.rglob("*aisys*")) == []
    assert "systemctl stop aisys-head.service" in out.getvalue()


def test_this_machine_is_detected_as_it_is() -> None:
    assert service.systemd_booted() == Path("/run/systemd/system").is_dir()


def test_install_is_idempotent_and_refuses_to_overwrite_a_different_unit(tmp_path: Path) -> None:
    out = StringIO()
    path = install(spec("head"), out, unit_dir=tmp_path)
    install(spec("head"), out, unit_dir=tmp_path)
    assert "already installed, unchanged" in out.getvalue()
    changed = spec("head", env={"AISYS_DATA_DIR": "/elsewhere"})
    with pytest.raises(ConfigError, match="exists and differs .*--force"):
        install(changed, out, unit_dir=tmp_path)
    install(changed, out, unit_dir=tmp_path, force=True)
    assert "AISYS_DATA_DIR=/elsewhere" in path.read_text()

    foreign = tmp_path / "aisys-worker.service"
    foreign.write_text("[Service]\nExecStart=/bin/true\n")
    with pytest.raises(ConfigError, match="one aisys role per machine"):
        install(spec("embedded"), out, unit_dir=tmp_path)
    path.unlink()
    with pytest.raises(ConfigError, match="a unit aisys did not write"):
        install(spec("worker"), out, unit_dir=tmp_path)


def test_remove_deletes_only_what_install_wrote(tmp_path: Path) -> None:
    out = StringIO()
    foreign = tmp_path / "aisys-worker.service"
    foreign.write_text("[Service]\nExecStart=/bin/true\n")
    other = tmp_path / "other.service"
    other.write_text(service.WRITTEN_BY + "\n")
    with pytest.raises(ConfigError, match="nothing to remove"):
        remove(out, unit_dir=tmp_path)
    with pytest.raises(ConfigError, match="not written by `aisys service install`"):
        remove(out, role="worker", unit_dir=tmp_path)
    with pytest.raises(ConfigError, match="unknown role"):
        remove(out, role="gpu", unit_dir=tmp_path)
    path = install(spec("head"), out, unit_dir=tmp_path)
    assert remove(out, unit_dir=tmp_path) == [path]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aisys-worker.service", "other.service"]


def test_cli_install_and_remove(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AISYS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("AISYS_CONFIG", raising=False)
    config = tmp_path / "aisys.yaml"
    config.write_text("ports:\n  http: 8123\n")
    units = tmp_path / "units"
    argv = ["--config", str(config), "service", "install", "--unit-dir", str(units)]
    assert main([*argv, "--role", "worker"]) == 2
    assert "needs --address" in capsys.readouterr().err
    assert main([*argv, "--role", "head", "--user", "no-such-user-here"]) == 2
    assert "unknown user 'no-such-user-here'" in capsys.readouterr().err
    assert main([*argv, "--role", "head", "--env", "NOEQUALS"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err

    env = ["--env", "AISYS_HOSTS__MAINPC__NODE_IP=192.168.1.10"]
    assert main([*argv, "--role", "head", *env]) == 0
    assert "is not /etc/systemd/system, so systemctl was not run" in capsys.readouterr().out
    unit = directives((units / "aisys-head.service").read_text())
    assert systemd_words(unit["ExecStart"][0]) == [
        str(service.aisys_executable()),
        "--config",
        str(config),
        "supervise",
        "--role",
        "head",
    ]
    assert f"AISYS_DATA_DIR={tmp_path / 'data'}" in unit["Environment"]
    assert "AISYS_HOSTS__MAINPC__NODE_IP=192.168.1.10" in unit["Environment"]
    assert unit["User"] == [ME]

    assert main(["service", "remove", "--unit-dir", str(units)]) == 0
    assert not (units / "aisys-head.service").exists()
    assert main(["service", "remove", "--unit-dir", str(units)]) == 2


def test_a_broken_settings_file_fails_at_install_not_at_boot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "aisys.yaml"
    config.write_text("ports:\n  htp: 8123\n")
    argv = ["--config", str(config), "service", "install", "--role", "head"]
    assert main([*argv, "--unit-dir", str(tmp_path / "units")]) == 2
    assert not (tmp_path / "units").exists()
    assert "htp" in capsys.readouterr().err


def test_under_sudo_the_unit_runs_as_the_user_with_the_users_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    me = pwd.getpwuid(os.geteuid())
    other = pwd.struct_passwd(("alice", "x", me.pw_uid + 1, 1, "", "/home/alice", "/bin/sh"))
    monkeypatch.delenv("AISYS_DATA_DIR", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    default = Path.home() / ".local" / "share" / "aisys"
    assert service._data_dir(default, other) == Path("/home/alice/.local/share/aisys")
    assert service._data_dir(default, me) == default
    assert service._data_dir(tmp_path, other) == tmp_path
    monkeypatch.setenv("AISYS_DATA_DIR", str(default))
    assert service._data_dir(default, other) == default

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("SUDO_USER", "alice")
    assert service._default_user() == "alice"
    monkeypatch.setenv("SUDO_USER", "root")
    assert service._default_user() == "root"
