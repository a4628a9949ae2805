"""A state actor whose SQLite file cannot be opened stays up and answers with why.

Raising from the constructor does not help: Ray 2.60 marks an actor whose constructor raises
DEAD at once (``max_restarts`` does not apply), its callers get ``ActorDiedError`` (which the
HTTP layer reports as "a state actor is restarting or unreachable; retry shortly"), and the
next ``get_or_create_*`` creates it again, to fail the same way. So the actor keeps
:class:`Unusable` in place of its core, and every call that reaches the core raises the
:class:`~cluster.base.errors.DatabaseUnusable` (HTTP 503 naming the file and the fix through a
Serve route, the message in the feed followers' logs) until the file is restored or moved
aside and aisys is restarted.
"""

from __future__ import annotations

import logging
from typing import Any

from cluster.base.errors import StorageError

__all__ = ["Unusable"]

logger = logging.getLogger(__name__)


class Unusable:
    """Stands in for a core: reading any attribute raises ``error``."""

    def __init__(self, error: StorageError) -> None:
        logger.error("%s", error)
        self.error = error

    def __getattr__(self, name: str) -> Any:
        raise self.error
