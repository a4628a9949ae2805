"""HostSampler: feeds the digital twin from each host's probe actor, every ``sample_interval_s``.

Each host tag has its own probe actor pinned to that host (see :mod:`actors.probe.actor`), so
the CPU, memory, disk and GPU figures of a host are measured on that host. In the same round the
ResourceScheduler's lease list gives the twin each lease's leased vs measured VRAM.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import ray

from actors.calls import Call
from actors.probe.client import HostProbeClient
from actors.probe.models import HostReading
from actors.probe.system import SystemReading
from actors.resources.client import ResourcesClient
from actors.resources.models import LeaseList
from cluster.base.settings import TwinSettings
from deployments.core.twin import DigitalTwin

__all__ = ["HostSampler", "scheduler_leases"]

logger = logging.getLogger(__name__)


def scheduler_leases() -> Call[LeaseList]:
    """The running ResourceScheduler's leases (ValueError: none runs yet)."""
    return ResourcesClient.named().list_leases()


class HostSampler:
    """Polls the probe actors of every host tag of ``twin``.

    Args:
        twin: where readings go.
        probes: host tag -> probe actor handle.
        settings: the ``core.twin`` section.
        disk_path: the path whose filesystem's use is reported (the data dir).
        leases: the ResourceScheduler's lease list (with its usage report); None: not read.
    """

    def __init__(
        self,
        twin: DigitalTwin,
        probes: dict[str, Any],
        settings: TwinSettings,
        disk_path: str,
        leases: Callable[[], Awaitable[LeaseList]] | None = None,
    ) -> None:
        self._twin = twin
        self._probes = probes
        self._settings = settings
        self._disk_path = disk_path
        self._leases = leases

    async def run(self) -> None:
        while True:
            await self.sample_once()
            await asyncio.sleep(self._settings.sample_interval_s)

    async def sample_once(self) -> None:
        probes = (self._sample(tag, probe) for tag, probe in self._probes.items())
        await asyncio.gather(*probes, self._sample_usage())

    async def _sample_usage(self) -> None:
        if self._leases is None:
            return
        try:
            leases = await asyncio.wait_for(self._leases(), self._settings.probe_timeout_s)
        except (TimeoutError, ValueError, ray.exceptions.RayError) as exc:
            # ValueError: no ResourceScheduler actor (its application is not deployed yet).
            logger.debug("the ResourceScheduler's leases are unavailable: %s", exc)
            self._twin.record_usage(None, f"ResourceScheduler did not answer: {type(exc).__name__}")
            return
        if leases.usage is None:
            self._twin.record_usage(None, "the ResourceScheduler measured no usage")
        else:
            self._twin.record_usage(leases.usage)

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
