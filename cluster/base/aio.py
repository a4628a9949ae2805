"""What every service's ``close``/``stop`` does with its background tasks: cancel, then await.

Example::

    async def close(self) -> None:
        await cancel_and_wait(self._tasks)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

__all__ = ["cancel_and_wait"]

logger = logging.getLogger(__name__)


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any] | None]) -> None:
    """Cancel every task not done yet (None entries are skipped), then wait until all ended.

    Each task's end is awaited even when another one failed; a task that had failed with an
    exception before it was cancelled is logged with its traceback, not raised, so a closing
    service always gets to release what it holds after its tasks.
    """
    pending = [task for task in tasks if task is not None]
    for task in pending:
        task.cancel()
    for outcome, task in zip(
        await asyncio.gather(*pending, return_exceptions=True), pending, strict=True
    ):
        if isinstance(outcome, Exception):
            logger.warning("background task %r had failed", task, exc_info=outcome)
