"""Digital twin, services and gRPC ingress of CoreOrchestrator on the session system; the
application restart runs last (it replaces the core replica)."""

from __future__ import annotations

import uuid

import grpc
import httpx
import pytest

from cluster.base.settings import Settings
from deployments.core.proto import aisys_core_pb2 as pb
from deployments.core.proto import aisys_core_pb2_grpc as pb_grpc
from tests.conftest import wait_for_condition

pytestmark = pytest.mark.integration


def test_twin_shows_both_hosts_measured_and_the_nvml_doubles_gpus(http: httpx.Client) -> None:
    def sampled() -> dict[str, object]:
        twin: dict[str, object] = http.get("/core/twin").json()
        hosts = twin["hosts"]
        assert isinstance(hosts, list)
        return twin if all(h["cpu_percent"] is not None and h["ip"] for h in hosts) else {}

    wait_for_condition(sampled, timeout_s=30)
    twin = http.get("/core/twin").json()
    hosts = {h["host"]: h for h in twin["hosts"]}
    assert set(hosts) == {"mainpc", "pc2"}
    for host in hosts.values():
        assert 0 <= host["cpu_percent"] <= 100 and host["cpu_count"] >= 1
        assert 0 < host["memory_total_mb"] and 0 <= host["disk_percent"] <= 100
        assert host["error"] is None and host["history"]
        assert host["gpu_error"] is None
    # The session's GPUs are the NVML double's, read by the real NVML probe on each host and
    # labelled as the double's (tests/fixtures/nvml/double_hosts.json), never as real devices.
    gpus = {
        tag: [(g["name"], g["source"], g["total_mb"]) for g in h["gpus"]]
        for tag, h in hosts.items()
    }
    assert gpus == {
        "mainpc": [("NVIDIA GeForce RTX 4090 (nvml-double)", "nvml-double", 24564)],
        "pc2": [("NVIDIA GeForce RTX 3060 (nvml-double)", "nvml-double", 12288)],
    }
    (pc2_gpu,) = hosts["pc2"]["gpus"]
    assert (pc2_gpu["used_mb"], pc2_gpu["free_mb"]) == (310, 11978)

    services = {s["name"]: s for s in twin["services"]}
    core = services["core"]
    assert core["status"] == "RUNNING" and core["route_prefix"] == "/core"
    assert core["deployments"][0]["host_tag"] == "mainpc"
    assert core["deployments"][0]["replica_states"] == {"RUNNING": 1}
    assert isinstance(twin["agents"], list)


def test_simulate_load_answers_from_live_numbers(http: httpx.Client) -> None:
    wait_for_condition(
        lambda: http.post("/core/twin/simulate_load", json={"host": "mainpc"}).status_code == 200,
        timeout_s=30,
    )
    too_big = http.post("/core/twin/simulate_load", json={"host": "mainpc", "vram_mb": 30000})
    body = too_big.json()
    assert body["recommendation"] == "deny_insufficient_resources"
    vram = next(c for c in body["checks"] if c["resource"] == "vram")
    assert (vram["verdict"], vram["capacity"], vram["current"]) == ("deny", 24564, 1830)

    fits = http.post("/core/twin/simulate_load", json={"host": "pc2", "vram_mb": 1000}).json()
    vram = next(c for c in fits["checks"] if c["resource"] == "vram")
    assert vram["verdict"] == "ok" and vram["capacity"] == 12288

    huge_ram = http.post("/core/twin/simulate_load", json={"host": "pc2", "ram_mb": 10**9}).json()
    assert huge_ram["recommendation"] == "deny_insufficient_resources"

    cpu = next(c for c in fits["checks"] if c["resource"] == "cpu")
    assert cpu["verdict"] == ("caution" if cpu["projected"] > 90 else "ok")

    unknown = http.post("/core/twin/simulate_load", json={"host": "nowhere"})
    assert unknown.status_code == 404 and unknown.json()["error"] == "UnknownHost"


def test_grpc_ingress_register_lookup_submit_status(
    aisys_system: Settings, admin_token: str
) -> None:
    metadata = (("application", "core"), ("authorization", f"Bearer {admin_token}"))
    agent_id = f"grpc-{uuid.uuid4().hex[:6]}"
    with grpc.insecure_channel(f"127.0.0.1:{aisys_system.ports.grpc}") as channel:
        stub = pb_grpc.CoreOrchestratorStub(channel)  # type: ignore[no-untyped-call]
        record = stub.Register(
            pb.Registration(
                agent_id=agent_id,
                host="10.0.0.7",
                port=5710,
                capabilities=["grpc-test"],
                metadata_json='{"k": 1}',
            ),
            metadata=metadata,
            timeout=30,
        )
        assert record.agent_id == agent_id and record.health == "passing"
        beat = stub.Heartbeat(
            pb.HeartbeatRequest(agent_id=agent_id, status="warning", note="slow"),
            metadata=metadata,
            timeout=30,
        )
        assert beat.health == "warning"
        found = stub.Lookup(pb.LookupRequest(agent_id=agent_id), metadata=metadata, timeout=30)
        assert (found.host, found.port, found.metadata_json) == ("10.0.0.7", 5710, '{"k": 1}')
        listed = stub.ListAgents(
            pb.ListRequest(capability="grpc-test"), metadata=metadata, timeout=30
        )
        assert [a.agent_id for a in listed.agents] == [agent_id]

        with pytest.raises(grpc.RpcError) as missing:
            stub.Lookup(pb.LookupRequest(agent_id="nobody-here"), metadata=metadata, timeout=30)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        assert "registry: agent 'nobody-here' is not registered" in str(missing.value.details())

        receipt = stub.Submit(
            pb.SubmitRequest(type="audio", media=b"RIFF....", urgency="high", session_id="g"),
            metadata=metadata,
            timeout=30,
        )
        assert receipt.request_id.startswith("req_") and receipt.priority == 1
        status = stub.Status(
            pb.StatusRequest(request_id=receipt.request_id), metadata=metadata, timeout=30
        )
        assert status.request_id == receipt.request_id and status.type == "audio"
        assert status.state in ("queued", "dispatched", "failed")

        with pytest.raises(grpc.RpcError) as bad:
            stub.Submit(pb.SubmitRequest(type="smell"), metadata=metadata, timeout=30)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        stub.Heartbeat(pb.HeartbeatRequest(agent_id=agent_id), metadata=metadata, timeout=30)


def test_restart_redeploys_one_application(http: httpx.Client) -> None:
    missing = http.post("/core/services/nope/restart")
    assert missing.status_code == 404 and missing.json()["error"] == "ServiceNotFound"

    def core_ids() -> list[str]:
        services = {s["name"]: s for s in http.get("/core/services").json()}
        deployment = services["core"]["deployments"][0]
        assert services["core"]["status"] == "RUNNING"
        assert deployment["replica_states"] == {"RUNNING": 1}
        ids: list[str] = deployment["replica_ids"]
        return ids

    before = core_ids()
    others = {s["name"]: s for s in http.get("/core/services").json() if s["name"] != "core"}
    response = http.post("/core/services/core/restart")
    assert response.status_code == 202, response.text
    assert response.json()["app"] == "core"
    wait_for_condition(lambda: core_ids() != before, timeout_s=120, interval_s=0.5)
    after = {s["name"]: s for s in http.get("/core/services").json() if s["name"] != "core"}
    for name, service in others.items():
        ids = [d["replica_ids"] for d in service["deployments"]]
        assert [d["replica_ids"] for d in after[name]["deployments"]] == ids, name


def test_grpc_ingress_requires_a_token_with_the_scope(aisys_system: Settings) -> None:
    anonymous = (("application", "core"),)
    with grpc.insecure_channel(f"127.0.0.1:{aisys_system.ports.grpc}") as channel:
        stub = pb_grpc.CoreOrchestratorStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as missing:
            stub.Lookup(pb.LookupRequest(agent_id="x"), metadata=anonymous, timeout=30)
        assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "no bearer token" in (missing.value.details() or "")
        forged = (*anonymous, ("authorization", "Bearer not.a.jwt"))
        with pytest.raises(grpc.RpcError) as bad:
            stub.Register(pb.Registration(agent_id="x", host="h", port=1), metadata=forged)
        assert bad.value.code() == grpc.StatusCode.UNAUTHENTICATED
