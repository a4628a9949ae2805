"""The hub's side of log shipping: one shipper actor per machine, sampled every round.

Created when the hub starts (:func:`~actors.logship.actor.shipper_hosts` picks one host tag per
Ray node). Each round :meth:`LogShippers.sample` hands every shipper the hub's settings and reads
its counters back; a shipper that does not answer in time is reported with ``error`` set, which
the exporter shows as ``aisys_log_shipper_up 0``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import RayError

from actors.logship.actor import get_or_create_log_shipper, shipper_hosts
from actors.logship.client import LogShipperClient
from actors.logship.models import ShipperStats
from cluster.base.nats_client import NatsClient
from cluster.base.settings import LogShippingSettings

__all__ = ["LogShippers"]


class LogShippers:
    """The log shipper actors of every machine.

    Args:
        settings: the log shipping section.
        tags: every host tag, in settings order.
        ray_temp_dir: Ray's temp dir (the same path on every host).
        broker: the broker of the ``LOGS`` stream and its credentials.
        data_dir: the data dir; positions go to ``<data_dir>/logship/<tag>.sqlite3``.
        timeout_s: how long a round waits for a shipper.
    """

    def __init__(
        self,
        settings: LogShippingSettings,
        tags: list[str],
        ray_temp_dir: str,
        broker: NatsClient,
        data_dir: Path,
        timeout_s: float,
    ) -> None:
        self._settings = settings
        self._timeout_s = timeout_s
        nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
        self._actors = {
            tag: LogShipperClient(
                get_or_create_log_shipper(
                    tag, settings, ray_temp_dir, broker, data_dir / "logship" / f"{tag}.sqlite3"
                )
            )
            for tag in shipper_hosts(tags, nodes)
        }

    async def sample(self) -> list[ShipperStats]:
        """Every shipper's counters (after handing it the current settings)."""
        return list(await asyncio.gather(*(self._sync(t, a) for t, a in self._actors.items())))

    async def _sync(self, tag: str, actor: LogShipperClient) -> ShipperStats:
        try:
            stats: ShipperStats = await asyncio.wait_for(
                actor.sync(self._settings), self._timeout_s
            )
        except (RayError, TimeoutError) as exc:
            reason = f"log shipper of host {tag!r} failed: {type(exc).__name__}: {exc}"
            return ShipperStats(host=tag, connected=False, error=reason[:1000])
        return stats
