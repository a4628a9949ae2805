"""The legacy priority formula and the bounded priority queue of the request coordinator.

Priority (lower is sooner) is exactly the legacy RequestCoordinator's: a base by request type,
a user-type adjustment (only when the request names a ``user_id``), an urgency adjustment, one
point of load penalty when the queue is more than 80 % full, clamped to 1..10. Equal priorities
leave in arrival order. Unlike the legacy queue, a full queue refuses with :class:`QueueFull`
instead of dropping the request after answering "queued".
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from cluster.base.errors import QueueFull
from cluster.base.settings import RequestType
from deployments.core.models import RequestMetadata

__all__ = ["BoundedPriorityQueue", "compute_priority"]

#: Legacy ``task_type`` base priorities (``text_processing`` 2, ...).
BASE_PRIORITY: dict[RequestType, int] = {"audio": 1, "text": 2, "vision": 3}
USER_TYPE_ADJUSTMENT = {"admin": -2, "premium": -1, "standard": 0, "guest": 1}
URGENCY_ADJUSTMENT = {"critical": -3, "high": -1, "normal": 0, "low": 1}
#: The load penalty applies above this fraction of the queue's bound.
LOAD_PENALTY_ABOVE = 0.8
MIN_PRIORITY, MAX_PRIORITY = 1, 10


def compute_priority(
    request_type: RequestType,
    metadata: RequestMetadata,
    has_user: bool,
    queue_size: int,
    queue_max_size: int,
) -> int:
    """Return the legacy priority of a request about to join a queue of ``queue_size``."""
    priority = BASE_PRIORITY[request_type]
    if has_user:
        priority += USER_TYPE_ADJUSTMENT[metadata.user_type]
    priority += URGENCY_ADJUSTMENT[metadata.urgency]
    if queue_size > LOAD_PENALTY_ABOVE * queue_max_size:
        priority += 1
    return max(MIN_PRIORITY, min(MAX_PRIORITY, priority))


T = TypeVar("T")


@dataclass(order=True)
class _Slot(Generic[T]):
    priority: int
    seq: int
    item: T = field(compare=False)


class BoundedPriorityQueue(Generic[T]):
    """Items ordered by (priority, arrival); at most ``max_size`` of them.

    Kept as a sorted list rather than a heap so that the dispatcher can take the first item
    it is able to dispatch, not only the head, and so that cancelling is a plain filter.
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._slots: list[_Slot[T]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._slots)

    def __iter__(self) -> Iterator[T]:
        return (slot.item for slot in self._slots)

    def push(self, priority: int, item: T) -> int:
        """Queue ``item``; return its 0-based position. Raises :class:`QueueFull`."""
        if len(self._slots) >= self.max_size:
            raise QueueFull(self.max_size)
        slot = _Slot(priority, next(self._seq), item)
        position = bisect.bisect_right(self._slots, slot)
        self._slots.insert(position, slot)
        return position

    def take_first(self, accept: Callable[[T], bool]) -> T | None:
        """Remove and return the first item, in order, for which ``accept`` is true."""
        for index, slot in enumerate(self._slots):
            if accept(slot.item):
                del self._slots[index]
                return slot.item
        return None

    def remove_where(self, match: Callable[[T], bool]) -> list[T]:
        """Remove every item ``match`` selects; return them in queue order."""
        removed = [slot.item for slot in self._slots if match(slot.item)]
        self._slots = [slot for slot in self._slots if not match(slot.item)]
        return removed
