"""``make gpu-check`` where there is nothing to check: no driver, or a driver with no device.

Both run against the NVML double (a host missing from its table has no driver), so they pass
the same on a machine with a GPU; the branch with a device needs a real GPU (``make gpu-check``).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from actors.probe.nvml import NVML_DOUBLE_ENV
from actors.probe.nvml_double import NvmlDouble
from cluster.ops.gpu_check import main


def _table(tmp_path: Path) -> Path:
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"hosts": {"empty": {"devices": []}}}))
    return path


def test_without_a_driver_it_says_so_and_exits_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(NVML_DOUBLE_ENV, str(_table(tmp_path)))
    out = io.StringIO()
    assert main([], library=NvmlDouble(_table(tmp_path), host="no-driver"), out=out) == 0
    assert out.getvalue().splitlines() == [
        f"{NVML_DOUBLE_ENV} ignored: gpu-check reads the real NVIDIA driver",
        "no NVIDIA driver here (NVML: Driver Not Loaded); nothing to check",
    ]


def test_a_driver_without_devices_has_nothing_to_lease(tmp_path: Path) -> None:
    out = io.StringIO()
    assert main(["--vram-mb", "64"], library=NvmlDouble(_table(tmp_path), "empty"), out=out) == 0
    assert out.getvalue().splitlines() == [
        "NVML reports 0 GPU",
        "nothing to lease (NVML sees no devices)",
    ]
