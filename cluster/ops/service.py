"""``aisys service install|remove``: a systemd unit that starts this host's part at boot.

The unit runs ``aisys supervise --role ROLE`` (:mod:`cluster.ops.supervise`) in the foreground as
the invoking user: it starts this host's parts, keeps them running (a worker waits for the head
and rejoins it, the head deploys once the tags appear) and, on ``systemctl stop`` (SIGTERM to
the main process), stops what it started and exits 0. Ray's processes are daemons that
``ray start`` detaches from the keeper, but they stay in the unit's control group, so
``KillMode=mixed`` lets the keeper stop them cleanly first and then has systemd SIGKILL whatever
is left in the group. All state lives in the data dir, so after a reboot every registration,
lease, trust score, alert state and error event is back.

Install writes ``/etc/systemd/system/aisys-<role>.service`` (``--unit-dir`` elsewhere), then
runs ``systemctl daemon-reload`` and ``systemctl enable`` where systemd runs as PID 1, and
prints those commands otherwise. Remove disables and deletes only units that install wrote
(they carry :data:`WRITTEN_BY` on their first line).
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from cluster.base.errors import ConfigError
from cluster.base.settings import load_settings

__all__ = [
    "ROLES",
    "SYSTEM_UNIT_DIR",
    "WRITTEN_BY",
    "UnitSpec",
    "add_parser",
    "aisys_executable",
    "install",
    "remove",
    "render_unit",
    "run_command",
    "spec_from_args",
    "systemd_booted",
    "unit_name",
]

ROLES = ("embedded", "head", "worker")
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
#: First line of every unit ``aisys service install`` writes; ``remove`` deletes only those.
WRITTEN_BY = "# Written by `aisys service install`; `aisys service remove` deletes it."

#: Seconds systemd waits for the keeper's own clean stop before it SIGKILLs the whole group:
#: stopping the Ray node and NATS takes well under a minute (``aisys down``).
STOP_TIMEOUT_S = 120
RESTART_S = 10
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DESCRIPTIONS = {
    "embedded": "aisys (embedded single machine: Ray head with every tag, NATS, all services)",
    "head": "aisys head (MainPC: Ray head; deploys once the workers' tags are in the cluster)",
    "worker": "aisys worker (PC2: Ray worker; waits for the head and rejoins it)",
}

Runner = Callable[[Sequence[str]], None]


@dataclass(frozen=True)
class UnitSpec:
    """Everything a unit says: what runs, as whom, with which environment."""

    role: str
    executable: Path
    user: str
    address: str | None = None
    host: str | None = None
    config: Path | None = None
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ConfigError(f"unknown role {self.role!r}; one of {', '.join(ROLES)}")
        if self.role == "worker" and not self.address:
            raise ConfigError("a worker's unit needs --address HEAD_IP:PORT (the head's GCS)")
        if self.role != "worker" and self.address:
            raise ConfigError(f"--address is for --role worker, not {self.role}")
        if not self.executable.is_absolute():
            raise ConfigError(f"the unit needs an absolute path to aisys, not {self.executable}")
        for key, value in self.env.items():
            if not _ENV_NAME.fullmatch(key):
                raise ConfigError(f"--env {key}=...: not a variable name")
            if "\n" in value or "\r" in value:
                raise ConfigError(f"--env {key}: a value cannot hold a line break")

    @property
    def argv(self) -> list[str]:
        """The keeper's command line, exactly as ``ExecStart=`` runs it."""
        argv = [str(self.executable)]
        if self.config is not None:
            argv += ["--config", str(self.config)]
        argv += ["supervise", "--role", self.role]
        if self.host is not None:
            argv += ["--host", self.host]
        if self.address is not None:
            argv += ["--address", self.address]
        return argv


def unit_name(role: str) -> str:
    return f"aisys-{role}.service"


def _quote(word: str, *, dollars: bool) -> str:
    """One word of ``ExecStart=``/``Environment=``, quoted the way systemd splits it back.

    ``%`` starts a specifier and ``$`` (in command lines) a variable: both are doubled.
    """
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    if dollars:
        escaped = escaped.replace("$", "$$")
    if escaped != word or not word or any(c.isspace() or c in "'\";" for c in word):
        return f'"{escaped}"'
    return escaped


def render_unit(spec: UnitSpec) -> str:
    """The unit file for ``spec``."""
    env = {"PYTHONUNBUFFERED": "1", **spec.env}  # progress lines reach journald at once
    exec_start = " ".join(_quote(word, dollars=True) for word in spec.argv)
    others = " ".join(unit_name(r) for r in ROLES if r != spec.role)
    lines = [
        WRITTEN_BY,
        "[Unit]",
        f"Description={_DESCRIPTIONS[spec.role]}",
        "Wants=network-online.target",
        "After=network-online.target",
        # One role per machine: starting this one stops another aisys role's unit.
        f"Conflicts={others}",
        # Never give up restarting: a worker may boot long before its head.
        "StartLimitIntervalSec=0",
        "",
        "[Service]",
        "Type=simple",
        f"User={spec.user}",
        "WorkingDirectory=~",
        *(f"Environment={_quote(f'{k}={v}', dollars=False)}" for k, v in sorted(env.items())),
        f"ExecStart={exec_start}",
        # SIGTERM to the keeper only: it stops the Ray node and NATS itself (like `aisys down`)
        # and exits 0; then systemd SIGKILLs whatever is left in the unit's control group
        # (Ray's daemons stay in it though `ray start` detached them).
        "KillMode=mixed",
        "KillSignal=SIGTERM",
        f"TimeoutStopSec={STOP_TIMEOUT_S}",
        # A crashed keeper comes back; a clean stop (`systemctl stop`, `aisys down`) stays down.
        "Restart=on-failure",
        f"RestartSec={RESTART_S}",
        # Ray opens a file descriptor per worker connection.
        "LimitNOFILE=65536",
        f"SyslogIdentifier=aisys-{spec.role}",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def aisys_executable() -> Path:
    """This installation's ``aisys`` script, as an absolute path (the venv's, symlinks kept)."""
    sibling = Path(os.path.abspath(sys.executable)).with_name("aisys")
    if os.access(sibling, os.X_OK):
        return sibling
    found = shutil.which("aisys")
    if found is None:
        raise ConfigError(
            f"no `aisys` script beside {sys.executable} or on PATH; install aisys first (make venv)"
        )
    return Path(os.path.abspath(found))


def systemd_booted() -> bool:
    """True when systemd runs as PID 1 (what ``sd_booted()`` checks)."""
    return Path("/run/systemd/system").is_dir()


def _default_user() -> str:
    """The invoking user: under ``sudo`` the one who ran sudo, not root."""
    sudo_user = os.environ.get("SUDO_USER")
    if os.geteuid() == 0 and sudo_user and sudo_user != "root":
        return sudo_user
    return pwd.getpwuid(os.geteuid()).pw_name


def _data_dir(configured: Path, user: pwd.struct_passwd) -> Path:
    """The unit's data dir: the configured one, or the default in the unit user's home.

    Under ``sudo`` the default (``~/.local/share/aisys``) would be root's, not the user's.
    """
    own_default = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    defaulted = configured.absolute() == (own_default / "aisys").absolute()
    if defaulted and user.pw_uid != os.geteuid() and "AISYS_DATA_DIR" not in os.environ:
        return Path(user.pw_dir) / ".local" / "share" / "aisys"
    return configured.absolute()


def _parse_env(pairs: Sequence[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--env {pair!r}: expected KEY=VALUE")
        env[key] = value
    return env


def spec_from_args(args: argparse.Namespace) -> UnitSpec:
    """The unit for ``aisys service install``'s arguments and this process's settings."""
    user_name = args.user or _default_user()
    try:
        user = pwd.getpwnam(user_name)
    except KeyError:
        raise ConfigError(f"unknown user {user_name!r} (--user)") from None
    config: Path | None = args.config.absolute() if args.config is not None else None
    if config is not None and not config.is_file():
        raise ConfigError(f"settings file {config} does not exist")
    env = _parse_env(args.env or [])
    # The same settings the keeper will read; a broken settings file fails here, not at boot.
    settings = load_settings(config)
    env.setdefault("AISYS_DATA_DIR", str(_data_dir(settings.data_dir, user)))
    if config is None and os.environ.get("AISYS_CONFIG"):
        env.setdefault("AISYS_CONFIG", str(Path(os.environ["AISYS_CONFIG"]).absolute()))
    return UnitSpec(
        role=args.role,
        executable=aisys_executable(),
        user=user_name,
        address=args.address,
        host=args.host,
        config=config,
        env=env,
    )


def _systemctl(argv: Sequence[str]) -> None:
    result = subprocess.run(["systemctl", *argv], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ConfigError(
            f"`systemctl {' '.join(argv)}` failed: {(result.stderr or result.stdout).strip()}"
        )


def _written_by_us(path: Path) -> bool:
    try:
        with path.open() as f:
            return f.readline().rstrip("\n") == WRITTEN_BY
    except OSError:
        return False


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        tmp.chmod(0o644)
        tmp.replace(path)
    except PermissionError as exc:
        raise ConfigError(
            f"cannot write {path}: {exc.strerror}; run it with sudo (the unit still runs as the "
            "invoking user)"
        ) from exc


def _manage(unit_dir: Path, runner: Runner | None) -> Runner | None:
    """The runner of systemctl commands, or None where they are printed instead."""
    if unit_dir.absolute() != SYSTEM_UNIT_DIR or not systemd_booted():
        return None
    return runner or _systemctl


def _apply(commands: list[list[str]], run: Runner | None, why: str, out: TextIO) -> None:
    if run is not None:
        for argv in commands:
            run(argv)
            out.write(f"ran: systemctl {' '.join(argv)}\n")
        return
    out.write(f"{why}; run these where systemd manages the machine:\n")
    for argv in commands:
        out.write(f"  systemctl {' '.join(argv)}\n")


def _not_managed_reason(unit_dir: Path) -> str:
    if unit_dir.absolute() != SYSTEM_UNIT_DIR:
        return f"{unit_dir} is not {SYSTEM_UNIT_DIR}, so systemctl was not run"
    return "systemd is not running as PID 1 here (no /run/systemd/system), so systemctl was not run"


def install(
    spec: UnitSpec,
    out: TextIO,
    *,
    unit_dir: Path = SYSTEM_UNIT_DIR,
    force: bool = False,
    now: bool = False,
    runner: Runner | None = None,
) -> Path:
    """Write the unit for ``spec`` and enable it (or print how); return its path.

    Raises:
        ConfigError: another aisys role's unit is installed, a different unit of this name
            exists (without ``force``), or the unit dir is not writable.
    """
    path = unit_dir / unit_name(spec.role)
    for other in ROLES:
        other_path = unit_dir / unit_name(other)
        if other != spec.role and _written_by_us(other_path):
            raise ConfigError(
                f"{other_path} is installed: one aisys role per machine; run "
                f"`aisys service remove --role {other}` first"
            )
    text = render_unit(spec)
    if path.exists() and path.read_text() != text and not force:
        kind = "an earlier aisys unit" if _written_by_us(path) else "a unit aisys did not write"
        raise ConfigError(f"{path} exists and differs ({kind}); --force replaces it")
    if path.exists() and path.read_text() == text:
        out.write(f"{path} is already installed, unchanged\n")
    else:
        _write(path, text)
        out.write(f"wrote {path}: {' '.join(spec.argv)} as user {spec.user}\n")
    run = _manage(unit_dir, runner)
    enable = ["enable", "--now", unit_name(spec.role)] if now else ["enable", unit_name(spec.role)]
    _apply([["daemon-reload"], enable], run, _not_managed_reason(unit_dir), out)
    if run is not None and not now:
        out.write(f"it starts at the next boot, or now with `systemctl start {path.name}`\n")
    out.write(f"follow it with `journalctl -u {path.name} -f`\n")
    return path


def remove(
    out: TextIO,
    *,
    role: str | None = None,
    unit_dir: Path = SYSTEM_UNIT_DIR,
    runner: Runner | None = None,
) -> list[Path]:
    """Stop, disable and delete the units ``install`` wrote (only ``role``'s, if given).

    Raises:
        ConfigError: unknown role, no such unit, or a unit of that name aisys did not write.
    """
    if role is not None and role not in ROLES:
        raise ConfigError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    paths = []
    for name in [role] if role is not None else ROLES:
        path = unit_dir / unit_name(name)
        if _written_by_us(path):
            paths.append(path)
        elif role is not None and path.exists():
            raise ConfigError(f"{path} was not written by `aisys service install`; left alone")
    if not paths:
        which = unit_name(role) if role is not None else "no aisys-*.service"
        raise ConfigError(f"{which} installed in {unit_dir}; nothing to remove")
    run = _manage(unit_dir, runner)
    why = _not_managed_reason(unit_dir)
    if run is not None:
        _apply([["disable", "--now", p.name] for p in paths], run, why, out)
    for path in paths:
        # What `systemctl enable` links to the unit goes with it (also when run by hand).
        wants = unit_dir / "multi-user.target.wants" / path.name
        if wants.is_symlink() and Path(os.readlink(wants)).name == path.name:
            wants.unlink()
        path.unlink()
        out.write(f"removed {path}\n")
    if run is not None:
        _apply([["daemon-reload"]], run, why, out)
    else:
        out.write(f"{why}; the units are deleted, stop any still running with:\n")
        for path in paths:
            out.write(f"  systemctl stop {path.name}\n")
        out.write("  systemctl daemon-reload\n")
    return paths


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``aisys service install|remove``."""
    service = sub.add_parser(
        "service", help="systemd unit that runs `aisys supervise` at boot (install, remove)"
    )
    service_sub = service.add_subparsers(dest="service_command", required=True)
    install_p = service_sub.add_parser(
        "install", help="write and enable the unit of this host's role (root: sudo)"
    )
    install_p.add_argument("--role", required=True, choices=ROLES)
    install_p.add_argument("--address", help="HEAD_IP:PORT of the head's GCS (workers)")
    install_p.add_argument("--host", help="host profile of this worker (default: the only worker)")
    install_p.add_argument("--user", help="user the unit runs as (default: the invoking user)")
    install_p.add_argument(
        "--env",
        action="append",
        metavar="KEY=VALUE",
        help="an Environment= line of the unit (e.g. AISYS_HOSTS__PC2__NODE_IP=...); repeatable. "
        "The unit file is world-readable: keep secrets in the data dir or the settings file",
    )
    install_p.add_argument(
        "--unit-dir", type=Path, default=SYSTEM_UNIT_DIR, help=f"default {SYSTEM_UNIT_DIR}"
    )
    install_p.add_argument("--force", action="store_true", help="replace a different unit")
    install_p.add_argument("--now", action="store_true", help="also start it now")
    remove_p = service_sub.add_parser(
        "remove", help="stop, disable and delete the unit(s) `service install` wrote"
    )
    remove_p.add_argument("--role", choices=ROLES, help="only this role's unit (default: any)")
    remove_p.add_argument(
        "--unit-dir", type=Path, default=SYSTEM_UNIT_DIR, help=f"default {SYSTEM_UNIT_DIR}"
    )


def run_command(args: argparse.Namespace, out: TextIO) -> int:
    """Dispatch ``aisys service install|remove``."""
    if args.service_command == "install":
        install(spec_from_args(args), out, unit_dir=args.unit_dir, force=args.force, now=args.now)
    else:
        remove(out, role=args.role, unit_dir=args.unit_dir)
    return 0
