"""``aisys backup`` and ``aisys restore``: one versioned archive of every piece of aisys state.

What goes in (``data/`` mirrors the data directory):

* every SQLite database (registry, security identities/revocations/trust, leases, the
  coordinator's journal, ErrorBus spool and index, ...), copied with SQLite's online-backup API,
  so each is consistent while the system runs and writes to it;
* the other state files: signing keys, the Ray token, configs;
* the ErrorBus JetStream stream, exported message by message (subject, headers, payload) to
  ``streams/ERRORS.jsonl``: JetStream's own files are not consistent while the server runs.

Ray's temp dir and the NATS store are left out (derived, or exported above). Restore refuses a
running system, checks the archive's format version, writes the files back, and re-publishes the
stream into the embedded nats-server (started for the purpose) with the original message ids.

Example::

    aisys backup /backups/aisys-$(date +%F).tar.gz
    aisys down && aisys restore /backups/aisys-2026-11-25.tar.gz && aisys up
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import nats
from nats.js.errors import NotFoundError
from pydantic import BaseModel, ValidationError

from cluster._progress import Progress
from cluster._ray_node import port_open, ray_node_running
from cluster.constants import ERRORS_STREAM
from cluster.errors import ClusterError, ConfigError
from cluster.settings import Settings

__all__ = ["BACKUP_VERSION", "BackupManifest", "backup", "restore"]

BACKUP_VERSION = 1
_SQLITE_SUFFIXES = (".sqlite3", ".db")
# Ray's temp dir is recreated at start; the NATS store is exported as messages instead.
_NOT_STATE = ("ray", "nats")


class BackupManifest(BaseModel):
    """``manifest.json`` of an archive."""

    format: Literal["aisys-backup"] = "aisys-backup"
    version: int = BACKUP_VERSION
    created_at: float
    files: list[str]
    streams: dict[str, int]


def _state_files(data_dir: Path) -> list[Path]:
    files = []
    for path in sorted(data_dir.rglob("*")):
        rel = path.relative_to(data_dir)
        if rel.parts[0] in _NOT_STATE or not path.is_file():
            continue
        if path.name.endswith(("-wal", "-shm", "-journal")):
            continue  # folded into the database by the online backup
        files.append(path)
    return files


def _copy_state(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.suffix in _SQLITE_SUFFIXES:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
    else:
        shutil.copy2(source, target)


async def _connect(url: str) -> Any:
    async def quiet(_: Exception) -> None:
        return None

    try:
        return await asyncio.wait_for(
            nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, error_cb=quiet),
            timeout=10,
        )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        raise ClusterError(f"NATS at {url} is unreachable: {exc or 'timed out'}") from exc


async def _export_stream(url: str, out: Path) -> int:
    nc = await _connect(url)
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info(ERRORS_STREAM)
        except NotFoundError:
            out.write_text("")
            return 0
        count = 0
        with out.open("w") as f:
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                try:
                    msg = await js.get_msg(ERRORS_STREAM, seq)
                except NotFoundError:
                    continue  # deleted or expired since stream_info
                record = {
                    "subject": msg.subject,
                    "headers": dict(msg.headers or {}),
                    "data": base64.b64encode(msg.data or b"").decode(),
                }
                f.write(json.dumps(record) + "\n")
                count += 1
        return count
    finally:
        await nc.close()


def backup(settings: Settings, archive: Path, progress: Progress) -> BackupManifest:
    """Write every piece of state of ``settings.data_dir`` (and the stream) to ``archive``.

    Raises:
        ClusterError: NATS is unreachable, so the ErrorBus stream cannot be exported.
    """
    from cluster.system import nats_url

    with tempfile.TemporaryDirectory(prefix="aisys-backup-") as tmp:
        root = Path(tmp)
        files = _state_files(settings.data_dir)
        with progress.step(f"Copying {len(files)} state files (SQLite online backup)"):
            for path in files:
                _copy_state(path, root / "data" / path.relative_to(settings.data_dir))
        (root / "streams").mkdir()
        with progress.step(f"Exporting the {ERRORS_STREAM} stream"):
            count = asyncio.run(
                _export_stream(nats_url(settings), root / "streams" / f"{ERRORS_STREAM}.jsonl")
            )
            progress.line(f"    {count} messages")
        manifest = BackupManifest(
            created_at=time.time(),
            files=[str(p.relative_to(settings.data_dir)) for p in files],
            streams={ERRORS_STREAM: count},
        )
        (root / "manifest.json").write_text(manifest.model_dump_json(indent=2))
        archive.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(archive, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # keys inside
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            for name in ("manifest.json", "data", "streams"):
                tar.add(root / name, arcname=name)
    return manifest


def _read_manifest(tar: tarfile.TarFile) -> BackupManifest:
    try:
        member = tar.extractfile("manifest.json")
    except KeyError as exc:
        raise ConfigError("not an aisys backup: the archive has no manifest.json") from exc
    assert member is not None
    raw = json.load(io.TextIOWrapper(member))
    if raw.get("format") != "aisys-backup":
        raise ConfigError("not an aisys backup: manifest format is not 'aisys-backup'")
    if raw.get("version") != BACKUP_VERSION:
        raise ConfigError(
            f"backup format version {raw.get('version')!r} is not supported: this aisys reads "
            f"version {BACKUP_VERSION}"
        )
    try:
        return BackupManifest.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"damaged backup manifest: {exc}") from exc


async def _import_stream(url: str, settings: Settings, lines: list[str]) -> int:
    from deployments.errors.store import stream_config

    nc = await _connect(url)
    try:
        js = nc.jetstream()
        try:
            await js.delete_stream(ERRORS_STREAM)
        except NotFoundError:
            pass  # a fresh store has none: nothing to replace
        await js.add_stream(stream_config(settings.errors))
        for line in lines:
            record = json.loads(line)
            await js.publish(
                record["subject"],
                base64.b64decode(record["data"]),
                headers=record["headers"] or None,
            )
        return len(lines)
    finally:
        await nc.close()


def _restore_stream(settings: Settings, lines: list[str], progress: Progress) -> int:
    from cluster.system import embedded_nats, nats_url

    if settings.nats.url is not None:
        return asyncio.run(_import_stream(settings.nats.url, settings, lines))
    server = embedded_nats(settings)
    with progress.step("Starting the embedded nats-server to restore the stream"):
        server.start()
    try:
        host, _, port = nats_url(settings).rpartition(":")
        if not port_open(host.rpartition("/")[2] or "127.0.0.1", int(port)):
            raise ClusterError(f"embedded nats-server on port {port} does not answer")
        return asyncio.run(_import_stream(server.client_url, settings, lines))
    finally:
        server.stop()


def restore(settings: Settings, archive: Path, progress: Progress) -> BackupManifest:
    """Restore ``archive`` into ``settings.data_dir`` (stopped or fresh).

    Raises:
        ClusterError: the system of this data dir is running (stop it with ``aisys down``).
        ConfigError: the file is not an aisys backup or has an unknown format version.
    """
    from cluster.system import embedded_nats

    if ray_node_running(settings) or embedded_nats(settings).process() is not None:
        raise ClusterError(
            f"the system of {settings.data_dir} is running; stop it first with `aisys down`"
        )
    if not archive.is_file():
        raise ConfigError(f"backup {archive} does not exist")
    with tarfile.open(archive, "r:gz") as tar:
        manifest = _read_manifest(tar)
        with tempfile.TemporaryDirectory(prefix="aisys-restore-") as tmp:
            # The "data" filter refuses absolute paths, links out of the tree and devices.
            tar.extractall(tmp, filter="data")
            root = Path(tmp)
            with progress.step(f"Restoring {len(manifest.files)} state files"):
                for rel in manifest.files:
                    target = settings.data_dir / rel
                    for stale in (f"{target}-wal", f"{target}-shm"):
                        Path(stale).unlink(missing_ok=True)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(root / "data" / rel, target)
            stream_file = root / "streams" / f"{ERRORS_STREAM}.jsonl"
            lines = stream_file.read_text().splitlines() if stream_file.exists() else []
            count = _restore_stream(settings, lines, progress)
            progress.line(f"    {count} {ERRORS_STREAM} messages restored")
    return manifest
