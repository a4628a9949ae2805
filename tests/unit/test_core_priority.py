"""Priority formula (against the legacy RequestCoordinator's) and the bounded queue."""

from __future__ import annotations

import itertools

import pytest

from cluster.base.errors import QueueFull
from deployments.core.models import RequestMetadata
from deployments.core.priority import BoundedPriorityQueue, compute_priority


def legacy_priority(
    task_type: str,
    metadata: dict[str, str],
    user_id: str | None,
    queue_size: int,
    queue_max_size: int = 100,
) -> int:
    """``RequestCoordinator._calculate_priority`` at the legacy baseline, transcribed."""
    base = {
        "audio_processing": 1,
        "text_processing": 2,
        "vision_processing": 3,
        "background_task": 5,
    }.get(task_type, 3)
    if user_id:
        base += {"admin": -2, "premium": -1, "standard": 0, "guest": 1}.get(
            metadata.get("user_type", "standard"), 0
        )
    base += {"critical": -3, "high": -1, "normal": 0, "low": 1}.get(
        metadata.get("urgency", "normal"), 0
    )
    if queue_size > queue_max_size * 0.8:
        base += 1
    return max(1, min(10, base))


CASES = list(
    itertools.product(
        ["text", "audio", "vision"],
        ["admin", "premium", "standard", "guest"],
        ["critical", "high", "normal", "low"],
        [None, "alice"],
        [0, 80, 81, 99],
    )
)


@pytest.mark.parametrize(("kind", "user_type", "urgency", "user_id", "size"), CASES)
def test_priority_matches_the_legacy_formula(kind, user_type, urgency, user_id, size) -> None:
    metadata = RequestMetadata(user_type=user_type, urgency=urgency)
    expected = legacy_priority(
        f"{kind}_processing", {"user_type": user_type, "urgency": urgency}, user_id, size
    )
    assert compute_priority(kind, metadata, user_id is not None, size, 100) == expected


@pytest.mark.parametrize(
    ("kind", "user_type", "urgency", "has_user", "size", "expected"),
    [
        ("audio", "admin", "critical", True, 0, 1),  # 1 - 2 - 3 clamps to 1
        ("vision", "guest", "low", True, 90, 6),  # 3 + 1 + 1 + 1
        ("text", "admin", "normal", False, 0, 2),  # user type ignored without a user id
        ("text", "standard", "high", False, 81, 2),  # 2 - 1 + 1 (load penalty above 80 %)
    ],
)
def test_priority_examples(kind, user_type, urgency, has_user, size, expected) -> None:
    metadata = RequestMetadata(user_type=user_type, urgency=urgency)
    assert compute_priority(kind, metadata, has_user, size, 100) == expected


def test_queue_orders_by_priority_then_arrival() -> None:
    queue: BoundedPriorityQueue[str] = BoundedPriorityQueue(10)
    for priority, name in [(3, "c1"), (1, "a1"), (3, "c2"), (2, "b1"), (1, "a2"), (3, "c3")]:
        queue.push(priority, name)
    assert list(queue) == ["a1", "a2", "b1", "c1", "c2", "c3"]
    taken = [queue.take_first(lambda _: True) for _ in range(6)]
    assert taken == ["a1", "a2", "b1", "c1", "c2", "c3"]
    assert queue.take_first(lambda _: True) is None


def test_queue_push_returns_the_position() -> None:
    queue: BoundedPriorityQueue[str] = BoundedPriorityQueue(10)
    assert queue.push(5, "x") == 0
    assert queue.push(1, "y") == 0
    assert queue.push(5, "z") == 2


def test_full_queue_refuses_and_keeps_what_it_has() -> None:
    queue: BoundedPriorityQueue[int] = BoundedPriorityQueue(3)
    for i in range(3):
        queue.push(1, i)
    with pytest.raises(QueueFull) as info:
        queue.push(1, 99)
    assert info.value.http_status == 429
    assert "queue is full (3 queued)" in str(info.value)
    assert list(queue) == [0, 1, 2]


def test_take_first_skips_items_not_accepted_and_remove_where_filters() -> None:
    queue: BoundedPriorityQueue[str] = BoundedPriorityQueue(10)
    for name in ["a", "b", "c", "d"]:
        queue.push(1, name)
    assert queue.take_first(lambda item: item in ("c", "d")) == "c"
    assert queue.remove_where(lambda item: item in ("a", "d")) == ["a", "d"]
    assert list(queue) == ["b"]
