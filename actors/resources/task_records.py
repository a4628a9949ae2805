"""The ResourceScheduler's task records, bounded: active tasks capped, finished ones retained.

Every task submitted (HTTP ``/resources/tasks`` or the legacy TaskScheduler and AsyncProcessor
ports) gets a record its submitter can poll. Without bounds an anonymous flood of legacy
``schedule_task`` requests grows them forever; so waiting or running tasks are capped at
``tasks_max_active`` (a new one beyond it is refused) and a finished record is kept for
``task_retention_s`` and among the ``tasks_kept`` most recently finished.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

from actors.resources.models import TaskStatus
from cluster.base.errors import QuotaExceeded, TaskNotFound

__all__ = ["TaskRecords"]


class TaskRecords:
    """Task records by id.

    Args:
        max_active: most tasks waiting or running at once.
        kept: most finished records kept.
        retention_s: how long a finished record is kept.
        clock: seconds since the epoch (``finished_at`` is on the same clock).
    """

    def __init__(
        self, max_active: int, kept: int, retention_s: float, clock: Callable[[], float]
    ) -> None:
        self._max_active = max_active
        self._kept = kept
        self._retention_s = retention_s
        self._clock = clock
        self._active: dict[str, TaskStatus] = {}
        self._finished: collections.OrderedDict[str, TaskStatus] = collections.OrderedDict()

    def __len__(self) -> int:
        self._prune()
        return len(self._active) + len(self._finished)

    @property
    def active(self) -> int:
        return len(self._active)

    def check_room(self) -> None:
        """Raise :class:`QuotaExceeded` when no new task may start waiting or running."""
        if len(self._active) >= self._max_active:
            raise QuotaExceeded(
                f"{len(self._active)} tasks are waiting or running",
                self._max_active,
                "AISYS_RESOURCES__TASKS_MAX_ACTIVE",
            )

    def __contains__(self, task_id: str) -> bool:
        self._prune()
        return task_id in self._active or task_id in self._finished

    def __getitem__(self, task_id: str) -> TaskStatus:
        """The record; raises :class:`TaskNotFound` (never known, or aged out)."""
        self._prune()
        status = self._active.get(task_id) or self._finished.get(task_id)
        if status is None:
            raise TaskNotFound(task_id)
        return status

    def __setitem__(self, task_id: str, status: TaskStatus) -> None:
        if status.finished_at is None:
            self._active[task_id] = status
            return
        self._active.pop(task_id, None)
        self._finished[task_id] = status
        self._finished.move_to_end(task_id)
        self._prune()

    def _prune(self) -> None:
        while len(self._finished) > self._kept:
            self._finished.popitem(last=False)
        oldest_kept = self._clock() - self._retention_s
        while self._finished:
            first = next(iter(self._finished.values()))
            if first.finished_at is not None and first.finished_at >= oldest_kept:
                break
            self._finished.popitem(last=False)
