"""A restore reads the archive's manifest first and refuses anything it does not understand."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from cluster._progress import Progress
from cluster.backup import BACKUP_VERSION, restore
from cluster.errors import ConfigError
from cluster.settings import load_settings


def _archive(path: Path, manifest: dict[str, object] | None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        if manifest is not None:
            data = json.dumps(manifest).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (None, "has no manifest.json"),
        ({"format": "zip", "version": 1}, "not 'aisys-backup'"),
        (
            {"format": "aisys-backup", "version": BACKUP_VERSION + 98},
            f"version {BACKUP_VERSION + 98} is not supported: this aisys reads version",
        ),
    ],
)
def test_unknown_or_foreign_archives_fail_clearly_and_change_nothing(
    tmp_path: Path, manifest: dict[str, object] | None, message: str
) -> None:
    settings = load_settings(data_dir=tmp_path / "data", ray={"temp_dir": str(tmp_path / "r")})
    with pytest.raises(ConfigError, match=message):
        restore(settings, _archive(tmp_path / "b.tar.gz", manifest), Progress(quiet=True))
    assert not (tmp_path / "data").exists()


def test_missing_archive_is_named(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data", ray={"temp_dir": str(tmp_path / "r")})
    with pytest.raises(ConfigError, match="does not exist"):
        restore(settings, tmp_path / "nope.tar.gz", Progress(quiet=True))
