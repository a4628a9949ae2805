"""Model workers under VRAM leases on the session's two simulated GPU hosts (the NVML double).

mainpc has an RTX 4090 (24564 MiB, 1830 in use), pc2 an RTX 3060 (12288 MiB, 310 in use,
process 2210 without a figure): ``tests/fixtures/nvml/double_hosts.json``. The node advertises
the double's two devices to Ray, so a worker's actor gets Ray's real ``num_gpus`` share. The
per-process use NVML reports is written into the double's table by the test, for the worker's
real pid, as the driver would show it once the worker allocated.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import ray
from pydantic import SecretStr

from actors.resources.worker_models import WorkerList
from aisys_sdk import AgentClient, ClientConfig
from aisys_sdk.models import WorkerRequest
from cluster.base.constants import RAY_NAMESPACE, RESOURCES_ACTOR_NAME
from cluster.base.settings import Settings
from cluster.ops import system
from tests.conftest import wait_for_condition
from tests.integration.test_observability_http import MIB, scrape

pytestmark = pytest.mark.integration

WORKER = "deployments.resources.vram_worker:VramWorker"
PC2_USED = 310
TOLERANCE = 256  # resources.workers.usage_tolerance_mb
MARGIN = 256  # resources.workers.learned_margin_mb


@pytest.fixture
def workers(http: httpx.Client) -> Iterator[list[str]]:
    """Worker ids a test started; every live one is stopped afterwards."""
    wait_for_condition(
        lambda: len(http.get("/resources/gpus", params={"refresh": True}).json()["gpus"]) == 2,
        timeout_s=60,
        interval_s=0.5,
    )
    started: list[str] = []
    yield started
    for worker in http.get("/resources/workers").json()["workers"]:
        http.delete(f"/resources/workers/{worker['worker_id']}")


def start(http: httpx.Client, started: list[str], **fields: Any) -> httpx.Response:
    response = http.post("/resources/workers", json={"cls": WORKER, **fields})
    if response.status_code == 201:
        started.append(response.json()["worker_id"])
    return response


def call(http: httpx.Client, worker_id: str, method: str, *args: Any) -> httpx.Response:
    return http.post(
        f"/resources/workers/{worker_id}/call", json={"method": method, "args": list(args)}
    )


def lease_usage(http: httpx.Client, lease_id: str) -> dict[str, Any]:
    usage = http.get("/resources/leases").json()["usage"]
    return next((u for u in usage["leases"] if u["lease_id"] == lease_id), {})


def twin_usage(http: httpx.Client, lease_id: str) -> dict[str, Any]:
    """The lease as the twin shows it on its GPU (CoreOrchestrator's ``GET /core/twin``)."""
    hosts = http.get("/core/twin").json()["hosts"]
    rows = [u for h in hosts for g in h["gpus"] for u in g.get("leases") or []]
    return next((u for u in rows if u["lease_id"] == lease_id), {})


def _write_pc2(table: Path, original: str, processes: list[dict[str, Any]]) -> None:
    data = json.loads(original)
    device = data["hosts"]["pc2"]["devices"][0]
    device["processes"] = [*device["processes"], *processes]
    device["used_mb"] = PC2_USED + sum(p["used_mb"] for p in processes)
    staged = table.with_suffix(".staged")
    staged.write_text(json.dumps(data))
    staged.replace(table)


def test_a_worker_runs_under_its_lease_on_the_host_and_gpu_chosen(
    http: httpx.Client, workers: list[str]
) -> None:
    response = start(http, workers, vram_mb=2000, host="pc2", kind="it-place")
    assert response.status_code == 201, response.text
    worker = response.json()
    assert (worker["state"], worker["host"], worker["gpu_index"]) == ("ready", "pc2", 0)
    lease = http.get(f"/resources/leases/{worker['lease_id']}").json()
    assert (lease["state"], lease["owner"], lease["vram_mb"]) == (
        "granted",
        f"worker:{worker['worker_id']}",
        2000,
    )
    report = call(http, worker["worker_id"], "report")
    assert report.status_code == 200, report.text
    result = report.json()["result"]
    assert result["pid"] == worker["pid"]
    assert result["cuda_visible_devices"] == "0"
    assert result["assigned_resources"]["GPU"] == pytest.approx(lease["num_gpus"])
    assert result["assigned_resources"]["pc2"] == pytest.approx(0.001)
    listed = http.get("/resources/workers").json()["workers"]
    assert [w["worker_id"] for w in listed] == [worker["worker_id"]]
    # Only allow-listed classes and methods; a bounded body.
    refused = http.post("/resources/workers", json={"cls": "os:System", "vram_mb": 10})
    assert refused.status_code == 422 and "resources.workers.classes" in refused.text
    assert call(http, worker["worker_id"], "__init__").status_code == 422
    big = call(http, worker["worker_id"], "report", "x" * 1_100_000)
    assert big.status_code == 422 and "call_max_bytes" in big.text
    # A class whose constructor fails: 502, and its lease is not kept.
    broken = start(http, workers, vram_mb=100, host="pc2", args=["unexpected"])
    assert broken.status_code == 502 and "start failed" in broken.text
    owners = [lease["owner"] for lease in http.get("/resources/leases").json()["granted"]]
    assert [o for o in owners if o.startswith("worker:")] == [f"worker:{worker['worker_id']}"]

    stopped = http.delete(f"/resources/workers/{worker['worker_id']}").json()
    assert stopped["state"] == "stopped"
    ended = http.get(f"/resources/leases/{worker['lease_id']}").json()
    assert ended["state"] == "released" and "its worker ended" in ended["reason"]


def test_leased_vs_used_over_use_event_and_learned_peak(
    aisys_system: Settings, http: httpx.Client, workers: list[str]
) -> None:
    table = aisys_system.resources.nvml_double
    assert table is not None
    original = table.read_text()
    worker = start(http, workers, vram_mb=2000, host="pc2", kind="it-learn").json()
    assert worker["state"] == "ready", worker
    lease_id, pid = worker["lease_id"], worker["pid"]
    try:
        _write_pc2(table, original, [{"pid": pid, "used_mb": 1500}])
        wait_for_condition(lambda: lease_usage(http, lease_id).get("used_mb") == 1500, 30, 0.5)
        usage = http.get("/resources/leases").json()["usage"]
        row = lease_usage(http, lease_id)
        assert (row["leased_mb"], row["pids"], row["over"]) == (2000, [pid], False)
        assert {"host": "pc2", "gpu_index": 0, "pid": 2210, "used_mb": None} in usage["unexplained"]

        # The exporter shows the measured figure per lease.
        def measured() -> list[float]:
            series = scrape(http).get("aisys_lease_used_vram_bytes", [])
            return [value for labels, value in series if labels.get("lease_id") == lease_id]

        wait_for_condition(lambda: measured() == [1500 * MIB], timeout_s=30, interval_s=1)
        # The twin shows each lease on its GPU.
        wait_for_condition(lambda: twin_usage(http, lease_id).get("used_mb") == 1500, 30, 0.5)
        assert twin_usage(http, lease_id)["leased_mb"] == 2000
        # The holder grows past its lease plus the tolerance: an ErrorBus event.
        _write_pc2(table, original, [{"pid": pid, "used_mb": 2000 + TOLERANCE + 744}])
        wait_for_condition(lambda: lease_usage(http, lease_id).get("over") is True, 30, 0.5)

        def event() -> list[dict[str, Any]]:
            page = http.get("/errors/", params={"agent": "resources", "limit": 50}).json()
            return [
                item["event"]
                for item in page["items"]
                if item["event"]["error_type"] == "vram_over_lease"
                and item["event"]["details"]["lease_id"] == lease_id
            ]

        wait_for_condition(event, timeout_s=30, interval_s=0.5)
        assert event()[0]["details"]["used_mb"] == 3000
        assert http.get("/resources/leases").json()["usage"]["learned_peaks"]["it-learn"] == 3000
        # ... and, once it stays over for LeaseOverUse's 30 s, an alert.
        alert: dict[str, Any] = {}

        def firing() -> bool:
            for a in http.get("/observability/alerts").json():
                if a["rule"] == "LeaseOverUse" and a["labels"].get("lease_id") == lease_id:
                    alert.update(a)
            return alert.get("state") == "firing"

        wait_for_condition(firing, timeout_s=90, interval_s=1)
        assert (alert["labels"]["host"], alert["labels"]["gpu"]) == ("pc2", "0")
    finally:
        _write_pc2(table, original, [])
    # The next admission of the same kind asks for the learned peak plus the margin, and goes
    # to the GPU where that kind is already loaded.
    second = start(http, workers, vram_mb=2000, kind="it-learn").json()
    assert second["state"] == "ready", second
    assert (second["vram_mb"], second["host"]) == (3000 + MARGIN, "pc2")
    lease = http.get(f"/resources/leases/{second['lease_id']}").json()
    assert lease["vram_mb"] == 3000 + MARGIN


def test_an_idle_worker_is_unloaded_to_admit_a_new_one(
    http: httpx.Client, workers: list[str]
) -> None:
    old = start(http, workers, vram_mb=8000, host="pc2", kind="it-idle-old").json()
    assert old["state"] == "ready", old
    admitted: dict[str, Any] = {}

    def admit() -> bool:  # no room on pc2 until the old worker is idle (2 s without a call)
        response = start(http, workers, vram_mb=6000, host="pc2", kind="it-new", max_wait_s=0)
        admitted.update(response.json())
        return response.status_code == 201

    wait_for_condition(admit, timeout_s=30, interval_s=0.5)
    assert (admitted["state"], admitted["host"]) == ("ready", "pc2")
    gone = http.get(f"/resources/workers/{old['worker_id']}").json()
    assert gone["state"] == "stopped" and "idle" in gone["error"]
    assert http.get(f"/resources/leases/{old['lease_id']}").json()["state"] == "released"


def test_an_out_of_memory_worker_restarts_once_on_a_gpu_with_more_room(
    http: httpx.Client, workers: list[str]
) -> None:
    worker = start(http, workers, vram_mb=1000, host="pc2", kind="it-oom").json()
    assert (worker["state"], worker["host"]) == ("ready", "pc2")
    # More than the 3060 has free: CUDA (here the double's free memory) runs out.
    failed = call(http, worker["worker_id"], "hold", 12000)
    assert failed.status_code == 502 and "out of memory" in failed.text
    again: dict[str, Any] = {}

    def restarted() -> bool:
        again.update(http.get(f"/resources/workers/{worker['worker_id']}").json())
        return bool(again["state"] == "ready" and again["restarts"] == 1)

    wait_for_condition(restarted, timeout_s=60, interval_s=0.5)
    assert again["host"] == "mainpc" and again["lease_id"] != worker["lease_id"]
    assert again["vram_mb"] == 1500 + MARGIN  # learned peak raised to 1.5 x the lease
    assert http.get(f"/resources/leases/{worker['lease_id']}").json()["state"] == "released"
    held = call(http, worker["worker_id"], "hold", 12000)
    assert held.status_code == 200, held.text  # the 4090 has room
    # A second OOM: no second restart.
    assert call(http, worker["worker_id"], "hold", 30000).status_code == 502
    final = http.get(f"/resources/workers/{worker['worker_id']}").json()
    assert final["state"] == "failed" and final["restarts"] == 1


def test_a_dead_worker_releases_its_lease(
    aisys_system: Settings, http: httpx.Client, workers: list[str]
) -> None:
    worker = start(http, workers, vram_mb=1000, host="pc2", kind="it-dies").json()
    assert worker["state"] == "ready", worker
    system.connect(aisys_system)
    ray.kill(ray.get_actor(worker["actor_name"], namespace=RAY_NAMESPACE), no_restart=True)

    def gone() -> bool:
        status = http.get(f"/resources/workers/{worker['worker_id']}").json()
        return bool(status["state"] == "failed" and "died" in status["error"])

    wait_for_condition(gone, timeout_s=30, interval_s=0.5)
    ended = http.get(f"/resources/leases/{worker['lease_id']}").json()
    assert ended["state"] == "released"


def test_a_restarted_scheduler_finds_live_workers_and_releases_orphaned_leases(
    aisys_system: Settings, http: httpx.Client, workers: list[str]
) -> None:
    alive = start(http, workers, vram_mb=1000, host="pc2", kind="it-alive").json()
    orphan = start(http, workers, vram_mb=1000, host="pc2", kind="it-orphan").json()
    assert alive["state"] == orphan["state"] == "ready"
    system.connect(aisys_system)
    scheduler = ray.get_actor(RESOURCES_ACTOR_NAME, namespace=RAY_NAMESPACE)
    ray.kill(scheduler, no_restart=False)
    # While the scheduler is down, one worker's actor goes too.
    ray.kill(ray.get_actor(orphan["actor_name"], namespace=RAY_NAMESPACE), no_restart=True)

    def settled() -> bool:
        listed = cast(WorkerList, ray.get(scheduler.list_workers.remote(), timeout=5)).workers
        return [w.worker_id for w in listed] == [alive["worker_id"]]

    wait_for_condition(settled, timeout_s=60, interval_s=0.5)
    found = http.get(f"/resources/workers/{alive['worker_id']}").json()
    assert (found["state"], found["pid"], found["lease_id"]) == (
        "ready",
        alive["pid"],
        alive["lease_id"],
    )
    assert http.get(f"/resources/leases/{alive['lease_id']}").json()["state"] == "granted"
    assert call(http, alive["worker_id"], "report").json()["result"]["pid"] == alive["pid"]
    lost = http.get(f"/resources/workers/{orphan['worker_id']}").json()
    assert lost["state"] == "failed" and "gone after a restart" in lost["error"]
    assert http.get(f"/resources/leases/{orphan['lease_id']}").json()["state"] == "released"


@pytest.mark.usefixtures("workers")
def test_a_task_process_counts_for_its_lease(aisys_system: Settings, http: httpx.Client) -> None:
    table = aisys_system.resources.nvml_double
    assert table is not None
    original = table.read_text()
    body = {
        "function": "deployments.resources.jobs:hold_vram",
        "args": [500, 15],
        "vram_mb": 1000,
        "host": "pc2",
    }
    submitted = http.post("/resources/tasks", json=body)
    assert submitted.status_code == 202, submitted.text
    task_id = submitted.json()["task_id"]
    status: dict[str, Any] = {}

    def running() -> bool:
        status.update(http.get(f"/resources/tasks/{task_id}").json())
        assert status["state"] in ("waiting", "running"), status
        return status.get("pid") is not None

    wait_for_condition(running, timeout_s=60, interval_s=0.5)
    try:
        _write_pc2(table, original, [{"pid": status["pid"], "used_mb": 700}])
        wait_for_condition(
            lambda: lease_usage(http, status["lease_id"]).get("used_mb") == 700, 30, 0.5
        )
        row = lease_usage(http, status["lease_id"])
        assert (row["owner"], row["pids"], row["over"]) == (
            f"task:{task_id}",
            [status["pid"]],
            False,
        )
    finally:
        _write_pc2(table, original, [])


def test_the_vram_optimizer_unloads_an_idle_worker_under_pressure(
    aisys_system: Settings, http: httpx.Client, workers: list[str]
) -> None:
    table = aisys_system.resources.nvml_double
    assert table is not None
    original = table.read_text()
    worker = start(http, workers, vram_mb=1000, host="pc2", kind="it-pressure").json()
    assert worker["state"] == "ready", worker
    try:
        # Another process takes 11 GiB of the 3060: usage is critical (> 0.9), and the idle
        # worker (2 s without a call) is the optimizer's candidate.
        _write_pc2(table, original, [{"pid": 4242, "used_mb": 11190}])

        def unloaded() -> bool:
            status = http.get(f"/resources/workers/{worker['worker_id']}").json()
            return bool(status["state"] == "stopped" and "VRAM optimizer" in status["error"])

        wait_for_condition(unloaded, timeout_s=30, interval_s=0.5)
        assert http.get(f"/resources/leases/{worker['lease_id']}").json()["state"] == "released"
    finally:
        _write_pc2(table, original, [])


@pytest.mark.usefixtures("workers")
def test_the_sdk_starts_calls_and_stops_a_worker(aisys_system: Settings, http: httpx.Client):
    agent_id = f"it-workers-{uuid.uuid4().hex[:8]}"
    created = http.post(
        "/security/agents", json={"agent_id": agent_id, "scopes": ["read", "resources:lease"]}
    )
    assert created.status_code == 200, created.text
    config = ClientConfig(
        url=f"http://127.0.0.1:{aisys_system.ports.http}",
        client_id=agent_id,
        client_secret=SecretStr(created.json()["client_secret"]),
        timeout_s=60,
    )
    with AgentClient(config) as client:
        worker = client.start_worker(WorkerRequest(cls=WORKER, vram_mb=500, host="pc2"))
        assert (worker.state, worker.host, worker.gpu_index) == ("ready", "pc2", 0)
        report = client.call_worker(worker.worker_id, "report")
        assert isinstance(report, dict) and report["pid"] == worker.pid
        assert client.stop_worker(worker.worker_id).state == "stopped"
        assert client.worker(worker.worker_id).state == "stopped"
