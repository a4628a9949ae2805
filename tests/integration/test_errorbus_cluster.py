"""ErrorBus and the 7150 bridge as deployed: HTTP routes, SSE, the bridge port, a NATS outage."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid

import httpx
import pytest
import zmq

from cluster.base.nats_client import nats_client
from cluster.base.settings import Settings
from cluster.ops import system
from tests.conftest import wait_for_condition
from tests.integration._errorbus import read_stream

pytestmark = pytest.mark.integration


def _find(http: httpx.Client, **params: str | int) -> list[dict[str, object]]:
    response = http.get("/errors/", params=params)
    response.raise_for_status()
    return [item["event"] for item in response.json()["items"]]


def test_publish_query_page_and_count_over_http(http: httpx.Client) -> None:
    agent = f"http-{uuid.uuid4().hex[:8]}"
    one = http.post("/errors/", json={"agent": agent, "severity": "CRITICAL", "message": "a"})
    assert one.status_code == 200, one.text
    assert one.json()["stored"] == 1
    batch = {"events": [{"agent": agent, "severity": "info", "message": f"b{i}"} for i in range(5)]}
    many = http.post("/errors/", json=batch)
    assert many.status_code == 200 and len(many.json()["accepted"]) == 5

    wait_for_condition(lambda: len(_find(http, agent=agent)) == 6)
    assert [e["message"] for e in _find(http, agent=agent, min_severity="error")] == ["a"]
    first = http.get("/errors/", params={"agent": agent, "limit": 4}).json()
    rest = http.get(
        "/errors/", params={"agent": agent, "limit": 4, "before_seq": first["next_before_seq"]}
    ).json()
    assert len(first["items"]) + len(rest["items"]) == 6 and rest["next_before_seq"] is None
    counts = http.get("/errors/counts").json()["agents"][agent]
    assert counts == {"total": 6, "by_severity": {"info": 5, "critical": 1}}

    bad = http.post("/errors/", json={"agent": agent, "severity": "purple"})
    assert bad.status_code == 422
    huge = http.post("/errors/", json={"agent": agent, "message": "x" * 300_000})
    assert huge.status_code == 413 and huge.json()["error"] == "EventTooLarge"


def test_sse_stream_tails_new_events(http: httpx.Client, aisys_system: Settings) -> None:
    agent = f"sse-{uuid.uuid4().hex[:8]}"
    lines: list[str] = []
    opened = threading.Event()

    failures: list[BaseException] = []

    def tail() -> None:
        url = f"http://127.0.0.1:{aisys_system.ports.http}/errors/stream"
        try:
            with httpx.stream(
                "GET", url, params={"agent": agent}, headers=http.headers, timeout=30
            ) as response:
                lines.append(f"{response.status_code} {response.headers['content-type']}")
                for line in response.iter_lines():
                    opened.set()
                    lines.append(line)
                    if line.startswith("data:"):
                        return
        except BaseException as exc:  # reported by the test thread below
            failures.append(exc)
            opened.set()

    reader = threading.Thread(target=tail, daemon=True)
    reader.start()
    assert opened.wait(30), lines
    assert not failures, (failures, lines)
    assert lines[0] == "200 text/event-stream; charset=utf-8"

    # The subscription is made before the first line is sent; publish until one arrives anyway.
    def delivered() -> bool:
        http.post("/errors/", json={"agent": agent, "message": "live"}).raise_for_status()
        reader.join(0.5)
        return not reader.is_alive()

    wait_for_condition(delivered, timeout_s=30)
    data = next(line for line in lines if line.startswith("data:"))
    assert json.loads(data.removeprefix("data:"))["message"] == "live"
    assert any(line.startswith("id: ") for line in lines)


def test_legacy_publishers_reach_errorbus_through_the_bridge_port(
    http: httpx.Client, aisys_system: Settings
) -> None:
    agent = f"legacy-{uuid.uuid4().hex[:8]}"
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.connect(f"tcp://127.0.0.1:{aisys_system.errors.bridge.sub_port}")
    body = {
        "timestamp": "2025-07-15T11:00:00",
        "agent": agent,
        "type": "LOGIN_ERROR",
        "message": "bad password",
        "severity": "ERROR",
    }
    try:
        # Slow joiner: the first messages after connect are dropped, so repeat until one lands.
        def landed() -> bool:
            pub.send_multipart([b"ERROR", json.dumps(body).encode()])
            return bool(_find(http, agent=agent))

        wait_for_condition(landed, timeout_s=60, interval_s=0.3)
        pub.send_multipart([b"\xff\x00junk"])
    finally:
        pub.close(linger=0)
        ctx.term()
    event = _find(http, agent=agent)[0]
    assert (event["error_type"], event["severity"]) == ("LOGIN_ERROR", "error")
    wait_for_condition(lambda: http.get("/legacy/error-bridge").json()["malformed"] >= 1)


def test_nats_outage_over_http_loses_no_acknowledged_event(
    http: httpx.Client, aisys_system: Settings
) -> None:
    nats_server = system.embedded_nats(aisys_system)
    agent = f"outage-{uuid.uuid4().hex[:8]}"
    acknowledged: list[str] = []
    spooled = 0
    try:
        for round_ in range(30):
            if round_ == 10:
                assert nats_server.stop()
            if round_ == 20:
                nats_server.start()
            events = [{"agent": agent, "message": f"{round_}-{i}"} for i in range(10)]
            response = http.post("/errors/", json={"events": events})
            assert response.status_code == 200, response.text
            acknowledged += response.json()["accepted"]
            spooled += response.json()["spooled"]
    finally:
        nats_server.start()
    assert spooled > 0, "no request saw the outage"
    broker = nats_client(aisys_system)

    def all_stored() -> bool:
        ids = {s.event.id for s in asyncio.run(read_stream(broker)) if s.event.agent == agent}
        return ids == set(acknowledged)

    wait_for_condition(all_stored, timeout_s=60, interval_s=0.5)
