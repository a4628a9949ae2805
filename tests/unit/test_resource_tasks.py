"""Task admission: allowed modules and CPU/memory backpressure (no Ray started)."""

from __future__ import annotations

import pytest

from actors.probe.models import HostReading
from actors.resources.models import TaskRequest
from actors.resources.tasks import check_function_allowed, pick_host
from cluster.base.errors import HostOverloaded, ValidationFailed


def reading(host: str, cpu: float, memory: float) -> HostReading:
    return HostReading(
        host=host, taken_at=0.0, gpus=[], cpu_percent=cpu, memory_percent=memory,
        memory_available_mb=1000,
    )  # fmt: skip


@pytest.mark.parametrize(
    "function", ["deployments.resources.jobs:placement_report", "jobs.asr:transcribe"]
)
def test_functions_in_allowed_modules_pass(function: str) -> None:
    check_function_allowed(function, ["deployments.resources.jobs", "jobs"])


@pytest.mark.parametrize("function", ["os:system", "jobsx:run", "deployments.resources:x"])
def test_functions_elsewhere_are_refused(function: str) -> None:
    with pytest.raises(ValidationFailed, match="resources.task_modules"):
        check_function_allowed(function, ["deployments.resources.jobs", "jobs"])


def test_any_picks_the_least_loaded_host() -> None:
    readings = [reading("mainpc", 70, 10), reading("pc2", 20, 50)]
    assert pick_host(readings, "any", 80, 80) == "pc2"
    assert pick_host(readings, "mainpc", 80, 80) == "mainpc"


@pytest.mark.parametrize(
    ("cpu", "memory", "what"), [(95, 10, "CPU at 95 %"), (10, 91, "memory at 91 %")]
)
def test_an_overloaded_host_pushes_back(cpu: float, memory: float, what: str) -> None:
    with pytest.raises(HostOverloaded, match=f"host 'pc2' is overloaded: {what}") as caught:
        pick_host([reading("pc2", cpu, memory)], "pc2", 80, 90)
    assert caught.value.http_status == 503


def test_task_request_takes_a_lease_or_vram_not_both() -> None:
    with pytest.raises(ValueError, match="not both"):
        TaskRequest(function="jobs:x", lease_id="l", vram_mb=10)
    assert TaskRequest.model_validate({"function": "jobs:x", "priority": "high"}).priority == 20
