"""The ``aisys`` command: ``up``, ``deploy``, ``status``, ``check``, ``down``, ...

Every command reads :class:`Settings` once (``--config FILE`` or ``AISYS_CONFIG``, plus
``AISYS_*`` variables) and exits non-zero with a one-line reason on an :class:`AisysError`.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TextIO

import pydantic

from cluster.base.errors import AisysError, ValidationFailed
from cluster.base.files import PRIVATE_UMASK
from cluster.base.logging import configure_logging
from cluster.base.settings import Settings, load_settings
from cluster.ops import logview, service
from cluster.ops._progress import Progress
from cluster.ops._ray_node import export_ray_auth

if TYPE_CHECKING:
    from cluster.ops import system

__all__ = ["main", "render_status"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aisys", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="settings file (YAML or TOML)")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start this host's node (and NATS), deploy from the head")
    up.add_argument("--role", choices=["embedded", "head", "worker"], default="embedded")
    up.add_argument("--host", help="host profile of this worker (default: the only worker)")
    up.add_argument("--address", help="HEAD_IP:PORT of the head's GCS (workers)")
    up.add_argument(
        "--wait",
        type=float,
        default=600.0,
        help="seconds the head waits for worker tags, and a worker for the head",
    )
    up.add_argument(
        "--no-check", action="store_true", help="skip the end-to-end check `up` ends with"
    )
    up.add_argument(
        "--detach",
        action="store_true",
        help="start this host's parts, then leave the rest (deploy and check on the head, "
        "restarts everywhere) to `aisys supervise` in the background and return",
    )
    keep = sub.add_parser(
        "supervise",
        help="keep this host's part running in the foreground (what the systemd unit runs)",
    )
    keep.add_argument("--role", choices=["embedded", "head", "worker"], default="embedded")
    keep.add_argument("--host", help="host profile of this worker (default: the only worker)")
    keep.add_argument("--address", help="HEAD_IP:PORT of the head's GCS (workers)")
    check = sub.add_parser(
        "check", help="short end-to-end check of the running system; run it on the head"
    )
    check.add_argument(
        "--timeout", type=float, default=30.0, help="seconds each step may take (default 30)"
    )

    sub.add_parser("deploy", help="(re)deploy every application onto the running cluster")
    status = sub.add_parser(
        "status", help="hosts, applications, NATS and registry; exit 1 if anything is unhealthy"
    )
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    sub.add_parser("down", help="stop what `aisys up` started on this host")
    user = sub.add_parser("user", help="manage SecurityGateway users")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    add = user_sub.add_parser("add", help="create a user (password from a prompt or stdin)")
    add.add_argument("name")
    add.add_argument(
        "--role", action="append", choices=["admin", "operator", "viewer"], dest="roles"
    )
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

    token = sub.add_parser("token", help="agent identities and tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    agent = token_sub.add_parser("agent", help="create an agent identity; prints its secret once")
    agent.add_argument("agent_id")
    agent.add_argument("--scope", action="append", dest="scopes", help="repeatable; default read")
    login = token_sub.add_parser("login", help="log a user in and print the token pair as JSON")
    login.add_argument("name")
    login.add_argument("--password-stdin", action="store_true")

    backup = sub.add_parser("backup", help="write every piece of aisys state to one archive")
    backup.add_argument("path", type=Path)
    restore = sub.add_parser(
        "restore", help="restore this host's part of an archive into a stopped data dir"
    )
    restore.add_argument("path", type=Path)
    restore.add_argument(
        "--host",
        action="append",
        dest="hosts",
        help="host profile whose section to restore; repeatable (default: the profiles whose "
        "node_ip is this machine's, else all)",
    )
    restore.add_argument(
        "--force",
        action="store_true",
        help="delete the state already in the data dir (all but Ray's temp dir) first",
    )
    _import_legacy_parser(sub)
    _prometheus_parser(sub)
    service.add_parser(sub)
    logview.add_parser(sub)

    config = sub.add_parser("serve-config", help="write the generated Serve config as YAML")
    config.add_argument("--out", type=Path, help="file to write (default: stdout)")
    migrate = sub.add_parser(
        "migrate-config",
        help="remove the consolidated agents from a legacy startup_config.yaml",
    )
    migrate.add_argument("path", type=Path, help="the legacy startup_config.yaml")
    migrate.add_argument(
        "--out", type=Path, help="file to write (default: <name>.aisys.yaml beside PATH)"
    )
    moving = sub.add_parser("migrate", help="the gradual move off the legacy agents")
    moving_sub = moving.add_subparsers(dest="migrate_command", required=True)
    status = moving_sub.add_parser(
        "status", help="each legacy service's mode; who still calls each port and action"
    )
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.add_argument("--token", help="access token of read scope (default: $AISYS_TOKEN)")
    return parser


def _migrate_status(args: argparse.Namespace, settings: Settings) -> int:
    from cluster.ops.migrate_status import fetch_status, render_migration, token_from

    status = fetch_status(settings, token_from(args.token))
    if args.json:
        sys.stdout.write(status.model_dump_json(indent=2) + "\n")
    else:
        render_migration(status, sys.stdout)
    return 0


def _prometheus_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    prom = sub.add_parser(
        "prometheus-credentials",
        help="create Prometheus' metrics-only identity; write its secret (0600) and the scrape "
        "config into a directory",
    )
    prom.add_argument("--out-dir", type=Path, required=True, help="where both files go")
    prom.add_argument("--client-id", default="prometheus", help="identity name (prometheus)")
    prom.add_argument("--ingress", help="http(s)://HOST:PORT Prometheus reaches aisys at")
    prom.add_argument("--ray-sd-file", type=Path, help="Ray's file_sd list as Prometheus sees it")
    prom.add_argument("--rotate", action="store_true", help="replace an existing identity")


def _prometheus_credentials(args: argparse.Namespace, settings: Settings) -> int:
    from cluster.ops.prometheus_setup import write_prometheus_files

    files = write_prometheus_files(
        settings,
        args.out_dir,
        client_id=args.client_id,
        ingress=args.ingress,
        ray_sd=args.ray_sd_file,
        rotate=args.rotate,
    )
    sys.stdout.write(
        f"client_id: {files.client_id} (scope metrics:read)\nsecret: {files.secret_file} "
        f"(0600; a Prometheus running as another user needs it chowned to that user)\n"
        f"config: {files.config_file}\nray targets: {files.ray_sd_file}\n"
    )
    return 0


def _import_legacy_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    legacy = sub.add_parser(
        "import-legacy",
        help="import the legacy stores (each optional) into the running system; repeatable",
    )
    legacy.add_argument(
        "--redis", metavar="URL", help="the ServiceRegistry's Redis (service_registry:* keys)"
    )
    legacy.add_argument("--trust-db", type=Path, help="AgentTrustScorer's agent_trust_scores.db")
    legacy.add_argument(
        "--perf-db", type=Path, help="PerformanceLoggerAgent's performance_metrics.db"
    )
    legacy.add_argument("--errors-db", type=Path, help="the error bus's error_system.db")
    legacy.add_argument(
        "--local-tz",
        metavar="ZONE",
        help="zone of the legacy PCs' datetime.now() stamps (trust, perf); default: this machine's",
    )


def _import_legacy(args: argparse.Namespace, settings: Settings, progress: Progress) -> int:
    """``aisys import-legacy``: exit 1 when a named store (or a table of it) could not be read."""
    export_ray_auth(settings, generate=False)  # before Ray is imported, as in _run
    from cluster.ops.legacy_import.run import LegacySources, import_legacy, render_report

    sources = LegacySources(
        redis_url=args.redis,
        trust_db=args.trust_db,
        perf_db=args.perf_db,
        errors_db=args.errors_db,
        local_zone=args.local_tz,
    )
    report = import_legacy(settings, sources, progress)
    render_report(report, sys.stdout)
    return 0 if report.complete else 1


def render_status(status: system.SystemStatus, out: TextIO) -> None:
    """Print the status as the tables ``aisys up`` and ``aisys status`` show."""
    rows = [("SERVICE", "HOST", "STATUS", "REPLICAS", "URL")]
    for app in status.applications:
        running = sum(d.running_replicas for d in app.deployments)
        target = sum(d.target_replicas for d in app.deployments)
        hosts = ",".join(sorted({h for d in app.deployments for h in d.hosts})) or app.host_tag
        rows.append((app.name, hosts, app.status, f"{running}/{target}", app.url))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + "\n")
    out.write("\nHOSTS\n")
    for node in status.nodes:
        if node.state == "replaced":
            continue  # a dead node's entry that a live node of the same host took over
        state = "alive" if node.alive else "LOST (its services are unavailable)"
        out.write(
            f"  {','.join(node.hosts) or '?':<12} {node.ip:<15} "
            f"tags={','.join(node.tags) or '-':<12} cpus={node.cpus:g} gpus={node.gpus:g} "
            f"{state}\n"
        )
    replaced = sum(1 for n in status.nodes if n.state == "replaced")
    if replaced:
        out.write(f"  ({replaced} earlier node(s) of these hosts ended and were replaced)\n")
    nats_state = "ok" if status.nats.reachable and status.nats.jetstream else "UNHEALTHY"
    out.write(f"\nNATS       {status.nats.url} {nats_state} ({status.nats.detail})\n")
    agents = "unavailable" if status.registered_agents is None else status.registered_agents
    out.write(f"Agents     {agents} registered\n")
    out.write(f"Dashboard  {status.dashboard_url}\n")


def _password(args: argparse.Namespace, confirm: bool) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    password = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Again: ") != password:
        raise ValidationFailed("the two passwords differ")
    return password


def _identity_command(args: argparse.Namespace, settings: Settings) -> int:
    from actors.security.models import Grant, NewAgent, NewUser
    from cluster.ops import identity

    out = sys.stdout
    if args.command == "prometheus-credentials":
        return _prometheus_credentials(args, settings)
    if args.command == "user":
        user = identity.create_user(
            settings,
            NewUser.model_validate(
                {
                    "name": args.name,
                    "password": _password(args, confirm=True),
                    "roles": args.roles or ["viewer"],
                }
            ),
        )
        out.write(f"created user '{user.name}' with roles {', '.join(user.roles)}\n")
    elif args.token_command == "agent":
        created = identity.create_agent(
            settings,
            NewAgent.model_validate({"agent_id": args.agent_id, "scopes": args.scopes or ["read"]}),
        )
        out.write(
            f"client_id: {created.agent_id}\nclient_secret: {created.client_secret}\n"
            f"scopes: {' '.join(created.scopes)}\n(the secret is shown once; store it now)\n"
        )
    else:
        pair = identity.issue_token(
            settings,
            Grant.model_validate(
                {
                    "grant_type": "password",
                    "username": args.name,
                    "password": _password(args, confirm=False),
                }
            ),
        )
        out.write(pair.model_dump_json(indent=2) + "\n")
    return 0


def _backup_command(args: argparse.Namespace, settings: Settings, progress: Progress) -> int:
    from cluster.ops import backup

    def counts(streams: dict[str, int]) -> str:
        return "".join(f", {n} {name} messages" for name, n in streams.items())

    if args.command == "backup":
        manifest = backup.backup(settings, args.path, progress)
        files = sum(len(s.files) for s in manifest.sections)
        hosts = " ".join("+".join(s.tags) for s in manifest.sections)
        sys.stdout.write(
            f"wrote {args.path}: {files} state files of hosts {hosts}{counts(manifest.streams)}\n"
        )
    else:
        report = backup.restore(settings, args.path, progress, hosts=args.hosts, force=args.force)
        hosts = " ".join("+".join(tags) for tags in report.sections)
        sys.stdout.write(
            f"restored {args.path}: {report.files} state files of hosts {hosts}"
            f"{counts(report.streams)}\n"
        )
    return 0


def _run(args: argparse.Namespace, settings: Settings, progress: Progress) -> int:
    # Ray must see the token before it is first imported, so Ray-using modules load after this.
    head = args.command in ("up", "supervise") and args.role != "worker"
    export_ray_auth(settings, generate=head)
    from cluster.ops import system
    from cluster.ops.check import run_check

    if args.command in ("user", "token", "prometheus-credentials"):
        return _identity_command(args, settings)
    if args.command in ("backup", "restore"):
        return _backup_command(args, settings, progress)
    out = sys.stdout
    if args.command == "serve-config":
        return _serve_config(args, settings, progress)
    if args.command == "down":
        system.down(settings, progress)
        return 0
    if args.command == "check":
        return 0 if run_check(settings, out, args.timeout).passed else 1
    if args.command == "supervise" or (args.command == "up" and args.detach):
        return _keep(args, settings, progress)
    if args.command == "up":
        system.up(
            settings,
            progress,
            role=args.role,
            host=args.host,
            address=args.address,
            wait_tags_s=args.wait,
        )
        if args.role == "worker":
            progress.line("Worker node started; the head deploys once it sees this host's tag.")
            return 0
        from cluster.ops.identity import ensure_admin

        admin_password = ensure_admin(settings)
        if admin_password is not None:
            out.write(
                f"Created the first admin user '{settings.security.admin_user}' with password "
                f"{admin_password}\n(shown once; only its hash is stored)\n"
            )
    elif args.command == "deploy":
        system.deploy(settings, progress)
    status = system.collect_status(settings)
    if args.command == "status" and args.json:
        out.write(status.model_dump_json(indent=2) + "\n")
    else:
        out.write("\n")
        render_status(status, out)
    healthy = status.healthy
    if args.command == "up":
        healthy = _end_of_up(args, settings, out) and healthy
    return 0 if healthy else 1


def _serve_config(args: argparse.Namespace, settings: Settings, progress: Progress) -> int:
    from cluster.ops.serve_config import build_serve_config, serve_config_yaml

    text = serve_config_yaml(build_serve_config(settings))
    if args.out:
        args.out.write_text(text)
        progress.line(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _keep(args: argparse.Namespace, settings: Settings, progress: Progress) -> int:
    """``aisys supervise``, and ``aisys up --detach``: this host's parts now, the rest to a
    keeper in the background."""
    from cluster.ops import system
    from cluster.ops._keeper import keeper_process, spawn_keeper

    if args.command == "supervise":
        from cluster.ops.supervise import supervise

        supervise(
            settings,
            Progress(out=sys.stdout),
            role=args.role,
            host=args.host,
            address=args.address,
            config_file=args.config,
        )
        return 0
    plan = system.host_plan(settings, args.role, args.host)
    system.ensure_host_parts(settings, progress, plan, address=args.address, wait_head_s=args.wait)
    log = settings.data_dir / "supervise.log"
    running = keeper_process(settings)
    if running is not None:
        progress.line(f"==> aisys supervise already keeps this host (pid {running.pid}); log {log}")
        return 0
    pid = spawn_keeper(
        settings, args.role, host=args.host, address=args.address, config_file=args.config
    )
    then = "deploys once the tags are there, runs the check and " if plan.head else ""
    progress.line(f"==> aisys supervise (pid {pid}) {then}keeps this host running; log {log}")
    return 0


def _end_of_up(args: argparse.Namespace, settings: Settings, out: TextIO) -> bool:
    """Run the end-to-end check unless ``--no-check``; say how to join PC2. False: it failed."""
    from cluster.ops.check import run_check

    passed = True
    if not args.no_check:
        out.write("\nCHECK\n")
        out.flush()
        passed = run_check(settings, out).passed
    if args.role == "head":
        out.write(
            f"\nTo join PC2: copy {settings.ray_token_path} and {settings.nats_password_path} to "
            "the same paths on PC2 (or export AISYS_RAY__AUTH_TOKEN and AISYS_NATS__PASSWORD "
            "with their contents), then run there:\n"
            f"  aisys up --role worker --address <this-host-ip>:{settings.ports.gcs}\n"
        )
    return passed


def _migrate_config(args: argparse.Namespace, settings: Settings) -> int:
    """``aisys migrate-config``: needs no cluster; the settings say which agents still answer."""
    import yaml

    from cluster.base.errors import ConfigError
    from legacy_gateway.gateway import LEGACY_NAMES
    from legacy_gateway.migrate_config import migrate

    if not args.path.is_file():
        raise ConfigError(f"legacy config {args.path} does not exist")
    try:
        legacy = yaml.safe_load(args.path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{args.path} is not valid YAML: {exc}") from exc
    # Agents whose port the gateway still forwards to (delegate or mirror mode) stay.
    answering: dict[str, Literal["delegate", "mirror"]] = {}
    for svc in settings.legacy_gateway.mirror_to:
        answering[LEGACY_NAMES[svc]] = "mirror"
    for svc in settings.legacy_gateway.delegate_to:
        answering[LEGACY_NAMES[svc]] = "delegate"
    result = migrate(legacy, answering)
    out_path: Path = args.out or args.path.with_name(args.path.stem + ".aisys.yaml")
    header = f"# Migrated by `aisys migrate-config` from {args.path.name}.\n"
    out_path.write_text(header + yaml.safe_dump(result.config, sort_keys=False))
    sys.stdout.write("\n".join([*result.report.summary(), f"wrote {out_path}"]) + "\n")
    return 0


def _disconnect_ray() -> None:
    """Leave the cluster now: Ray's exit hook would first sleep 0.5 s for driver logs, and
    the commands connect with ``log_to_driver=False``."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``aisys`` console script."""
    args = _parser().parse_args(argv)
    # What aisys writes, and every process of a node it starts, is its owner's only.
    os.umask(PRIVATE_UMASK)
    configure_logging(args.verbose)
    progress = Progress()
    try:
        if args.command == "service":
            return service.run_command(args, sys.stdout)
        settings = load_settings(args.config)
        if args.command == "migrate-config":
            return _migrate_config(args, settings)
        if args.command == "logs":
            return logview.run(args, settings, sys.stdout)
        if args.command == "import-legacy":
            return _import_legacy(args, settings, progress)
        if args.command == "migrate":
            return _migrate_status(args, settings)
        try:
            return _run(args, settings, progress)
        finally:
            _disconnect_ray()
    except AisysError as exc:
        sys.stderr.write(f"aisys: {exc}\n")
        return 2
    except pydantic.ValidationError as exc:
        sys.stderr.write(f"aisys: invalid input: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("aisys: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
