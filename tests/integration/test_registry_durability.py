"""Nothing acknowledged is lost: through an actor kill, and through `aisys down` + `aisys up`."""

from __future__ import annotations

import uuid
from typing import cast

import httpx
import pytest
import ray

from cluster.base.constants import RAY_NAMESPACE, REGISTRY_ACTOR_NAME
from cluster.base.settings import Settings
from cluster.ops import system
from cluster.ops._progress import Progress
from tests.conftest import wait_for_condition

pytestmark = pytest.mark.integration


def register_many(http: httpx.Client, count: int) -> list[str]:
    ids = [f"durable-{uuid.uuid4().hex[:8]}" for _ in range(count)]
    for agent_id in ids:
        response = http.post(
            "/core/agents", json={"agent_id": agent_id, "host": "10.1.1.1", "port": 7000}
        )
        assert response.status_code == 200
    return ids


def test_registrations_survive_a_registry_actor_kill(
    aisys_system: Settings, http: httpx.Client
) -> None:
    ids = register_many(http, 20)
    system.connect(aisys_system)
    actor = ray.get_actor(REGISTRY_ACTOR_NAME, namespace=RAY_NAMESPACE)
    version_before = cast(int, ray.get(actor.version.remote()))
    ray.kill(actor, no_restart=False)

    # The restarted actor reloads from SQLite; the version does not go backwards.
    def restarted() -> bool:
        return bool(ray.get(actor.version.remote(), timeout=5) == version_before)

    wait_for_condition(restarted, timeout_s=60)
    stored = {r.agent_id for r in ray.get(actor.list_agents.remote())}
    assert set(ids) <= stored
    for agent_id in ids:
        assert http.get(f"/core/agents/{agent_id}").status_code == 200

    # Writes keep working through the restarted actor, and the replica's view follows.
    [after] = register_many(http, 1)
    assert http.get(f"/core/agents/{after}").json()["host"] == "10.1.1.1"


def test_registrations_survive_down_and_up(aisys_system: Settings, http: httpx.Client) -> None:
    ids = register_many(http, 5)
    progress = Progress(quiet=True)
    system.down(aisys_system, progress)
    system.up(aisys_system, progress)  # leaves the session system running for other tests

    def all_back() -> bool:
        return all(http.get(f"/core/agents/{a}").status_code == 200 for a in ids)

    wait_for_condition(all_back, timeout_s=60)
