"""The state files of each host's data dir: read on that host's node, written back by restore.

On two machines every service writes under the same data-dir path, but on its own host's
disk: the SecurityGateway's database and keys on PC2, the registry on MainPC. So ``aisys
backup`` runs :func:`collect_host_state` as a Ray task pinned to each node by one of its host
tags; a node that carries several tags (the embedded default) is read once.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import ray
from pydantic import BaseModel, ConfigDict, Field
from ray.exceptions import GetTimeoutError, RayError

from cluster.base.errors import ClusterError, ConfigError
from cluster.base.settings import Settings
from cluster.ops.serve_config import PIN_FRACTION

__all__ = [
    "HostState",
    "RayNode",
    "StateFile",
    "checked_path",
    "clear_state",
    "collect_host_state",
    "collect_sections",
    "remove_side_files",
    "state_files",
    "tags_by_node",
]

_SQLITE_SUFFIXES = (".sqlite3", ".db")
#: SQLite's companions of a database file: folded in by the online backup, stale after restore.
_SIDE_SUFFIXES = ("-wal", "-shm", "-journal")
# Ray's temp dir is recreated at start; the NATS store is exported as messages instead.
_NOT_STATE = ("ray", "nats")
_COLLECT_TIMEOUT_S = 300.0


class StateFile(BaseModel):
    """One state file: its path relative to the data dir and its bytes."""

    path: str
    data: bytes


class HostState(BaseModel):
    """Every state file of one node's data dir."""

    files: list[StateFile]


class RayNode(BaseModel):
    """The part of a ``ray.nodes()`` entry the backup needs."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    node_id: str = Field(alias="NodeID")
    alive: bool = Field(alias="Alive")
    resources: dict[str, float] = Field(default_factory=dict, alias="Resources")


def state_files(data_dir: Path) -> list[Path]:
    """The files of ``data_dir`` a backup holds: not Ray's temp dir, the NATS store or journals."""
    files = []
    for path in sorted(data_dir.rglob("*")):
        rel = path.relative_to(data_dir)
        if rel.parts[0] in _NOT_STATE or not path.is_file():
            continue
        if path.name.endswith(_SIDE_SUFFIXES):
            continue
        files.append(path)
    return files


def _read_state(source: Path) -> bytes:
    if source.suffix not in _SQLITE_SUFFIXES:
        return source.read_bytes()
    # The online-backup API gives a consistent copy while the owning service writes.
    with tempfile.TemporaryDirectory(prefix="aisys-backup-") as tmp:
        copy = Path(tmp) / source.name
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        dst = sqlite3.connect(copy)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
        return copy.read_bytes()


def collect_host_state(data_dir: str) -> HostState:
    """Read every state file under ``data_dir`` on this node (the body of the Ray task)."""
    root = Path(data_dir)
    if not root.is_dir():
        return HostState(files=[])
    return HostState(
        files=[
            StateFile(path=path.relative_to(root).as_posix(), data=_read_state(path))
            for path in state_files(root)
        ]
    )


def tags_by_node(settings: Settings, nodes: Sequence[RayNode]) -> list[list[str]]:
    """Group the host tags of ``settings`` by the live node carrying them.

    Raises:
        ClusterError: a host tag is carried by no live node, or by two.
    """
    tags = [profile.tag for profile in settings.hosts.values()]
    groups = []
    for node in nodes:
        carried = [tag for tag in tags if node.alive and node.resources.get(tag, 0) > 0]
        if carried:
            groups.append(carried)
    for tag in tags:
        count = sum(tag in group for group in groups)
        if count == 0:
            raise ClusterError(
                f"backup: no live node carries host tag '{tag}', so its state cannot be read; "
                "start that host's node (`aisys up`) and run the backup again"
            )
        if count > 1:
            raise ClusterError(f"backup: host tag '{tag}' is carried by {count} live nodes")
    return groups


def collect_sections(settings: Settings) -> list[tuple[list[str], HostState]]:
    """Run :func:`collect_host_state` once per node, pinned by that node's first host tag.

    Raises:
        ClusterError: a host tag has no node, or a node did not answer in time.
    """
    nodes = [RayNode.model_validate(n) for n in ray.nodes()]  # type: ignore[no-untyped-call]
    groups = tags_by_node(settings, nodes)
    task = ray.remote(collect_host_state)
    refs = [
        task.options(num_cpus=0, resources={tags[0]: PIN_FRACTION}).remote(str(settings.data_dir))
        for tags in groups
    ]
    try:
        states: list[HostState] = ray.get(refs, timeout=_COLLECT_TIMEOUT_S)
    except GetTimeoutError as exc:
        raise ClusterError(
            f"backup: a host did not send its state files within {_COLLECT_TIMEOUT_S:.0f}s"
        ) from exc
    except RayError as exc:
        raise ClusterError(f"backup: reading a host's state files failed: {exc}") from exc
    return list(zip(groups, states, strict=True))


def checked_path(base: Path, rel: str) -> Path:
    """``base / rel``, refusing a manifest entry that could land outside ``base``.

    Raises:
        ConfigError: ``rel`` is empty, absolute, contains ``..`` or resolves outside ``base``.
    """
    pure = PurePosixPath(rel)
    if not rel or pure.is_absolute() or ".." in pure.parts or pure == PurePosixPath("."):
        raise ConfigError(
            f"damaged backup manifest: entry {rel!r} must be a relative path inside the data "
            "dir, without '..'"
        )
    target = base / pure
    if not target.resolve().is_relative_to(base.resolve()):
        raise ConfigError(
            f"damaged backup manifest: entry {rel!r} resolves to {target.resolve()}, outside {base}"
        )
    return target


def remove_side_files(database: Path) -> None:
    """Delete the journal, WAL and shared-memory files of ``database``, if any."""
    for suffix in _SIDE_SUFFIXES:
        Path(f"{database}{suffix}").unlink(missing_ok=True)


def clear_state(data_dir: Path) -> int:
    """Delete everything in ``data_dir`` except Ray's temp dir; return how many entries went."""
    count = 0
    for entry in sorted(data_dir.iterdir()):
        if entry.name == "ray":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        count += 1
    return count
