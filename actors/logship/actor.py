"""The per-host log shipper actor: one per machine, pinned by its host tag, shipping forever.

The ObservabilityHub creates one for each machine at start (:func:`shipper_hosts` picks one tag
per Ray node, so the embedded single node, which carries every tag, ships each file once) and
calls :meth:`LogShipperActor.sync` every round: it hands over the hub's current settings (a
detached actor outlives redeploys, and a restarted one re-runs its constructor with the first
arguments) and reads the counters back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import ray

from actors._singleton import singleton_options
from actors._unusable import Unusable
from actors.logship.models import ShipperStats
from actors.logship.publish import LogStream
from actors.logship.shipper import LogShipper
from actors.logship.store import PositionStore
from cluster.base.constants import log_shipper_actor_name
from cluster.base.errors import ClusterError, DatabaseUnusable
from cluster.base.nats_client import NatsClient
from cluster.base.settings import LogShippingSettings

__all__ = ["LogShipperActor", "get_or_create_log_shipper", "shipper_hosts"]

logger = logging.getLogger(__name__)


class LogShipperActor:
    """Ray actor running a :class:`LogShipper` on the host it is pinned to."""

    def __init__(
        self,
        host: str,
        settings: LogShippingSettings,
        ray_temp_dir: str,
        broker: NatsClient,
        db_path: str,
    ) -> None:
        stream = LogStream(broker, settings)
        self._task: asyncio.Task[None] | None = None
        try:
            store = PositionStore(Path(db_path))
        except DatabaseUnusable as exc:
            # Started, not shipping: every sync() raises the error naming the file and the fix.
            self._shipper = cast(LogShipper, Unusable(exc))
            return
        self._shipper = LogShipper(host, settings, Path(ray_temp_dir), store, stream)
        self._task = asyncio.get_running_loop().create_task(self._shipper.run())

    async def sync(self, settings: LogShippingSettings) -> ShipperStats:
        """Apply ``settings`` if they changed; return the counters.

        Raises:
            ClusterError: the shipping loop has stopped (its exception is chained).
            DatabaseUnusable: the positions file is not a usable database.
        """
        if self._task is None:
            await self._shipper.reconfigure(settings)  # raises the DatabaseUnusable
        elif self._task.done():
            raise ClusterError("logs: the log shipping loop has stopped") from (
                None if self._task.cancelled() else self._task.exception()
            )
        await self._shipper.reconfigure(settings)
        return self._shipper.stats()


def shipper_hosts(tags: Sequence[str], nodes: Iterable[Mapping[str, Any]]) -> list[str]:
    """The host tags that get a log shipper: the first of ``tags`` on each alive Ray node.

    Two tags on one node (the embedded default) share its files, so only one ships them. A tag
    no alive node carries keeps its shipper (it starts when its node joins).

    Args:
        tags: every host tag, in settings order.
        nodes: ``ray.nodes()``.
    """
    chosen: list[str] = []
    placed: set[str] = set()
    for node in nodes:
        if not node.get("Alive"):
            continue
        resources = node.get("Resources") or {}
        on_node = [tag for tag in tags if resources.get(tag, 0) > 0]
        placed.update(on_node)
        if on_node:
            chosen.append(on_node[0])
    chosen.extend(tag for tag in tags if tag not in placed)
    return sorted(chosen, key=list(tags).index)


def get_or_create_log_shipper(
    tag: str,
    settings: LogShippingSettings,
    ray_temp_dir: str,
    broker: NatsClient,
    db_path: Path,
) -> Any:
    """Return the log shipper actor of host ``tag``, creating it pinned to that host if absent.

    Args:
        tag: the Ray host tag; the actor asks for a sliver of it, so it runs on that host.
        settings: the log shipping section (later changes arrive through ``sync``).
        ray_temp_dir: Ray's temp dir on that host (``{ray_temp_dir}`` in globs).
        broker: the broker the ``LOGS`` stream lives in, and its credentials.
        db_path: SQLite file of the committed positions, on that host.
    """
    return (
        ray.remote(LogShipperActor)
        .options(**singleton_options(log_shipper_actor_name(tag), tag))
        .remote(tag, settings, ray_temp_dir, broker, str(db_path))
    )
