"""The one place that chooses what answers NVML calls: the driver, or the NVML test double.

Settings ``resources.nvml_double`` (a device-table path) reaches every Ray process of a node as
the environment variable ``AISYS_RESOURCES__NVML_DOUBLE`` (``cluster.ops._ray_node.ray_env`` sets it
from Settings); where it is set, :func:`nvml` returns an
:class:`~actors.probe.nvml_double.NvmlDouble` for the host this process probes, otherwise the
real ``pynvml`` module. The probe code calls ``nvml().nvmlInit()`` and so on either way, and
labels what the double reports ``nvml-double``: its devices never pass for real ones.

Example::

    bind_host("pc2")            # the probe actor of host pc2 does this once
    nvml().nvmlDeviceGetCount()
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

import pynvml

from actors.probe.nvml_double import NvmlDouble

__all__ = ["NVML_DOUBLE_ENV", "bind_host", "double_table", "nvml"]

#: The Settings field ``resources.nvml_double`` as an environment variable.
NVML_DOUBLE_ENV: Final = "AISYS_RESOURCES__NVML_DOUBLE"

_host: str | None = None
_doubles: dict[tuple[str, str | None], NvmlDouble] = {}


def bind_host(tag: str) -> None:
    """Name the host tag this process probes (the double answers for that host's devices)."""
    global _host
    _host = tag


def double_table() -> Path | None:
    """The NVML double's device table when one is selected, else None (the real driver)."""
    value = os.environ.get(NVML_DOUBLE_ENV, "").strip()
    return Path(value) if value else None


def nvml() -> Any:
    """``pynvml``, or the NVML double for this process's host when Settings select it."""
    table = double_table()
    if table is None:
        return pynvml
    key = (str(table), _host)
    double = _doubles.get(key)
    if double is None:
        double = _doubles[key] = NvmlDouble(table, _host)
    return double
