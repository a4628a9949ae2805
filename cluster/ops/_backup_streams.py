"""JetStream streams in a backup: exported message by message, re-published on restore.

JetStream's own files are not consistent while the server runs, so each stream of
:data:`BACKUP_STREAMS` is read with ``get_msg`` (subject, headers, payload) into
``streams/<NAME>.jsonl``. Restore deletes the stream (and with it every consumer, such as
ErrorBus's index consumer), creates it again from the settings and publishes the messages in
order; they get new sequence numbers, starting at 1.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import nats
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError
from pydantic import BaseModel, ConfigDict, ValidationError

from actors.errors.stream import stream_config as errors_stream_config
from actors.logship.publish import stream_config as logs_stream_config
from cluster.base.constants import APP_ERRORS, ERRORS_STREAM, LOGS_STREAM
from cluster.base.errors import ClusterError, ConfigError
from cluster.base.nats_client import NatsClient, nats_client
from cluster.base.settings import Settings
from cluster.ops._dashboard import DashboardClient
from cluster.ops._progress import Progress
from cluster.ops._ray_node import port_open, read_ray_token

__all__ = [
    "BACKUP_STREAMS",
    "cluster_nats",
    "export_streams",
    "republish_streams",
]

#: The streams a backup holds, in the order they are exported and re-published.
BACKUP_STREAMS: Final = (ERRORS_STREAM, LOGS_STREAM)

_CONFIGS: Final[dict[str, Callable[[Settings], StreamConfig]]] = {
    ERRORS_STREAM: lambda s: errors_stream_config(s.errors),
    LOGS_STREAM: lambda s: logs_stream_config(s.observability.logs),
}


class StreamMessage(BaseModel):
    """One line of ``streams/<NAME>.jsonl``."""

    subject: str
    headers: dict[str, str]
    data: str  # base64


class _ErrorsArgs(BaseModel):
    model_config = ConfigDict(extra="ignore")
    nats: NatsClient


class _AppConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")
    args: dict[str, Any] = {}


class _App(BaseModel):
    model_config = ConfigDict(extra="ignore")
    deployed_app_config: _AppConfig | None = None


class _ServeDetails(BaseModel):
    model_config = ConfigDict(extra="ignore")
    applications: dict[str, _App] = {}


def cluster_nats(settings: Settings) -> NatsClient:
    """The NATS URL and credentials the running ErrorBus was deployed with (its Serve config's
    args; a password file it names is read on this host, the head).

    Raises:
        ClusterError: the dashboard is unreachable or ErrorBus is not deployed.
    """
    from cluster.ops.system import dashboard_url

    token = read_ray_token(settings)
    if token is None:
        raise ConfigError(f"no Ray token at {settings.ray_token_path}; set AISYS_RAY__AUTH_TOKEN")
    client = DashboardClient(dashboard_url(settings), token)
    try:
        raw = client.serve_details()
    finally:
        client.close()
    app = _ServeDetails.model_validate(raw).applications.get(APP_ERRORS)
    if app is None or app.deployed_app_config is None:
        raise ClusterError(
            f"backup: the '{APP_ERRORS}' application is not deployed, so the NATS URL of the "
            "streams is unknown; run `aisys up` (or `aisys deploy`) first"
        )
    try:
        return _ErrorsArgs.model_validate(app.deployed_app_config.args).nats
    except ValidationError as exc:
        raise ClusterError(
            f"backup: Serve's config of '{APP_ERRORS}' names no NATS broker (its args have no "
            "valid `nats`); redeploy with `aisys deploy`"
        ) from exc


async def _connect(broker: NatsClient) -> Any:
    async def quiet(_: Exception) -> None:
        return None

    try:
        return await asyncio.wait_for(
            broker.connect(allow_reconnect=False, max_reconnect_attempts=0, error_cb=quiet),
            timeout=10,
        )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        raise ClusterError(
            f"NATS at {broker.display_url} is unreachable or refused aisys's credentials: "
            f"{exc or 'timed out'}"
        ) from exc


async def _export_one(js: Any, name: str, out: Path) -> int | None:
    try:
        info = await js.stream_info(name)
    except NotFoundError:
        return None
    count = 0
    with out.open("w") as f:
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                msg = await js.get_msg(name, seq)
            except NotFoundError:
                continue  # deleted, or expired since stream_info
            record = StreamMessage(
                subject=msg.subject,
                headers=dict(msg.headers or {}),
                data=base64.b64encode(msg.data or b"").decode(),
            )
            f.write(record.model_dump_json() + "\n")
            count += 1
    return count


async def _export(broker: NatsClient, out_dir: Path) -> dict[str, int]:
    nc = await _connect(broker)
    try:
        js = nc.jetstream()
        counts = {}
        for name in BACKUP_STREAMS:
            count = await _export_one(js, name, out_dir / f"{name}.jsonl")
            if count is not None:
                counts[name] = count
        return counts
    finally:
        await nc.close()


def export_streams(broker: NatsClient, out_dir: Path) -> dict[str, int]:
    """Write each existing stream of :data:`BACKUP_STREAMS` to ``out_dir``; return the counts.

    Raises:
        ClusterError: NATS at ``broker`` is unreachable or refuses the credentials.
        ConfigError: the password file is missing on this host.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(_export(broker, out_dir))


async def _import_one(js: Any, config: StreamConfig, lines: list[str]) -> int:
    try:
        await js.delete_stream(config.name)
    except NotFoundError:
        pass  # a fresh store has none: nothing to replace
    await js.add_stream(config)
    for line in lines:
        record = StreamMessage.model_validate_json(line)
        await js.publish(
            record.subject, base64.b64decode(record.data), headers=record.headers or None
        )
    info = await js.stream_info(config.name)
    if info.state.messages != len(lines):
        raise ClusterError(
            f"restore: stream {config.name} holds {info.state.messages} messages after "
            f"re-publishing {len(lines)}"
        )
    return len(lines)


async def _import(
    broker: NatsClient, settings: Settings, in_dir: Path, names: list[str]
) -> dict[str, int]:
    nc = await _connect(broker)
    try:
        js = nc.jetstream()
        counts = {}
        for name in names:
            path = in_dir / f"{name}.jsonl"
            lines = path.read_text().splitlines() if path.exists() else []
            counts[name] = await _import_one(js, _CONFIGS[name](settings), lines)
        return counts
    finally:
        await nc.close()


def republish_streams(
    settings: Settings, in_dir: Path, names: list[str], progress: Progress
) -> dict[str, int]:
    """Replace each stream of ``names`` with the archive's messages; return the counts.

    With the embedded broker, this host's nats-server is started for the purpose and stopped.

    Raises:
        ConfigError: the archive names a stream this aisys does not know.
        ClusterError: NATS is unreachable, or a stream does not hold what was published.
    """
    from cluster.ops.system import embedded_nats

    unknown = sorted(set(names) - set(_CONFIGS))
    if unknown:
        raise ConfigError(
            f"backup holds unknown streams {unknown}; this aisys knows {BACKUP_STREAMS}"
        )
    if settings.nats.url is not None:
        return asyncio.run(_import(nats_client(settings), settings, in_dir, names))
    server = embedded_nats(settings)
    with progress.step("Starting the embedded nats-server to restore the streams"):
        server.start()
    try:
        if not port_open("127.0.0.1", server.port):
            raise ClusterError(f"embedded nats-server on port {server.port} does not answer")
        return asyncio.run(_import(server.client, settings, in_dir, names))
    finally:
        server.stop()
