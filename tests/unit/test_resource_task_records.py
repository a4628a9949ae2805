"""Task records: active tasks capped, finished ones kept by count and age."""

from __future__ import annotations

import pytest

from actors.resources.models import TaskStatus
from actors.resources.task_records import TaskRecords
from cluster.base.errors import QuotaExceeded, TaskNotFound
from cluster.base.settings import ResourceSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _status(task_id: str, finished_at: float | None = None) -> TaskStatus:
    return TaskStatus(
        task_id=task_id,
        state="running" if finished_at is None else "succeeded",
        function="deployments.resources.jobs:log_task",
        lease_id=None,
        host="pc2",
        submitted_at=1_800_000_000.0,
        finished_at=finished_at,
    )


def test_defaults() -> None:
    s = ResourceSettings()
    assert (s.tasks_max_active, s.tasks_kept, s.task_retention_s) == (1000, 1000, 3600)


def test_active_tasks_are_capped_naming_the_setting() -> None:
    records = TaskRecords(max_active=2, kept=10, retention_s=60, clock=Clock())
    records["a"] = _status("a")
    records["b"] = _status("b")
    with pytest.raises(QuotaExceeded, match="AISYS_RESOURCES__TASKS_MAX_ACTIVE"):
        records.check_room()
    records["a"] = _status("a", finished_at=1_800_000_000.0)  # finishing frees a place
    records.check_room()
    assert records.active == 1 and records["a"].state == "succeeded"


def test_finished_records_are_kept_by_count_then_age() -> None:
    clock = Clock()
    records = TaskRecords(max_active=100, kept=3, retention_s=60, clock=clock)
    for i in range(5):
        records[f"t{i}"] = _status(f"t{i}", finished_at=clock.now + i)
    assert len(records) == 3
    with pytest.raises(TaskNotFound):
        records["t0"]
    assert records["t4"].task_id == "t4"
    records["running"] = _status("running")
    clock.now += 63.5  # t2 and t3 are past 60 s; t4 finished at +4
    assert "t2" not in records and "t3" not in records
    assert "t4" in records and "running" in records
    clock.now += 10
    assert len(records) == 1 and "running" in records
