"""A state actor whose SQLite file cannot be opened stays up and answers with why.

Raising from a detached actor's constructor gives no better outcome: the actor is dead or
re-created again and again, and its callers see "actor died" instead of which file is broken
and what to do. So the actor keeps :class:`Unusable` in place of its core, and every call that
reaches the core raises the :class:`~cluster.errors.DatabaseUnusable` (HTTP 503 through a
Serve route, the message in the feed followers' logs) until the file is restored or moved
aside and aisys is restarted.
"""

from __future__ import annotations

import logging
from typing import Any

from cluster.errors import StorageError

__all__ = ["Unusable"]

logger = logging.getLogger(__name__)


class Unusable:
    """Stands in for a core: reading any attribute raises ``error``."""

    def __init__(self, error: StorageError) -> None:
        logger.error("%s", error)
        self.error = error

    def __getattr__(self, name: str) -> Any:
        raise self.error
