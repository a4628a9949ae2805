"""Gradual migration off the legacy agents: mirror mode, ``migrate status``, honest health.

The legacy agent is a real ZeroMQ stand-in of the old ServiceRegistry (a REP socket in a
thread with its own in-memory registry, answering as docs/legacy-protocol.md section 4.1 says);
the gateways are real: a private one in this process for mirror mode, the deployed ones of the
session system for the call counts and health replies.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
import zmq
import zmq.asyncio

from actors.registry.follower import RegistryFollower
from cluster.base.constants import RAY_NAMESPACE, REGISTRY_ACTOR_NAME
from cluster.base.settings import LegacyGatewaySettings, LegacyService, Settings
from cluster.ops import system
from cluster.ops.cli import main
from legacy_gateway._codec import ActionRequest, LegacyRequest, Reply
from legacy_gateway.gateway import HostGateway
from legacy_gateway.mirror import MirrorPort, MirrorStats
from legacy_gateway.registry_port import RegistryLink
from legacy_gateway.server import LegacyServer, Received, ServerLimits
from tests.conftest import free_port, wait_for_condition
from tests.integration._legacy_client import (  # noqa: F401 (fixtures)
    LegacyClient,
    client_fixture,
    ports_fixture,
    zctx_fixture,
)
from tests.integration.conftest import settings_file

pytestmark = [pytest.mark.integration]
S = LegacyService


class LegacyRegistry:
    """The old ServiceRegistry, standing in for a legacy agent still running: real ZeroMQ.

    ``register_agent`` (nested ``registration_data`` or flat) needs agent_id, agent_type, host
    and an integer port, else it answers an error; ``get_agent_endpoint`` and ``list_agents``
    read its own dict. ``delay_s`` makes it slow.
    """

    def __init__(self, delay_s: float = 0.0) -> None:
        self.agents: dict[str, dict[str, Any]] = {}
        self.received = 0
        self._delay_s = delay_s
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._sock = self._ctx.socket(zmq.REP)
        self._sock.setsockopt(zmq.LINGER, 0)
        self.port = self._sock.bind_to_random_port("tcp://127.0.0.1")
        self.address = f"tcp://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            if self._sock.poll(50):
                request = json.loads(self._sock.recv())
                self.received += 1
                if self._delay_s:
                    time.sleep(self._delay_s)
                self._sock.send(json.dumps(self._answer(request)).encode())
        self._sock.close(linger=0)

    def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        action = request.get("action")
        if action == "register_agent":
            data = request.get("registration_data", request)
            missing = [k for k in ("agent_id", "agent_type", "host", "port") if k not in data]
            if missing or not isinstance(data.get("port"), int):
                return {"status": "error", "error": f"validation error: {missing or 'port'}"}
            self.agents[data["agent_id"]] = {"host": data["host"], "port": data["port"]}
            return {"status": "success"}
        if action == "get_agent_endpoint":
            found = self.agents.get(str(request.get("agent_name")))
            if found is None:
                return {"status": "error", "error": f"Agent {request.get('agent_name')} not found"}
            return {"status": "success", **found}
        if action == "list_agents":
            return {"status": "success", "agents": sorted(self.agents)}
        if request.get("command") == "REGISTER":  # the old SystemDigitalTwin's dialect
            payload = request.get("payload", {})
            if not isinstance(payload.get("port"), int):
                return {"status": "ERROR", "message": "port required"}
            self.agents[payload["name"]] = {"host": payload["ip"], "port": payload["port"]}
            return {"status": "SUCCESS", "message": f"Service {payload['name']} registered"}
        return {"status": "error", "error": f"Unknown action: {action}"}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._ctx.term()


async def _ask(sock: zmq.asyncio.Socket, obj: object) -> bytes:
    await sock.send(json.dumps(obj).encode())
    reply: bytes = await asyncio.wait_for(sock.recv(), 10)
    return reply


def _registration(agent_id: str, host: str, port: int | None) -> dict[str, Any]:
    data: dict[str, Any] = {"agent_id": agent_id, "agent_type": "Stream", "host": host}
    if port is not None:
        data["port"] = port
    return {"action": "register_agent", "registration_data": data}


def _twin_registration(name: str, host: str, port: int) -> dict[str, Any]:
    """SystemDigitalTwin's ``REGISTER`` as BaseAgent sends it (docs/legacy-protocol.md 3.2)."""
    return {"command": "REGISTER", "payload": {"name": name, "ip": host, "port": port}}


class NeverRecords:
    """An aisys side that never answers: the mirror must not wait for it."""

    service = "NeverRecords"

    def handle(self, request: LegacyRequest, received: Received) -> Any:  # noqa: ARG002
        assert isinstance(request, ActionRequest) and request.action == "register_agent"
        return asyncio.sleep(3600, Reply(status="success"))


@pytest.mark.anyio
async def test_a_slow_aisys_side_never_slows_or_changes_the_delegated_replies() -> None:
    legacy = LegacyRegistry()
    ctx = zmq.asyncio.Context()
    mirror = MirrorPort(
        S.SERVICE_REGISTRY,
        "ServiceRegistry",
        legacy.address,
        ctx,
        aisys=NeverRecords(),
        queue_max=5,
        timeout_s=30.0,
    )
    limits = ServerLimits(max_frame_bytes=4096, reply_timeout_s=5.0, max_pending=64)
    server_ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    server = LegacyServer(server_ctx, "127.0.0.1", free_port(), mirror, limits)
    server.start()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"tcp://127.0.0.1:{server.port}")
    try:
        started = time.monotonic()
        replies = [
            await _ask(sock, _registration(f"slow-{i}", "10.8.0.1", 6000 + i)) for i in range(40)
        ]
        refused = await _ask(sock, _registration("no-port", "10.8.0.1", None))
        elapsed = time.monotonic() - started
        # Each reply is the legacy agent's, byte for byte, and only one per request.
        assert set(replies) == {b'{"status": "success"}'}
        assert json.loads(refused)["status"] == "error"
        assert legacy.received == 41
        assert elapsed < 10.0, f"40 mirrored registrations took {elapsed:.1f}s"
        stats = mirror.stats
        # One write is with the aisys side (which never answers), five wait; the rest dropped.
        assert (stats.queued, stats.queue_max, stats.recorded) == (5, 5, 0)
        assert 41 - 1 - 5 <= stats.dropped <= 41 - 5  # the worker may not have taken #1 yet
        assert stats.last_problem is not None and "queue was full" in stats.last_problem
    finally:
        sock.close(linger=0)
        await server.close()
        await mirror.close()
        ctx.term()
        server_ctx.term()
        legacy.stop()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def mirrored_registry(
    aisys_system: Settings,
) -> AsyncIterator[tuple[LegacyRegistry, HostGateway, dict[LegacyService, int], Any]]:
    """A private gateway whose ServiceRegistry and SystemDigitalTwin ports mirror a legacy
    registry into aisys's."""
    system.connect(aisys_system)
    actor = ray.get_actor(REGISTRY_ACTOR_NAME, namespace=RAY_NAMESPACE)
    follower = RegistryFollower(actor)
    follower.start()
    legacy = LegacyRegistry()
    ports = {S.SERVICE_REGISTRY: free_port(), S.SYSTEM_DIGITAL_TWIN: free_port()}
    settings = LegacyGatewaySettings(
        bind="127.0.0.1",
        ports={"mainpc": ports},
        # One legacy registry behind both ports (the old SDT forwarded registrations to it).
        mirror_to=dict.fromkeys(ports, legacy.address),
        reply_timeout_s=10.0,
    )
    gateway = HostGateway(settings, "mainpc", RegistryLink(actor, follower, 10.0))
    gateway.start()
    try:
        yield legacy, gateway, ports, actor
    finally:
        await gateway.close()
        await follower.stop()
        legacy.stop()


@pytest.mark.anyio
async def test_mirror_keeps_the_aisys_registry_equal_to_the_legacy_registry(
    mirrored_registry: tuple[LegacyRegistry, HostGateway, dict[LegacyService, int], Any],
) -> None:
    legacy, gateway, ports, actor = mirrored_registry
    prefix = f"mirror-{uuid.uuid4().hex[:6]}"
    ctx = zmq.asyncio.Context()

    def connect(service: LegacyService) -> zmq.asyncio.Socket:
        sock = ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(f"tcp://127.0.0.1:{ports[service]}")
        return sock

    sockets = [(connect(S.SERVICE_REGISTRY), connect(S.SYSTEM_DIGITAL_TWIN)) for _ in range(3)]

    async def stream(c: int, sr: zmq.asyncio.Socket, sdt: zmq.asyncio.Socket) -> list[bytes]:
        replies = []
        for i in range(20):
            agent, host = f"{prefix}-{c}-{i}", f"10.9.{c}.{i}"
            if i % 2:  # every other agent registers with the old SDT's REGISTER
                replies.append(await _ask(sdt, _twin_registration(agent, host, 7000 + i)))
            else:
                replies.append(await _ask(sr, _registration(agent, host, 7000 + i)))
            if i % 10 == 9:  # a re-registration moves an agent; one without a port is refused
                moved = f"{prefix}-{c}-{i - 5}"
                replies.append(await _ask(sr, _registration(moved, f"10.9.{c}.99", 7999)))
                refused = _registration(f"{prefix}-{c}-bad-{i}", "10.9.9.9", None)
                replies.append(await _ask(sr, refused))
        return replies

    def mirrors() -> list[MirrorStats]:
        return [p.mirror for p in gateway.migration() if p.mirror is not None]

    try:
        streams = await asyncio.gather(*(stream(c, *pair) for c, pair in enumerate(sockets)))
        replies = [json.loads(r) for batch in streams for r in batch]
        assert sum(r["status"] in ("success", "SUCCESS") for r in replies) == 3 * (20 + 2)
        assert sum(r["status"] == "error" for r in replies) == 3 * 2

        def all_recorded() -> bool:
            stats = mirrors()
            assert all(m.failed == m.refused == m.dropped == 0 for m in stats), stats
            return sum(m.queued for m in stats) == 0 and sum(m.recorded for m in stats) == 66

        await asyncio.to_thread(wait_for_condition, all_recorded, timeout_s=60)
        stored = await actor.list_agents.remote()
        in_aisys = {
            r.agent_id: {"host": r.host, "port": r.port}
            for r in stored
            if r.agent_id.startswith(prefix)
        }
        in_legacy = {k: v for k, v in legacy.agents.items() if k.startswith(prefix)}
        assert len(in_legacy) == 60 and in_aisys == in_legacy
        assert in_aisys[f"{prefix}-1-4"] == {"host": "10.9.1.99", "port": 7999}
        assert in_aisys[f"{prefix}-2-3"] == {"host": "10.9.2.3", "port": 7003}  # via REGISTER
        rows = {p.service: p for p in gateway.migration()}
        sr, sdt = rows[S.SERVICE_REGISTRY], rows[S.SYSTEM_DIGITAL_TWIN]
        assert sr.mode == sdt.mode == "mirror" and sr.legacy_address == legacy.address
        assert sr.mirror is not None and sr.mirror.skipped == 6
        assert sdt.mirror is not None and sdt.mirror.recorded == 30
        assert ("register_agent", f"{prefix}-0-0") in {(c.action, c.agent) for c in sr.calls}
        assert ("REGISTER", f"{prefix}-0-1") in {(c.action, c.agent) for c in sdt.calls}
    finally:
        for pair in sockets:
            for sock in pair:
                sock.close(linger=0)
        ctx.term()


def test_migrate_status_counts_calls_per_port_and_action(
    aisys_system: Settings,
    client: dict[str, LegacyClient],
    http: httpx.Client,
    anonymous_http: httpx.Client,
    admin_token: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    probe = f"MigrateProbe-{uuid.uuid4().hex[:6]}"
    sr = client[f"mainpc/{S.SERVICE_REGISTRY}"]
    lookup = {"action": "get_agent_endpoint", "agent_name": "SystemDigitalTwin"}
    for i in range(3):  # BaseAgent's enrichment: a fresh request_id each time
        assert sr.send_json({**lookup, "source_agent": probe, "request_id": str(i)})["port"]
    for _ in range(2):  # byte-identical frames: answered from the replay cache
        assert sr.send_json({**lookup, "source_agent": probe})["status"] == "success"
    for _ in range(2):
        assert sr.send_json({"action": "list_agents", "source_agent": probe})["agents"]
    rm = client[f"pc2/{S.RESOURCE_MANAGER}"]
    assert rm.send_json({"action": "get_stats", "source_agent": probe})["status"] == "success"

    assert anonymous_http.get("/legacy/migrate").status_code == 401
    status = http.get("/legacy/migrate").json()
    modes = {s["service"]: s["mode"] for s in status["services"]}
    assert set(modes) >= {"service_registry", "resource_manager"}
    assert set(modes.values()) == {"replace"}  # the session system migrated everything
    sr_port = aisys_system.legacy_gateway.ports["mainpc"][S.SERVICE_REGISTRY]
    (row,) = [p for p in status["ports"] if p["port"] == sr_port and p["host"] == "mainpc"]
    mine = {c["action"]: c for c in row["calls"] if c["agent"] == probe}
    assert mine["get_agent_endpoint"]["calls"] == 5
    assert mine["list_agents"]["calls"] == 2
    assert mine["get_agent_endpoint"]["peer"] == "127.0.0.1"
    assert mine["list_agents"]["last_seen_at"] <= time.time()
    rm_port = aisys_system.legacy_gateway.ports["pc2"][S.RESOURCE_MANAGER]
    (rm_row,) = [p for p in status["ports"] if p["port"] == rm_port]
    assert [(c["action"], c["calls"]) for c in rm_row["calls"] if c["agent"] == probe] == [
        ("get_stats", 1)
    ]

    config = str(settings_file(aisys_system, tmp_path))
    assert main(["--config", config, "migrate", "status", "--token", admin_token]) == 0
    table = capsys.readouterr().out
    assert f"{sr_port} service_registry (ServiceRegistry, replace)" in table
    assert probe in table and "get_agent_endpoint" in table
    assert main(["--config", config, "migrate", "status", "--json", "--token", admin_token]) == 0
    assert json.load(io.StringIO(capsys.readouterr().out))["ports"]
    assert main(["--config", config, "migrate", "status", "--token", "not-a-token"]) == 2
    assert "HTTP 401" in capsys.readouterr().err


def test_health_replies_name_the_state_of_the_service_behind_them(
    aisys_system: Settings, client: dict[str, LegacyClient]
) -> None:
    for name in (
        f"mainpc/{S.UNIFIED_SYSTEM}",
        f"mainpc/{S.UNIFIED_SYSTEM_HEALTH}",
        f"pc2/{S.SYSTEM_HEALTH_MANAGER}",
        f"pc2/{S.SYSTEM_HEALTH_MANAGER_HEALTH}",
    ):
        reply = client[name].send_json({"action": "health"})
        assert reply["status"] == "ok", (name, reply)
    # A gateway whose registry view never loads (no feed): SHM has nothing to report (error),
    # USA is degraded (CoreOrchestrator answers, its registry and twin figures are missing).
    system.connect(aisys_system)
    settings = LegacyGatewaySettings(
        bind="127.0.0.1",
        ports={"pc2": {S.SYSTEM_HEALTH_MANAGER: free_port(), S.UNIFIED_SYSTEM: free_port()}},
    )

    async def ask_private() -> tuple[dict[str, Any], dict[str, Any]]:
        link = RegistryLink(None, RegistryFollower(None), 1.0)
        gateway = HostGateway(settings, "pc2", link)
        gateway.start()
        ctx = zmq.asyncio.Context()
        try:
            answers = []
            for service in (S.SYSTEM_HEALTH_MANAGER, S.UNIFIED_SYSTEM):
                sock = ctx.socket(zmq.REQ)
                sock.setsockopt(zmq.LINGER, 0)
                sock.connect(f"tcp://127.0.0.1:{settings.ports['pc2'][service]}")
                answers.append(json.loads(await _ask(sock, {"action": "health_check"})))
                sock.close(linger=0)
            return answers[0], answers[1]
        finally:
            ctx.term()
            await gateway.close()

    shm, usa = asyncio.run(ask_private())
    assert shm["status"] == "error" and "registry view" in shm["message"]
    assert usa["status"] == "degraded" and usa["ready"] is False
    assert "error" in usa["service_metrics"]


def test_legacy_figures_are_known_or_marked_unknown(client: dict[str, LegacyClient]) -> None:
    pm = client[f"pc2/{S.PERFORMANCE_MONITOR}"]
    service = f"QueueOnly-{uuid.uuid4().hex[:6]}"
    logged = pm.send_json(
        {"action": "log_metric", "service": service, "metric_type": "queue_size", "value": 7}
    )
    assert logged["status"] == "success"
    metrics = pm.send_json({"action": "get_metrics", "service": service})["metrics"]
    assert metrics == {
        "response_time": {"current": None, "average": None},
        "throughput": 0.0,
        "reported": {"queue_size": 7},
    }
    negative = pm.send_json(
        {"action": "log_metric", "service": service, "metric_type": "response_time", "value": -1}
    )
    assert negative["status"] == "error"
    pla = client[f"pc2/{S.PERFORMANCE_LOGGER}"]
    rows = pla.send_json({"action": "get_agent_metrics", "agent": service})["metrics"]
    assert [r["duration"] for r in rows] == [None]  # a queue size is no duration of 0 s
    vram = client[f"mainpc/{S.VRAM_OPTIMIZER}"].send_json({"command": "GET_VRAM_STATUS"})
    mainpc = vram["mainpc_vram"]
    assert mainpc["declared"] is False and isinstance(mainpc["used_mb"], int)
    assert mainpc["source"] == "nvml-double"
    stats = client[f"pc2/{S.RESOURCE_MANAGER}"].send_json({"action": "get_stats"})["stats"]
    assert isinstance(stats["gpu_memory_percent"], float)  # pc2's measured 3060


def test_a_legacy_identity_takes_an_eleven_character_password(
    client: dict[str, LegacyClient],
) -> None:
    auth = client[f"pc2/{S.AUTHENTICATION}"]
    user = f"legacy-{uuid.uuid4().hex[:6]}"
    registered = auth.send_json({"action": "register", "user_id": user, "password": "elevenchars"})
    assert registered["status"] == "success"
    login = auth.send_json({"action": "login", "user_id": user, "password": "elevenchars"})
    assert login["status"] == "success"
    short = auth.send_json({"action": "register", "user_id": user + "x", "password": "seven77"})
    assert short["status"] == "error" and "at least 8" in short["message"]
