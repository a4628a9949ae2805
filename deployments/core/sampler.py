"""HostSampler: feeds the digital twin from each host's probe actor, every ``sample_interval_s``.

Each host tag has its own probe actor pinned to that host (see :mod:`actors.probe.actor`), so
the CPU, memory, disk and GPU figures of a host are measured on that host.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray

from actors.probe.client import HostProbeClient
from actors.probe.models import HostReading
from actors.probe.system import SystemReading
from cluster.base.settings import TwinSettings
from deployments.core.twin import DigitalTwin

__all__ = ["HostSampler"]

logger = logging.getLogger(__name__)


class HostSampler:
    """Polls the probe actors of every host tag of ``twin``.

    Args:
        twin: where readings go.
        probes: host tag -> probe actor handle.
        settings: the ``core.twin`` section.
        disk_path: the path whose filesystem's use is reported (the data dir).
    """

    def __init__(
        self, twin: DigitalTwin, probes: dict[str, Any], settings: TwinSettings, disk_path: str
    ) -> None:
        self._twin = twin
        self._probes = probes
        self._settings = settings
        self._disk_path = disk_path

    async def run(self) -> None:
        while True:
            await self.sample_once()
            await asyncio.sleep(self._settings.sample_interval_s)

    async def sample_once(self) -> None:
        await asyncio.gather(*(self._sample(tag, probe) for tag, probe in self._probes.items()))

    async def _sample(self, tag: str, probe: HostProbeClient) -> None:
        timeout = self._settings.probe_timeout_s
        try:
            reading: HostReading = await asyncio.wait_for(probe.read(), timeout)
        except (TimeoutError, ray.exceptions.RayError) as exc:
            logger.warning("probe of host %s did not answer: %s", tag, exc)
            self._twin.record_error(tag, f"probe did not answer: {type(exc).__name__}")
            return
        system: SystemReading | None
        try:
            system = await asyncio.wait_for(probe.system(self._disk_path), timeout)
        except (TimeoutError, AttributeError, ray.exceptions.RayError) as exc:
            # AttributeError: a probe actor started by an older release has no system().
            logger.warning("system facts of host %s unavailable: %s", tag, exc)
            system = None
        self._twin.record(reading, system)
