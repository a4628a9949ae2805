"""Request coordinator over Serve HTTP with a real ZeroMQ agent: priority order, 429, breakers,
interrupts; plus the supervision sweep marking agents by their health endpoint."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import grpc
import httpx
import pytest

from cluster.base.settings import Settings
from deployments.core.models import RequestMetadata
from deployments.core.priority import compute_priority
from deployments.core.proto import aisys_core_pb2 as pb
from deployments.core.proto import aisys_core_pb2_grpc as pb_grpc
from tests.conftest import free_port, wait_for_condition
from tests.integration._zmq_agent import ZmqAgent

pytestmark = pytest.mark.integration

USER_TYPES = ["admin", "premium", "standard", "guest"]
URGENCIES = ["critical", "high", "normal", "low"]


def register(http: httpx.Client, agent_id: str, port: int, **fields: object) -> None:
    body: dict[str, object] = {
        "agent_id": agent_id,
        "host": "127.0.0.1",
        "port": port,
        "capabilities": ["reasoning"],
        "ttl_s": 3600,
    }
    body.update(fields)
    response = http.post("/core/agents", json=body)
    assert response.status_code == 200, response.text


@pytest.fixture
def agent(http: httpx.Client) -> Iterator[tuple[str, ZmqAgent]]:
    """The only 'reasoning' agent of the registry: a real REP server on a random port."""
    for other in http.get("/core/agents", params={"capability": "reasoning"}).json()["agents"]:
        http.delete(f"/core/agents/{other['agent_id']}")
    server = ZmqAgent().start()
    assert server.port is not None
    agent_id = f"reasoner-{uuid.uuid4().hex[:6]}"
    register(http, agent_id, server.port)
    try:
        yield agent_id, server
    finally:
        http.delete(f"/core/agents/{agent_id}")
        http.delete("/core/interrupt")
        server.close()


def finished(http: httpx.Client, request_id: str) -> dict[str, object] | None:
    status: dict[str, object] = http.get(f"/core/requests/{request_id}").json()
    return status if status["state"] in ("succeeded", "failed", "cancelled") else None


def test_hundred_requests_are_dispatched_in_priority_order(
    http: httpx.Client, agent: tuple[str, ZmqAgent]
) -> None:
    agent_id, server = agent
    assert http.post("/core/interrupt", json={"session_id": "nobody", "pause_s": 300}).is_success
    submitted: list[tuple[int, int, str, str]] = []  # (priority, index, request id, text)
    for i in range(100):
        user_type, urgency = USER_TYPES[i % 4], URGENCIES[(i // 4) % 4]
        body: dict[str, object] = {
            "type": "text",
            "data": f"q{i}",
            "metadata": {"user_type": user_type, "urgency": urgency},
            "session_id": "s-order",
        }
        if i % 3:
            body["user_id"] = f"user{i}"
        response = http.post("/core/requests", json=body)
        assert response.status_code == 202, response.text
        receipt = response.json()
        expected = compute_priority(
            "text",
            RequestMetadata.model_validate(body["metadata"]),
            "user_id" in body,
            i,
            100,
        )
        assert receipt["priority"] == expected
        submitted.append((expected, i, receipt["request_id"], f"q{i}"))

    full = http.post("/core/requests", json={"type": "text", "data": "one too many"})
    assert full.status_code == 429
    assert full.json()["error"] == "QueueFull"

    expected_order = [s[2] for s in sorted(submitted)]
    queue = http.get("/core/queue").json()
    assert queue["size"] == 100 and queue["paused_until"] is not None
    assert [e["request_id"] for e in queue["entries"]] == expected_order

    assert http.delete("/core/interrupt").status_code == 204
    wait_for_condition(lambda: len(server.received) == 100, timeout_s=60)
    by_id = {rid: text for _, _, rid, text in submitted}
    assert [task["request_id"] for task in server.received] == expected_order
    for task in server.received:
        assert task["agent_id"] == "RequestCoordinator"
        assert task["task_type"] == "text_processing"
        assert task["parameters"]["request"]["data"] == by_id[task["request_id"]]

    wait_for_condition(lambda: finished(http, expected_order[-1]), timeout_s=30)
    statuses = [http.get(f"/core/requests/{rid}").json() for rid in expected_order]
    assert [s["dispatch_seq"] for s in statuses] == sorted(s["dispatch_seq"] for s in statuses)
    for status in statuses:
        assert status["state"] == "succeeded", status
        assert status["downstream"] == agent_id
        assert status["result"]["data"]["echo"] == by_id[status["request_id"]]


def test_breaker_opens_after_three_failures_and_closes_after_reset(
    http: httpx.Client, agent: tuple[str, ZmqAgent]
) -> None:
    agent_id, server = agent
    server.stop()  # the agent dies; its registration stays
    errors = []
    for i in range(4):
        request_id = http.post("/core/requests", json={"type": "text", "data": f"x{i}"}).json()[
            "request_id"
        ]
        wait_for_condition(lambda rid=request_id: finished(http, rid), timeout_s=30)  # type: ignore[misc]
        status = http.get(f"/core/requests/{request_id}").json()
        assert status["state"] == "failed"
        errors.append(status["error"]["error"])
    assert errors == ["DispatchFailed", "DispatchFailed", "DispatchFailed", "CircuitOpen"]
    breakers = {b["downstream"]: b for b in http.get("/core/breakers").json()}
    assert breakers[agent_id]["state"] in ("open", "half_open")

    server.start()  # same port
    wait_for_condition(
        lambda: (
            {b["downstream"]: b for b in http.get("/core/breakers").json()}[agent_id]["state"]
            == "half_open"
        ),
        timeout_s=10,
    )
    request_id = http.post("/core/requests", json={"type": "text", "data": "back"}).json()[
        "request_id"
    ]
    wait_for_condition(lambda: finished(http, request_id), timeout_s=30)
    assert http.get(f"/core/requests/{request_id}").json()["state"] == "succeeded"
    breakers = {b["downstream"]: b for b in http.get("/core/breakers").json()}
    assert breakers[agent_id]["state"] == "closed"


def test_interrupt_cancels_queued_requests_of_the_session(
    http: httpx.Client, agent: tuple[str, ZmqAgent]
) -> None:
    _, server = agent
    http.post("/core/interrupt", json={"session_id": "nobody", "pause_s": 300})
    mine = [
        http.post(
            "/core/requests", json={"type": "text", "data": "m", "session_id": "s-int"}
        ).json()["request_id"]
        for _ in range(3)
    ]
    other = http.post(
        "/core/requests", json={"type": "text", "data": "o", "session_id": "s-keep"}
    ).json()["request_id"]
    report = http.post("/core/interrupt", json={"session_id": "s-int", "pause_s": 0}).json()
    assert sorted(report["cancelled"]) == sorted(mine)
    for request_id in mine:
        status = http.get(f"/core/requests/{request_id}").json()
        assert status["state"] == "cancelled" and status["error"]["error"] == "RequestCancelled"
    http.delete("/core/interrupt")
    wait_for_condition(lambda: finished(http, other), timeout_s=30)
    assert [t["parameters"]["request"]["data"] for t in server.received] == ["o"]


def test_submit_and_wait_answers_the_result_or_202_with_the_id_to_poll(
    http: httpx.Client, agent: tuple[str, ZmqAgent]
) -> None:
    agent_id, _ = agent
    done = http.post("/core/requests/wait", json={"type": "text", "data": "sw"})
    assert done.status_code == 200, done.text
    status = done.json()
    assert status["state"] == "succeeded" and status["downstream"] == agent_id
    assert status["result"]["data"]["echo"] == "sw"

    http.post("/core/interrupt", json={"session_id": "nobody", "pause_s": 300})
    late = http.post(
        "/core/requests/wait", json={"type": "text", "data": "late"}, params={"timeout_s": 0.2}
    )
    assert late.status_code == 202, late.text
    request_id = late.json()["request_id"]
    assert late.json()["state"] == "queued"
    assert late.headers["location"] == f"/core/requests/{request_id}"
    http.delete("/core/interrupt")  # the request was not lost: polling its id finishes it
    polled = http.get(f"/core/requests/{request_id}", params={"wait_s": 10}).json()
    assert polled["state"] == "succeeded" and polled["result"]["data"]["echo"] == "late"
    # Both outcomes reach the agent's trust score (sent in a batch, in the background).
    wait_for_condition(
        lambda: http.get(f"/security/trust/{agent_id}").json()["evidence"] > 0, timeout_s=20
    )

    for bad in (0, 31, "soon"):
        refused = http.post(
            "/core/requests/wait", json={"type": "text", "data": "x"}, params={"timeout_s": bad}
        )
        assert refused.status_code == 422, (bad, refused.text)


def test_grpc_submit_and_wait(
    aisys_system: Settings, admin_token: str, http: httpx.Client, agent: tuple[str, ZmqAgent]
) -> None:
    metadata = (("application", "core"), ("authorization", f"Bearer {admin_token}"))
    with grpc.insecure_channel(f"127.0.0.1:{aisys_system.ports.grpc}") as channel:
        stub = pb_grpc.CoreOrchestratorStub(channel)  # type: ignore[no-untyped-call]
        text = pb.SubmitRequest(type="text", text="g-sw", session_id="g")
        done = stub.SubmitAndWait(
            pb.SubmitAndWaitRequest(request=text, timeout_s=10), metadata=metadata, timeout=30
        )
        assert done.state == "succeeded" and done.downstream == agent[0]
        assert '"echo":"g-sw"' in done.result_json.replace(" ", "")

        http.post("/core/interrupt", json={"session_id": "nobody", "pause_s": 300})
        late = stub.SubmitAndWait(
            pb.SubmitAndWaitRequest(request=text, timeout_s=0.2), metadata=metadata, timeout=30
        )
        assert late.state == "queued" and late.request_id.startswith("req_")
        http.delete("/core/interrupt")
        wait_for_condition(lambda: finished(http, late.request_id), timeout_s=30)
        status = stub.Status(
            pb.StatusRequest(request_id=late.request_id), metadata=metadata, timeout=30
        )
        assert status.state == "succeeded"

        with pytest.raises(grpc.RpcError) as bad:
            stub.SubmitAndWait(
                pb.SubmitAndWaitRequest(request=text, timeout_s=31), metadata=metadata, timeout=30
            )
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as anonymous:
            stub.SubmitAndWait(
                pb.SubmitAndWaitRequest(request=text),
                metadata=(("application", "core"),),
                timeout=30,
            )
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_unknown_request_and_bad_media_are_clear_errors(http: httpx.Client) -> None:
    missing = http.get("/core/requests/req_nope")
    assert missing.status_code == 404 and missing.json()["error"] == "RequestNotFound"
    bad = http.post("/core/requests", json={"type": "audio", "audio_data": "not base64!"})
    assert bad.status_code == 422


def test_health_sweep_marks_silent_agents_critical_and_answering_ones_passing(
    http: httpx.Client,
) -> None:
    health = ZmqAgent().start()
    silent_id, alive_id = f"silent-{uuid.uuid4().hex[:6]}", f"alive-{uuid.uuid4().hex[:6]}"
    try:
        silent_port = free_port()  # nothing listens there
        register(
            http, silent_id, 5999, capabilities=[], check="none", health_check_port=silent_port
        )
        register(http, alive_id, 5998, capabilities=[], check="none", health_check_port=health.port)

        def health_of(agent_id: str) -> str:
            return str(http.get(f"/core/agents/{agent_id}").json()["health"])

        wait_for_condition(lambda: health_of(silent_id) == "critical", timeout_s=20)
        wait_for_condition(lambda: health_of(alive_id) == "passing", timeout_s=20)
        note = http.get(f"/core/agents/{silent_id}").json()["health_note"]
        assert "did not answer" in note or "no reply" in note
        assert {"action": "health_check"} in health.received
    finally:
        http.delete(f"/core/agents/{silent_id}")
        http.delete(f"/core/agents/{alive_id}")
        health.close()
