"""A data dir is owner-only: directories 0700, files 0600, links and sockets left alone."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

from cluster.base.files import make_private


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_an_open_tree_becomes_owner_only_and_a_second_pass_changes_nothing(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    (data / "keys").mkdir(parents=True, mode=0o755)
    (data / "keys").chmod(0o755)  # as KeyRing's exist_ok mkdir leaves an old directory
    (data / "keys" / "signing.pem").write_text("secret")
    (data / "security.sqlite3").write_text("hashes")
    for path in (data, data / "keys" / "signing.pem", data / "security.sqlite3"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    outside = tmp_path / "shared.txt"
    outside.write_text("not ours")
    outside.chmod(0o644)
    (data / "link").symlink_to(outside)

    assert make_private(data) == 4

    assert _mode(data) == 0o700 and _mode(data / "keys") == 0o700
    assert _mode(data / "keys" / "signing.pem") == 0o600
    assert _mode(data / "security.sqlite3") == 0o600
    assert _mode(outside) == 0o644  # a link's target is not the data dir's
    assert make_private(data) == 0


def test_a_skipped_directory_is_closed_but_not_walked(tmp_path: Path) -> None:
    ray = tmp_path / "ray" / "session_latest"
    ray.mkdir(parents=True)
    (tmp_path / "ray").chmod(0o755)
    log = ray / "raylet.out"
    log.write_text("x")
    log.chmod(0o644)
    sock = ray / "raylet.sock"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(sock))
        make_private(tmp_path, skip=(tmp_path / "ray",))
    finally:
        server.close()

    assert _mode(tmp_path / "ray") == 0o700
    assert _mode(log) == 0o644


def test_a_missing_root_changes_nothing(tmp_path: Path) -> None:
    assert make_private(tmp_path / "nope") == 0
    assert not os.path.exists(tmp_path / "nope")
