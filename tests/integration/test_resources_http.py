"""ResourceScheduler through the deployed app: leases over HTTP, Ray task placement on pc2,
and leases surviving a kill of the scheduler actor.

The session's GPUs are the NVML double's (an RTX 4090 on mainpc, an RTX 3060 of 12288 MiB with
310 MiB in use on pc2), read by the real NVML probe; the node advertises their two devices to Ray
(``--num-gpus 2``), so a task under a lease runs with Ray's real ``num_gpus`` bookkeeping,
whatever GPU this machine has.
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
import zmq

from actors.resources.models import LeaseList
from cluster.base.constants import RAY_NAMESPACE, RESOURCES_ACTOR_NAME
from cluster.base.settings import Settings
from cluster.ops import system
from tests.conftest import wait_for_condition

pytestmark = pytest.mark.integration

TOTAL = 12288
USED = 310  # in use on pc2's 3060 before any lease (tests/fixtures/nvml/double_hosts.json)
MARGIN = 512


@pytest.fixture
def pc2_gpu(http: httpx.Client) -> Iterator[dict[str, Any]]:
    """pc2's GPU (the NVML double's 3060), once the scheduler has read it; leases released after."""
    found: dict[str, Any] = {}

    def visible() -> bool:
        table = http.get("/resources/gpus", params={"refresh": True}).json()
        gpus = [g for g in table.get("gpus", []) if g["host"] == "pc2"]
        found.update(gpus[0] if gpus else {})
        return bool(gpus)

    wait_for_condition(visible, timeout_s=60, interval_s=0.5)
    yield found
    for lease in http.get("/resources/leases").json()["granted"]:
        http.delete(f"/resources/leases/{lease['lease_id']}")


def post_lease(http: httpx.Client, vram: int, **fields: object) -> httpx.Response:
    body = {"owner": f"it-{uuid.uuid4().hex[:6]}", "vram_mb": vram, "host": "pc2", **fields}
    return http.post("/resources/leases", json=body)


def test_gpu_table_shows_the_nvml_doubles_devices_as_such(
    aisys_system: Settings, http: httpx.Client, pc2_gpu: dict[str, Any]
) -> None:
    system.connect(aisys_system)
    gpus = ray.cluster_resources()["GPU"]  # type: ignore[no-untyped-call]
    assert gpus == 2.0  # --num-gpus from the double's device table
    assert (pc2_gpu["source"], pc2_gpu["total_mb"], pc2_gpu["uuid"], pc2_gpu["name"]) == (
        "nvml-double",
        TOTAL,
        "GPU-nvml-double-pc2-3060-0",
        "NVIDIA GeForce RTX 3060 (nvml-double)",
    )
    assert (pc2_gpu["used_mb"], pc2_gpu["processes"]) == (USED, [{"pid": 2210, "used_mb": None}])
    table: dict[str, Any] = {}

    def both_hosts_read() -> bool:
        table.update(http.get("/resources/gpus", params={"refresh": True}).json())
        return len(table["hosts"]) == 2

    wait_for_condition(both_hosts_read, timeout_s=30, interval_s=0.5)
    assert table["gpu_devices"] == 2
    hosts = {h["host"]: h for h in table["hosts"]}
    assert hosts["mainpc"]["gpu_devices"] == 1 and hosts["mainpc"]["gpu_error"] is None
    mainpc = next(g for g in table["gpus"] if g["host"] == "mainpc")
    assert (mainpc["source"], mainpc["total_mb"], mainpc["used_mb"]) == ("nvml-double", 24564, 1830)
    assert [p["used_mb"] for p in mainpc["processes"]] == [412, 1396]


@pytest.mark.usefixtures("pc2_gpu")
def test_lease_grant_queue_heartbeat_release_over_http(http: httpx.Client) -> None:
    first = post_lease(http, 9000, ttl_s=60)
    assert first.status_code == 201, first.text
    grant = first.json()
    assert (grant["state"], grant["host"], grant["gpu_index"]) == ("granted", "pc2", 0)
    assert grant["resources"] == {"pc2": 0.001}
    assert grant["num_gpus"] == pytest.approx(9000 / TOTAL, abs=1e-4)

    second = post_lease(http, 5000, priority="high")
    assert second.status_code == 202
    assert (second.json()["state"], second.json()["position"]) == ("queued", 1)
    too_big = post_lease(http, TOTAL)
    assert too_big.status_code == 409 and "can hold" in too_big.json()["detail"]

    beat = http.put(f"/resources/leases/{grant['lease_id']}/heartbeat", json={"used": True})
    assert beat.status_code == 200 and beat.json()["expires_at"] >= grant["expires_at"]
    released = http.delete(f"/resources/leases/{grant['lease_id']}")
    assert released.json()["state"] == "released"
    assert http.get(f"/resources/leases/{grant['lease_id']}").json()["state"] == "released"
    promoted = http.get(f"/resources/leases/{second.json()['lease_id']}").json()
    assert promoted["state"] == "granted"
    gpu = next(g for g in http.get("/resources/gpus").json()["gpus"] if g["host"] == "pc2")
    assert gpu["available_mb"] == TOTAL - USED - 5000 - MARGIN
    assert http.delete("/resources/leases/unknown").status_code == 404


def _finished(http: httpx.Client, task_id: str) -> dict[str, Any]:
    status: dict[str, Any] = {}

    def done() -> bool:
        status.update(http.get(f"/resources/tasks/{task_id}").json())
        return status["state"] in ("succeeded", "failed")

    wait_for_condition(done, timeout_s=120, interval_s=0.2)
    return status


@pytest.mark.usefixtures("pc2_gpu")
def test_a_task_under_a_lease_runs_on_pc2_with_its_gpu_share(http: httpx.Client) -> None:
    lease = post_lease(http, 3000).json()
    submitted = http.post(
        "/resources/tasks",
        json={
            "function": "deployments.resources.jobs:placement_report",
            "lease_id": lease["lease_id"],
        },
    )
    assert submitted.status_code == 202, submitted.text
    status = _finished(http, submitted.json()["task_id"])
    assert status["state"] == "succeeded", status["error"]
    report = status["result"]
    assert report["assigned_resources"]["GPU"] == pytest.approx(lease["num_gpus"])
    assert report["assigned_resources"]["pc2"] == pytest.approx(0.001)
    assert report["cuda_visible_devices"] == str(lease["gpu_index"])
    assert "pc2" in report["host_label"].split(".")
    assert (status["host"], status["lease_id"]) == ("pc2", lease["lease_id"])


@pytest.mark.usefixtures("pc2_gpu")
def test_a_task_with_its_own_lease_releases_it_when_done(http: httpx.Client) -> None:
    body = {
        "function": "deployments.resources.jobs:placement_report",
        "vram_mb": 2000,
        "host": "pc2",
    }
    status = _finished(http, http.post("/resources/tasks", json=body).json()["task_id"])
    assert status["state"] == "succeeded", status["error"]
    assert status["result"]["assigned_resources"]["GPU"] == pytest.approx(0.1628)
    ended = http.get(f"/resources/leases/{status['lease_id']}").json()
    assert (ended["state"], ended["reason"]) == ("released", "its task ended")


def test_tasks_outside_the_allowed_modules_are_refused(http: httpx.Client) -> None:
    response = http.post("/resources/tasks", json={"function": "os:system", "args": ["true"]})
    assert response.status_code == 422 and "resources.task_modules" in response.json()["detail"]


@pytest.mark.usefixtures("pc2_gpu")
def test_active_leases_survive_a_kill_of_the_scheduler_actor(
    aisys_system: Settings, http: httpx.Client
) -> None:
    leases = [post_lease(http, 2000, ttl_s=600).json() for _ in range(3)]
    assert {lease["state"] for lease in leases} == {"granted"}
    queued = post_lease(http, 9000, ttl_s=600).json()
    assert queued["state"] == "queued"
    system.connect(aisys_system)
    actor = ray.get_actor(RESOURCES_ACTOR_NAME, namespace=RAY_NAMESPACE)
    ray.kill(actor, no_restart=False)

    def reloaded() -> bool:
        granted = cast(LeaseList, ray.get(actor.list_leases.remote(), timeout=5)).granted
        return {g.lease_id for g in granted} == {lease["lease_id"] for lease in leases}

    wait_for_condition(reloaded, timeout_s=60)
    for lease in leases:
        assert http.get(f"/resources/leases/{lease['lease_id']}").json() == lease
    assert http.get(f"/resources/leases/{queued['lease_id']}").json()["state"] == "queued"
    # The ledger still accounts the reloaded leases: the queued 9000 MiB does not fit yet.
    http.delete(f"/resources/leases/{leases[0]['lease_id']}")
    assert http.get(f"/resources/leases/{queued['lease_id']}").json()["state"] == "queued"
    http.delete(f"/resources/leases/{leases[1]['lease_id']}")
    assert http.get(f"/resources/leases/{queued['lease_id']}").json()["state"] == "granted"


def _rewrite_pc2_gpu(table: Path, text: str, **device: Any) -> None:
    """Write the NVML double's table ``text`` with pc2's device changed (atomically)."""
    data = json.loads(text)
    data["hosts"]["pc2"]["devices"][0].update(device)
    staged = table.with_suffix(".staged")
    staged.write_text(json.dumps(data))
    staged.replace(table)


@pytest.mark.usefixtures("pc2_gpu")
def test_the_optimizer_and_the_gpu_table_follow_what_nvml_reads(
    aisys_system: Settings, http: httpx.Client
) -> None:
    table = aisys_system.resources.nvml_double
    assert table is not None
    original = table.read_text()
    context = zmq.Context()
    owner = context.socket(zmq.REP)  # the model's owner, answering like ModelManagerAgent
    owner.setsockopt(zmq.LINGER, 0)
    port = owner.bind_to_random_port("tcp://127.0.0.1")
    endpoint = {"protocol": "zmq", "address": f"tcp://127.0.0.1:{port}"}

    def pc2() -> dict[str, Any]:
        listing = http.get("/resources/gpus", params={"refresh": True}).json()
        hosts = {h["host"]: h for h in listing["hosts"]}
        gpus = [g for g in listing["gpus"] if g["host"] == "pc2"]
        return {"host": hosts["pc2"], "gpu": gpus[0] if gpus else None}

    try:
        lease = post_lease(http, 2000, model_name="it-llm", unload_endpoint=endpoint).json()
        assert lease["state"] == "granted"
        # Another process takes 11.5 GiB of the 3060: NVML shows it, usage is critical (0.94),
        # and the optimizer asks the owner of the largest leased model to unload it.
        used = [{"pid": 2210, "used_mb": None}, {"pid": 4242, "used_mb": 11190}]
        _rewrite_pc2_gpu(table, original, used_mb=11500, processes=used)
        assert owner.poll(30_000), "the optimizer never asked the model's owner to unload"
        assert owner.recv_json() == {"command": "UNLOAD_MODEL", "model_name": "it-llm"}
        owner.send_json({"status": "SUCCESS", "message": "Model it-llm unloaded"})
        gpu = pc2()["gpu"]
        assert (gpu["used_mb"], gpu["available_mb"]) == (11500, TOTAL - 11500 - MARGIN)
        assert [p["pid"] for p in gpu["processes"]] == [2210, 4242]
        # The device falls off the bus: pc2 has no GPU now, and says why.
        _rewrite_pc2_gpu(table, original, lost=True)
        wait_for_condition(lambda: pc2()["gpu"] is None, timeout_s=30, interval_s=0.5)
        assert pc2()["host"]["gpu_error"] == "NVML: device 0: GPU is lost"
    finally:
        _rewrite_pc2_gpu(table, original)
        owner.close()
        context.term()
    wait_for_condition(lambda: (pc2()["gpu"] or {}).get("used_mb") == USED, timeout_s=30)
