"""RegistryFollower: a local :class:`RegistryView` kept current from the registry actor."""

from __future__ import annotations

from typing import Any

from actors.follower import FeedFollower
from actors.registry.models import ChangeFeed
from actors.registry.view import RegistryView

__all__ = ["RegistryFollower"]


#: The least time between two polls of the registry's feed. Every registry replica (core,
#: both legacy gateways, the hub) follows the feed; under a burst of registrations this turns a
#: poll per change per follower into one per 20 ms, well inside the 100 ms in which a
#: registration must be visible on every host.
MIN_POLL_INTERVAL_S = 0.02


class RegistryFollower(FeedFollower[ChangeFeed]):
    """Follows the registry actor; read lookups from :attr:`view`."""

    def __init__(
        self,
        registry: Any,
        poll_timeout_s: float = 10.0,
        min_interval_s: float = MIN_POLL_INTERVAL_S,
    ) -> None:
        super().__init__(registry, poll_timeout_s, min_interval_s=min_interval_s)
        self.view = RegistryView()

    @property
    def version(self) -> int:
        return self.view.version

    def apply(self, feed: ChangeFeed) -> None:
        self.view.apply_feed(feed)
