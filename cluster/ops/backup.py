"""``aisys backup`` and ``aisys restore``: one versioned archive of every piece of aisys state.

Archive layout (format version 2)::

    manifest.json                 format, version, sections, stream message counts
    hosts/<tags>/data/...         one section per node: its data dir's state files
    streams/<NAME>.jsonl          ERRORS and LOGS, message by message

On two machines each service writes under the data-dir path on its own host's disk, so the
backup (run on the head, connected to the cluster) reads each node's files with a Ray task
pinned to that node (:mod:`cluster.ops._backup_files`): SQLite databases through the online-backup
API, consistent while the system runs, and the other state files (signing keys, the Ray token)
as bytes. Ray's temp dir and the NATS store are left out; the streams are exported as messages
(:mod:`cluster.ops._backup_streams`). A section is named by the host tags of its node joined with
``+`` (``mainpc+pc2`` on the embedded single machine) and the manifest lists those tags.

Restore runs on each machine, stopped: it writes the sections of the host tags this machine
carries (``--host``, else the host profiles whose ``node_ip`` is an address of this machine,
else every tag), and the host of the NATS server re-publishes the streams. The ErrorBus index
is emptied of its events (not of its import record), because the re-published stream numbers
its messages from 1 again; ErrorBus refills it from the new stream.

Version 1 archives (``data/...``, one data dir, the ERRORS stream only) are still read, as one
section covering every host tag.

Example::

    aisys backup /backups/aisys-$(date +%F).tar.gz
    aisys down && aisys restore /backups/aisys-2026-11-25.tar.gz && aisys up
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import psutil
from pydantic import BaseModel, ValidationError

from cluster.base.errors import ClusterError, ConfigError
from cluster.base.files import make_private
from cluster.base.settings import Settings
from cluster.ops._backup_files import (
    HostState,
    checked_path,
    clear_state,
    collect_sections,
    remove_side_files,
)
from cluster.ops._backup_streams import cluster_nats, export_streams, republish_streams
from cluster.ops._progress import Progress
from cluster.ops._ray_node import ray_node_running

__all__ = [
    "BACKUP_VERSION",
    "BackupManifest",
    "HostSection",
    "RestoreReport",
    "backup",
    "restore",
    "restore_tags",
]

BACKUP_VERSION = 2
#: Older format versions this aisys still reads.
READABLE_VERSIONS = (1, BACKUP_VERSION)
#: Where ErrorBus keeps its query index, relative to the data dir.
ERRORS_INDEX = "errors/index.sqlite3"


class HostSection(BaseModel):
    """The state files of one node: the host tags it carried and where the files are."""

    tags: list[str]
    root: str  # directory of the archive holding the files, e.g. "hosts/pc2/data"
    files: list[str]


class BackupManifest(BaseModel):
    """``manifest.json`` of an archive."""

    format: Literal["aisys-backup"] = "aisys-backup"
    version: int = BACKUP_VERSION
    created_at: float
    sections: list[HostSection]
    streams: dict[str, int]

    def check_paths(self) -> None:
        """Raise :class:`ConfigError` for any path that could land outside the data dir."""
        base = Path("/nonexistent-aisys-restore-root")
        for section in self.sections:
            checked_path(base, section.root)
            for rel in section.files:
                checked_path(base, rel)


class RestoreReport(BaseModel):
    """What a restore wrote on this machine."""

    sections: list[list[str]]
    files: int
    streams: dict[str, int]


def backup(settings: Settings, archive: Path, progress: Progress) -> BackupManifest:
    """Write every host's state and the streams of the running cluster to ``archive``.

    Raises:
        ClusterError: no cluster, a host tag without a node, or NATS unreachable.
    """
    from cluster.ops.system import connect

    connect(settings)
    with tempfile.TemporaryDirectory(prefix="aisys-backup-") as tmp:
        root = Path(tmp)
        with progress.step("Copying each host's state files (SQLite online backup)"):
            sections = [
                _write_section(root, tags, state) for tags, state in collect_sections(settings)
            ]
            for section in sections:
                progress.line(f"    {'+'.join(section.tags)}: {len(section.files)} files")
        with progress.step("Exporting the JetStream streams"):
            streams = export_streams(cluster_nats(settings), root / "streams")
            progress.line("    " + ", ".join(f"{n}: {c} messages" for n, c in streams.items()))
        manifest = BackupManifest(created_at=time.time(), sections=sections, streams=streams)
        (root / "manifest.json").write_text(manifest.model_dump_json(indent=2))
        archive.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(archive, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # keys inside
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            for name in ("manifest.json", "hosts", "streams"):
                tar.add(root / name, arcname=name)
    return manifest


def _write_section(root: Path, tags: list[str], state: HostState) -> HostSection:
    section = HostSection(tags=tags, root=f"hosts/{'+'.join(tags)}/data", files=[])
    base = root / section.root
    base.mkdir(parents=True)
    for item in state.files:
        target = checked_path(base, item.path)  # a node's answer is checked like a manifest
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(item.data)
        section.files.append(item.path)
    return section


def _read_manifest(tar: tarfile.TarFile, settings: Settings) -> BackupManifest:
    try:
        member = tar.extractfile("manifest.json")
    except KeyError as exc:
        raise ConfigError("not an aisys backup: the archive has no manifest.json") from exc
    if member is None:
        raise ConfigError("not an aisys backup: manifest.json is not a file")
    raw = json.load(io.TextIOWrapper(member))
    if raw.get("format") != "aisys-backup":
        raise ConfigError("not an aisys backup: manifest format is not 'aisys-backup'")
    if raw.get("version") not in READABLE_VERSIONS:
        raise ConfigError(
            f"backup format version {raw.get('version')!r} is not supported: this aisys reads "
            f"version {', '.join(map(str, READABLE_VERSIONS))}"
        )
    try:
        if raw["version"] == 1:
            # One data dir for every tag, the ERRORS stream only.
            section = {"tags": _all_tags(settings), "root": "data", "files": raw.get("files")}
            raw = {**raw, "sections": [section]}
        manifest = BackupManifest.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"damaged backup manifest: {exc}") from exc
    manifest.check_paths()
    return manifest


def _all_tags(settings: Settings) -> list[str]:
    return [profile.tag for profile in settings.hosts.values()]


def _local_addresses() -> set[str]:
    return {a.address for addrs in psutil.net_if_addrs().values() for a in addrs}


def restore_tags(settings: Settings, hosts: Sequence[str] | None) -> list[str]:
    """The host tags whose sections this machine restores.

    ``hosts`` (host profile names) when given; else the profiles whose ``node_ip`` is an address
    of this machine; else every tag (the embedded single machine).

    Raises:
        ConfigError: ``hosts`` names a profile that does not exist.
    """
    if hosts:
        unknown = [h for h in hosts if h not in settings.hosts]
        if unknown:
            raise ConfigError(
                f"--host {unknown[0]!r} is not a host profile; choose from {sorted(settings.hosts)}"
            )
        return [settings.tag_of(h) for h in hosts]
    local = _local_addresses()
    mine = [p.tag for p in settings.hosts.values() if p.node_ip and p.node_ip in local]
    return mine or _all_tags(settings)


def _nats_host_tag(settings: Settings) -> str:
    """The host that re-publishes the streams: the embedded server's, else ErrorBus's."""
    host = settings.nats.host if settings.nats.url is None else settings.errors.host
    return settings.tag_of(host)


def _prepare(data_dir: Path, force: bool, progress: Progress) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    held = sorted(
        str(p.relative_to(data_dir))
        for p in data_dir.rglob("*")
        if p.relative_to(data_dir).parts[0] != "ray" and not p.is_dir()
    )
    if held and not force:
        shown = ", ".join(held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5 else "")
        raise ConfigError(
            f"{data_dir} already holds state ({shown}); restoring over it would mix old and "
            "restored state. Restore into an empty data dir, or pass --force to delete it first"
        )
    if held:
        with progress.step(f"Deleting the state in {data_dir} (--force)"):
            clear_state(data_dir)


def _write_files(data_dir: Path, root: Path, sections: list[HostSection]) -> int:
    """Copy each section's files into ``data_dir``; two sections may not disagree on a file."""
    source_of: dict[str, tuple[Path, list[str]]] = {}
    for section in sections:
        for rel in section.files:
            source = checked_path(root, section.root) / rel
            earlier, tags = source_of.setdefault(rel, (source, section.tags))
            if earlier != source and earlier.read_bytes() != source.read_bytes():
                raise ConfigError(
                    f"backup sections {tags} and {section.tags} hold different copies of "
                    f"{rel}; restore each on its own machine (--host)"
                )
    for rel, (source, _) in source_of.items():
        target = checked_path(data_dir, rel)
        remove_side_files(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return len(source_of)


def _reset_error_index(data_dir: Path) -> None:
    from deployments.errors.index import ErrorIndex

    index = ErrorIndex(data_dir / ERRORS_INDEX)
    try:
        index.clear_events()
    finally:
        index.close()


def restore(
    settings: Settings,
    archive: Path,
    progress: Progress,
    *,
    hosts: Sequence[str] | None = None,
    force: bool = False,
) -> RestoreReport:
    """Restore this machine's sections of ``archive`` into ``settings.data_dir`` (stopped).

    Args:
        hosts: host profiles whose sections to restore (default: see :func:`restore_tags`).
        force: delete the state already in the data dir (all but Ray's temp dir) first.

    Raises:
        ClusterError: the system of this data dir is running (stop it with ``aisys down``).
        ConfigError: not an aisys backup, an unknown format version, an unsafe path, no
            section for this machine, or a data dir holding state without ``force``.
    """
    from cluster.ops.system import embedded_nats

    if ray_node_running(settings) or embedded_nats(settings).process() is not None:
        raise ClusterError(
            f"the system of {settings.data_dir} is running; stop it first with `aisys down`"
        )
    if not archive.is_file():
        raise ConfigError(f"backup {archive} does not exist")
    tags = restore_tags(settings, hosts)
    with tarfile.open(archive, "r:gz") as tar:
        manifest = _read_manifest(tar, settings)
        sections = [s for s in manifest.sections if set(s.tags) & set(tags)]
        if not sections:
            raise ConfigError(
                f"backup has no section for host tag(s) {tags}; its sections are "
                f"{[s.tags for s in manifest.sections]} (choose with --host)"
            )
        _prepare(settings.data_dir, force, progress)
        with tempfile.TemporaryDirectory(prefix="aisys-restore-") as tmp:
            # The "data" filter refuses absolute paths, links out of the tree and devices.
            tar.extractall(tmp, filter="data")
            root = Path(tmp)
            with progress.step(f"Restoring the state of host tag(s) {tags}"):
                count = _write_files(settings.data_dir, root, sections)
                if any(ERRORS_INDEX in s.files for s in sections):
                    _reset_error_index(settings.data_dir)
            streams: dict[str, int] = {}
            if _nats_host_tag(settings) in tags and manifest.streams:
                streams = republish_streams(
                    settings, root / "streams", list(manifest.streams), progress
                )
                progress.line("    " + ", ".join(f"{n}: {c} messages" for n, c in streams.items()))
    # An archive's members carry the modes of whoever packed it: keys and hashes are ours only.
    make_private(settings.data_dir, skip=(settings.ray_temp_dir,))
    return RestoreReport(sections=[s.tags for s in sections], files=count, streams=streams)
