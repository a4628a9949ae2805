"""LogShipperClient: typed calls of one host's log shipper actor."""

from __future__ import annotations

from typing import Any

from actors.calls import Call
from actors.logship.models import ShipperStats
from cluster.base.settings import LogShippingSettings

__all__ = ["LogShipperClient"]


class LogShipperClient:
    """The shipper actor's calls, typed (its handle:
    :func:`actors.logship.actor.get_or_create_log_shipper`)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def sync(self, settings: LogShippingSettings) -> Call[ShipperStats]:
        """Hand the shipper the current settings; its counters."""
        return Call(self.handle.sync.remote(settings))
