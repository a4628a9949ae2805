"""A restore reads the manifest first, refuses what it does not understand or trust, and writes
only this machine's sections into a data dir that holds no other state."""

from __future__ import annotations

import io
import json
import sqlite3
import tarfile
from pathlib import Path
from typing import Any

import pytest

from actors.errors.models import ErrorEvent, StoredEvent
from cluster.base.errors import ClusterError, ConfigError
from cluster.base.settings import Settings, load_settings
from cluster.ops._backup_files import RayNode, collect_host_state, tags_by_node
from cluster.ops._progress import Progress
from cluster.ops.backup import BACKUP_VERSION, restore, restore_tags
from deployments.errors.index import ErrorIndex

QUIET = Progress(quiet=True)


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data", ray={"temp_dir": str(tmp_path / "r")}, **overrides
    )


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _archive(path: Path, manifest: dict[str, Any] | None, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        if manifest is not None:
            _add(tar, "manifest.json", json.dumps(manifest).encode())
        for name, data in files.items():
            _add(tar, name, data)
    return path


def _two_host_archive(
    path: Path, extra: dict[str, bytes] | None = None, streams: dict[str, int] | None = None
) -> Path:
    """A v2 archive of two nodes: the registry on mainpc, security and resources on pc2."""
    sections = [
        {"tags": ["mainpc"], "root": "hosts/mainpc/data", "files": ["registry.sqlite3", "tok"]},
        {
            "tags": ["pc2"],
            "root": "hosts/pc2/data",
            "files": ["security.sqlite3", "security/keys/k1.pem", "tok"],
        },
    ]
    manifest = {"format": "aisys-backup", "version": 2, "created_at": 1.0, "sections": sections}
    files = {
        "hosts/mainpc/data/registry.sqlite3": b"registry",
        "hosts/mainpc/data/tok": b"token",
        "hosts/pc2/data/security.sqlite3": b"security",
        "hosts/pc2/data/security/keys/k1.pem": b"key",
        "hosts/pc2/data/tok": b"token",
        **(extra or {}),
    }
    # A restore on the NATS host with streams listed starts nats-server: not in unit tests.
    return _archive(path, {**manifest, "streams": streams or {}}, files)


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (None, "has no manifest.json"),
        ({"format": "zip", "version": 1}, "not 'aisys-backup'"),
        (
            {"format": "aisys-backup", "version": BACKUP_VERSION + 98},
            f"version {BACKUP_VERSION + 98} is not supported: this aisys reads version 1, 2",
        ),
    ],
)
def test_unknown_or_foreign_archives_fail_clearly_and_change_nothing(
    tmp_path: Path, manifest: dict[str, Any] | None, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        restore(_settings(tmp_path), _archive(tmp_path / "b.tar.gz", manifest, {}), QUIET)
    assert not (tmp_path / "data").exists()


def test_missing_archive_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        restore(_settings(tmp_path), tmp_path / "nope.tar.gz", QUIET)


@pytest.mark.parametrize(
    ("root", "files", "bad"),
    [
        ("hosts/pc2/data", ["/etc/passwd"], "'/etc/passwd' must be a relative path"),
        ("hosts/pc2/data", ["security/../../../x"], "'security/../../../x' must be a relative"),
        ("../outside", ["a"], "'../outside' must be a relative path"),
        ("hosts/pc2/data", [""], "'' must be a relative path"),
    ],
)
def test_manifest_paths_outside_the_data_dir_are_refused(
    tmp_path: Path, root: str, files: list[str], bad: str
) -> None:
    section = {"tags": ["mainpc", "pc2"], "root": root, "files": files}
    manifest = {
        "format": "aisys-backup",
        "version": 2,
        "created_at": 1.0,
        "sections": [section],
        "streams": {},
    }
    archive = _archive(tmp_path / "b.tar.gz", manifest, {"hosts/pc2/data/a": b"a"})
    with pytest.raises(ConfigError, match=f"damaged backup manifest: entry {bad}"):
        restore(_settings(tmp_path), archive, QUIET)
    assert not (tmp_path / "data").exists()


def test_an_entry_through_a_link_out_of_the_data_dir_is_refused(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    settings.data_dir.mkdir()
    (settings.data_dir / "ray").symlink_to(tmp_path)  # ray/ is not state: no --force needed
    section = {"tags": ["mainpc", "pc2"], "root": "data", "files": ["ray/escaped"]}
    manifest = {
        "format": "aisys-backup",
        "version": 2,
        "created_at": 1.0,
        "sections": [section],
        "streams": {},
    }
    archive = _archive(tmp_path / "b.tar.gz", manifest, {"data/ray/escaped": b"x"})
    with pytest.raises(ConfigError, match="resolves to .* outside"):
        restore(settings, archive, QUIET)
    assert not (tmp_path / "escaped").exists()


def test_each_machine_restores_only_the_sections_of_its_host_tags(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    archive = _two_host_archive(tmp_path / "b.tar.gz", streams={"ERRORS": 0})

    report = restore(settings, _two_host_archive(tmp_path / "c.tar.gz"), QUIET, hosts=["pc2"])

    data = settings.data_dir
    assert report.sections == [["pc2"]] and report.files == 3
    assert (data / "security.sqlite3").read_bytes() == b"security"
    assert (data / "security" / "keys" / "k1.pem").read_bytes() == b"key"
    assert not (data / "registry.sqlite3").exists()
    # Only the NATS host (pc2 by default) re-publishes; mainpc never touches the streams.
    main = _settings(tmp_path / "main")
    assert restore(main, archive, QUIET, hosts=["mainpc"]).streams == {}
    assert sorted(p.name for p in main.data_dir.iterdir()) == ["registry.sqlite3", "tok"]


def test_two_sections_on_one_machine_may_share_only_identical_files(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    report = restore(
        settings, _two_host_archive(tmp_path / "a.tar.gz"), QUIET, hosts=["mainpc", "pc2"]
    )
    assert report.files == 4  # tok is in both sections, with the same bytes
    clash = _two_host_archive(tmp_path / "b.tar.gz", {"hosts/pc2/data/tok": b"other"})
    with pytest.raises(ConfigError, match=r"\['mainpc'\] and \['pc2'\] hold different copies"):
        restore(_settings(tmp_path / "2"), clash, QUIET, hosts=["mainpc", "pc2"])


def test_the_default_host_is_the_profile_whose_node_ip_is_this_machine(tmp_path: Path) -> None:
    embedded = _settings(tmp_path)
    assert restore_tags(embedded, None) == ["mainpc", "pc2"]
    worker = _settings(tmp_path, hosts={"pc2": {"node_ip": "127.0.0.1"}})
    assert restore_tags(worker, None) == ["pc2"]
    assert restore_tags(worker, ["mainpc"]) == ["mainpc"]
    with pytest.raises(ConfigError, match="--host 'pc3' is not a host profile"):
        restore_tags(worker, ["pc3"])


def test_a_data_dir_holding_state_is_refused_without_force(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    data = settings.data_dir
    (data / "ray").mkdir(parents=True)
    (data / "ray" / "session").write_text("kept")
    (data / "stray.sqlite3").write_text("old")
    (data / "security.sqlite3-wal").write_text("old wal")
    (data / "security.sqlite3-journal").write_text("old journal")
    (data / "nats" / "jetstream").mkdir(parents=True)
    archive = _two_host_archive(tmp_path / "b.tar.gz")

    with pytest.raises(ConfigError, match="already holds state .* pass --force"):
        restore(settings, archive, QUIET, hosts=["pc2"])
    assert (data / "stray.sqlite3").read_text() == "old"

    restore(settings, archive, QUIET, hosts=["pc2"], force=True)
    assert sorted(str(p.relative_to(data)) for p in data.rglob("*")) == [
        "ray",
        "ray/session",
        "security",
        "security.sqlite3",
        "security/keys",
        "security/keys/k1.pem",
        "tok",
    ]


def test_a_version_1_archive_is_one_section_for_every_tag(tmp_path: Path) -> None:
    manifest = {
        "format": "aisys-backup",
        "version": 1,
        "created_at": 1.0,
        "files": ["registry.sqlite3", "security.sqlite3"],
        "streams": {"ERRORS": 0},
    }
    files = {"data/registry.sqlite3": b"r", "data/security.sqlite3": b"s"}
    settings = _settings(tmp_path)
    report = restore(
        settings, _archive(tmp_path / "v1.tar.gz", manifest, files), QUIET, hosts=["mainpc"]
    )
    assert report.sections == [["mainpc", "pc2"]]
    assert (settings.data_dir / "security.sqlite3").read_bytes() == b"s"


def test_restore_empties_the_error_index_but_keeps_its_import_record(tmp_path: Path) -> None:
    source = tmp_path / "src" / "index.sqlite3"
    index = ErrorIndex(source)
    event = ErrorEvent.model_validate({"agent": "a", "message": "m", "severity": "error"})
    index.add([StoredEvent(seq=7, event=event)])
    index.remember_imported(["legacy-1"], 1.0)
    index.close()
    section = {"tags": ["pc2"], "root": "hosts/pc2/data", "files": ["errors/index.sqlite3"]}
    manifest = {
        "format": "aisys-backup",
        "version": 2,
        "created_at": 1.0,
        "sections": [section],
        "streams": {},
    }
    files = {"hosts/pc2/data/errors/index.sqlite3": source.read_bytes()}
    settings = _settings(tmp_path)

    restore(settings, _archive(tmp_path / "b.tar.gz", manifest, files), QUIET, hosts=["pc2"])

    restored = ErrorIndex(settings.data_dir / "errors" / "index.sqlite3")
    try:
        assert len(restored) == 0
        assert restored.known_ids(["legacy-1", event.id]) == {"legacy-1"}
    finally:
        restored.close()


def test_a_host_reads_its_databases_and_files_but_not_ray_or_nats(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "ray").mkdir(parents=True)
    (data / "ray" / "log").write_text("not state")
    (data / "nats").mkdir()
    (data / "nats" / "blk").write_text("exported as messages")
    (data / "security" / "keys").mkdir(parents=True)
    (data / "security" / "keys" / "k.pem").write_bytes(b"pem")
    db = sqlite3.connect(data / "security.sqlite3")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (v TEXT)")
    db.execute("INSERT INTO t VALUES ('in the wal')")
    db.commit()  # left open: the row sits in security.sqlite3-wal

    state = collect_host_state(str(data))
    db.close()

    files = {f.path: f.data for f in state.files}
    assert sorted(files) == ["security.sqlite3", "security/keys/k.pem"]
    copy = tmp_path / "copy.sqlite3"
    copy.write_bytes(files["security.sqlite3"])
    assert sqlite3.connect(copy).execute("SELECT v FROM t").fetchall() == [("in the wal",)]


def _node(node_id: str, alive: bool, **tags: float) -> RayNode:
    return RayNode.model_validate(
        {"NodeID": node_id, "Alive": alive, "Resources": {"CPU": 2.0, **tags}}
    )


def test_tags_on_one_node_are_read_once_and_a_missing_tag_is_named(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert tags_by_node(settings, [_node("a", True, mainpc=1, pc2=1)]) == [["mainpc", "pc2"]]
    two = [_node("a", True, mainpc=1), _node("b", True, pc2=1), _node("c", False, pc2=1)]
    assert tags_by_node(settings, two) == [["mainpc"], ["pc2"]]
    with pytest.raises(ClusterError, match="no live node carries host tag 'pc2'"):
        tags_by_node(settings, [_node("a", True, mainpc=1), _node("b", False, pc2=1)])
