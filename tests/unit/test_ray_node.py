"""Starting a Ray node refuses settings that cannot work, before running anything."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cluster.base.errors import ConfigError
from cluster.base.settings import load_settings
from cluster.ops._ray_node import ensure_ray_token, read_ray_token, start_ray_node


def test_long_ray_temp_dir_is_refused_with_the_fix(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / ("x" * 60))
    with pytest.raises(ConfigError, match="AISYS_RAY__TEMP_DIR"):
        start_ray_node(settings, ["mainpc"], head=True)


def test_worker_without_token_is_told_where_to_get_it(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, ray={"temp_dir": "/tmp/aisys-unit"})
    with pytest.raises(ConfigError, match="copy .*ray_token from the head"):
        start_ray_node(settings, ["pc2"], head=False, address="10.0.0.1:6380")


def test_token_is_generated_once_with_owner_only_permissions(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    assert read_ray_token(settings) is None
    token = ensure_ray_token(settings)
    assert len(token) == 64
    assert ensure_ray_token(settings) == token
    mode = stat.S_IMODE(os.stat(settings.ray_token_path).st_mode)
    assert mode == 0o600
