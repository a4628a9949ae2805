"""RegistryFollower: a local :class:`RegistryView` kept current from the registry actor."""

from __future__ import annotations

from typing import Any

from actors.follower import FeedFollower
from actors.registry.models import ChangeFeed
from actors.registry.view import RegistryView

__all__ = ["RegistryFollower"]


class RegistryFollower(FeedFollower[ChangeFeed]):
    """Follows the registry actor; read lookups from :attr:`view`."""

    def __init__(self, registry: Any, poll_timeout_s: float = 10.0) -> None:
        super().__init__(registry, poll_timeout_s)
        self.view = RegistryView()

    @property
    def version(self) -> int:
        return self.view.version

    def apply(self, feed: ChangeFeed) -> None:
        self.view.apply_feed(feed)
