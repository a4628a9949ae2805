"""The hub's series of the other services, read from the running ones: a granted and a queued
VRAM lease, the request queue, error rates, and an alert rule on a queued lease's wait."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cluster.base.settings import Settings
from tests.conftest import wait_for_condition
from tests.integration.test_observability_http import MIB, scrape

pytestmark = pytest.mark.integration


def values(http: httpx.Client, name: str, **labels: str) -> list[float]:
    return [
        v
        for got, v in scrape(http).get(name, [])
        if all(got.get(k) == x for k, x in labels.items())
    ]


@pytest.fixture
def leases(http: httpx.Client) -> Iterator[list[dict[str, Any]]]:
    """Leases the test asks for on pc2; released (or withdrawn) after it."""
    made: list[dict[str, Any]] = []
    yield made
    for lease in made:
        http.delete(f"/resources/leases/{lease['lease_id']}")


def test_every_service_source_answers_with_real_values(
    aisys_system: Settings, http: httpx.Client
) -> None:
    def answered() -> bool:
        sources = {got["source"]: v for got, v in scrape(http).get("aisys_service_source_up", [])}
        return sources == {"leases": 1.0, "requests": 1.0, "breakers": 1.0, "errors": 1.0}

    wait_for_condition(answered, timeout_s=60, interval_s=0.5)
    capacity = aisys_system.core.coordinator.queue_max_size
    assert values(http, "aisys_request_queue_capacity") == [capacity]
    assert len(values(http, "aisys_request_queue_length")) == 1
    # Both hosts' GPUs are known, so each has a lease count (0 unless a test holds one).
    gpus = {(got["host"], got["gpu"]) for got, _ in scrape(http).get("aisys_leases_active", [])}
    assert {("mainpc", "0"), ("pc2", "0")} <= gpus


def test_a_granted_and_a_queued_lease_show_and_a_wait_rule_fires(
    http: httpx.Client, leases: list[dict[str, Any]]
) -> None:
    owner = f"it-{uuid.uuid4().hex[:6]}"
    for vram, status in ((9000, 201), (5000, 202)):
        body = {"owner": owner, "vram_mb": vram, "host": "pc2", "ttl_s": 120}
        response = http.post("/resources/leases", json=body)
        assert response.status_code == status, response.text
        leases.append(response.json())
    granted, queued = leases

    def on_pc2_gpu0() -> list[dict[str, Any]]:
        """The grants the service reports on pc2's GPU 0: ours, and any an earlier test of the
        session still holds (a task's lease lives until its task ends)."""
        granted_now = http.get("/resources/leases").json()["granted"]
        return [g for g in granted_now if (g["host"], g["gpu_index"]) == ("pc2", 0)]

    def shown() -> bool:
        grants = on_pc2_gpu0()
        assert granted["lease_id"] in {g["lease_id"] for g in grants}
        leased = values(http, "aisys_leased_vram_bytes", host="pc2", gpu="0")
        active = values(http, "aisys_leases_active", host="pc2", gpu="0")
        wait = values(http, "aisys_lease_queue_wait_seconds", lease_id=queued["lease_id"])
        return (
            leased == [sum(g["vram_mb"] for g in grants) * MIB]
            and active == [len(grants)]
            and len(wait) == 1
            and wait[0] > 0
        )

    wait_for_condition(shown, timeout_s=30, interval_s=0.5)
    assert values(http, "aisys_lease_queue_length")[0] >= 1
    (labels,) = [
        got
        for got, _ in scrape(http)["aisys_lease_queue_wait_seconds"]
        if got["lease_id"] == queued["lease_id"]
    ]
    assert (labels["owner"], labels["host"]) == (owner, "pc2")

    rule = {
        "name": "ItLeaseWait",
        "metric": "aisys_lease_queue_wait_seconds",
        "matchers": {"owner": owner},
        "threshold": 1.0,
        "summary": "integration",
    }
    assert http.put("/observability/rules/ItLeaseWait", json=rule).status_code == 200
    try:

        def firing() -> bool:
            alerts = http.get("/observability/alerts").json()
            return any(a["rule"] == "ItLeaseWait" and a["state"] == "firing" for a in alerts)

        wait_for_condition(firing, timeout_s=30, interval_s=0.5)
        # The queued request is granted once the first lease goes: its wait series ends.
        assert http.delete(f"/resources/leases/{granted['lease_id']}").status_code == 200
        wait_for_condition(
            lambda: not values(http, "aisys_lease_queue_wait_seconds", lease_id=queued["lease_id"]),
            timeout_s=30,
            interval_s=0.5,
        )
    finally:
        http.delete("/observability/rules/ItLeaseWait")


def test_error_events_raise_the_agents_error_rate(
    aisys_system: Settings, http: httpx.Client
) -> None:
    agent = f"it-rate-{uuid.uuid4().hex[:6]}"
    events = [{"agent": agent, "message": f"m{i}", "severity": "error"} for i in range(6)]
    assert http.post("/errors/", json={"events": events}).status_code == 200
    window = aisys_system.observability.error_rate_window_s

    wait_for_condition(
        lambda: values(http, "aisys_error_rate_per_second", agent=agent) == [6 / window],
        timeout_s=60,
        interval_s=0.5,
    )
