"""The agent SDK against the real session system: every call, blocking and asyncio.

Tokens (renewed when the clock passes their expiry, and after a revocation answered 401),
registration with a heartbeat that keeps a short TTL passing through injected network failures,
discovery, coordinated requests to a real ZeroMQ agent, ErrorBus events, VRAM leases renewed
while held and released on an exception; and the worked example of docs/porting-guide.md.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import zmq
from pydantic import SecretStr

from aisys_sdk import (
    AgentClient,
    AsyncAgentClient,
    ClientConfig,
    Conflict,
    Forbidden,
    Health,
    Heartbeat,
    InvalidRequest,
    LeaseGrant,
    LeaseRequest,
    NotFound,
    Registration,
    RequestFailed,
    TextRequest,
    TransportError,
    Unauthorized,
)
from aisys_sdk.examples.model_worker import ModelWorker
from aisys_sdk.examples.proactive_agent import ProactiveAgent
from cluster.base.settings import Settings
from tests._tls import self_signed_certificate
from tests.conftest import free_port, wait_for_condition
from tests.integration._zmq_agent import ZmqAgent

pytestmark = pytest.mark.integration

AGENT_SCOPES = ["read", "registry:write", "requests:submit", "resources:lease", "errors:publish"]


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _identity(http: httpx.Client, scopes: list[str]) -> tuple[str, str]:
    agent_id = _unique("sdk-agent")
    created = http.post("/security/agents", json={"agent_id": agent_id, "scopes": scopes})
    assert created.status_code == 200, created.text
    return agent_id, created.json()["client_secret"]


@pytest.fixture
def config(aisys_system: Settings, http: httpx.Client) -> ClientConfig:
    """A fresh agent identity with every agent scope."""
    agent_id, secret = _identity(http, AGENT_SCOPES)
    return ClientConfig(
        url=f"http://127.0.0.1:{aisys_system.ports.http}",
        client_id=agent_id,
        client_secret=SecretStr(secret),
        timeout_s=30,
    )


@pytest.fixture
def reasoner(http: httpx.Client) -> Iterator[tuple[str, ZmqAgent]]:
    """A real ZeroMQ agent, the only one with a capability of its own; yields the capability."""
    server = ZmqAgent().start()
    capability = _unique("sdk-cap")
    agent_id = _unique("sdk-reasoner")
    body = {
        "agent_id": agent_id,
        "host": "127.0.0.1",
        "port": server.port,
        "capabilities": [capability],
        "ttl_s": 3600,
    }
    assert http.post("/core/agents", json=body).status_code == 200
    try:
        yield capability, server
    finally:
        http.delete(f"/core/agents/{agent_id}")
        server.close()


class FlakyTransport(httpx.AsyncBaseTransport):
    """Real TCP to the server; the next ``fail_heartbeats`` heartbeats meet a network failure."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.fail_heartbeats = 0
        self.failed = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.fail_heartbeats > 0 and request.url.path.endswith("/heartbeat"):
            self.fail_heartbeats -= 1
            self.failed += 1
            raise httpx.ConnectError("injected: the network is down", request=request)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _health(http: httpx.Client, agent_id: str) -> str:
    response = http.get(f"/core/agents/{agent_id}")
    return str(response.json()["health"]) if response.status_code == 200 else "absent"


# -- tokens ------------------------------------------------------------------------------------


def test_token_is_renewed_after_expiry_and_after_a_401(config: ClientConfig, http: httpx.Client):
    offset = [0.0]
    with AgentClient(config, clock=lambda: time.monotonic() + offset[0]) as client:
        client.find_agents()
        first = client.token()
        assert client.token_renewals == 1 and first.expires_in == 3600
        offset[0] += first.expires_in  # past its expiry on the client's clock: renewed first
        client.find_agents()
        second = client.token()
        assert client.token_renewals == 2 and second.access_token != first.access_token
        assert second.refresh_token != first.refresh_token  # refresh tokens rotate
        # Revoke the live access token on the server: the next call gets 401, renews, retries.
        revoked = http.post("/security/revoke", json={"token": second.access_token})
        assert revoked.status_code == 200, revoked.text
        stale = {"Authorization": f"Bearer {second.access_token}"}
        assert http.get("/core/agents", headers=stale).status_code == 401
        assert isinstance(client.find_agents(), list)
        assert client.token_renewals == 3
        assert client.token().access_token != second.access_token


def test_errors_map_to_the_sdk_hierarchy(config: ClientConfig, http: httpx.Client):
    wrong = config.model_copy(update={"client_secret": SecretStr("not-the-secret")})
    with AgentClient(wrong) as client, pytest.raises(Unauthorized) as denied:
        client.find_agents()
    assert denied.value.code == "CredentialsRejected"
    reader_id, secret = _identity(http, ["read"])
    reader = config.model_copy(update={"client_id": reader_id, "client_secret": SecretStr(secret)})
    with AgentClient(reader) as client:
        with pytest.raises(Forbidden) as forbidden:
            client.register(Registration(agent_id=reader_id, host="127.0.0.1", port=5000))
        assert forbidden.value.status == 403
        with pytest.raises(NotFound) as missing:
            client.lookup(_unique("nobody"))
        assert missing.value.code == "AgentNotFound" and missing.value.component == "registry"
    with AgentClient(config) as client, pytest.raises(InvalidRequest) as invalid:
        client.register(Registration(agent_id="not a plain name!", host="h", port=5000))
    assert "agent_id" in invalid.value.detail


# -- registry, heartbeat, discovery ------------------------------------------------------------


def test_heartbeat_keeps_the_agent_passing_past_its_ttl_through_network_failures(
    config: ClientConfig, http: httpx.Client
):
    ttl = 4.0
    silent = _unique("sdk-silent")  # the control: registered with the same TTL, never beats
    body = {"agent_id": silent, "host": "127.0.0.1", "port": 5001, "ttl_s": ttl}
    assert http.post("/core/agents", json=body).status_code == 200
    transport = FlakyTransport()
    status = [Heartbeat()]
    agent_id = _unique("sdk-beating")
    with AgentClient(config, transport=transport) as client:
        record = client.register(
            Registration(agent_id=agent_id, host="127.0.0.1", port=5002, ttl_s=ttl),
            interval_s=1.0,
            health=lambda: status[0],
        )
        assert record.health is Health.PASSING
        loop = client.heartbeats(agent_id)
        assert loop is not None and loop.running
        transport.fail_heartbeats = 2  # two beats in a row meet a dead network
        started = time.monotonic()
        while time.monotonic() - started < 3 * ttl:
            assert _health(http, agent_id) == "passing"
            time.sleep(0.2)
        assert _health(http, silent) == "critical"  # the TTL was enforced meanwhile
        assert transport.failed == 2 and loop.sent >= 5 and loop.failures == 0
        status[0] = Heartbeat(status="warning", note="model cache cold")
        wait_for_condition(lambda: client.lookup(agent_id).health is Health.WARNING, 10)
        assert client.lookup(agent_id).health_note == "model cache cold"
        status[0] = Heartbeat()
        # The registry forgets the agent (an admin, or critical for too long): it comes back.
        assert http.delete(f"/core/agents/{agent_id}").status_code == 204
        wait_for_condition(lambda: _health(http, agent_id) == "passing", 10)
        assert loop.reregistered == 1
    assert not loop.running
    assert _health(http, agent_id) == "absent"  # deregistered on close
    client.close()  # closing twice is harmless; a call after it says why it cannot run
    with pytest.raises(RuntimeError, match="closed"):
        client.lookup(agent_id)
    http.delete(f"/core/agents/{silent}")


def test_discovery_finds_agents_by_id_and_capability(config: ClientConfig):
    capability = _unique("sdk-find")
    with AgentClient(config) as client:
        ids = [_unique("sdk-found") for _ in range(2)]
        for port, agent_id in enumerate(ids, start=6001):
            client.register(
                Registration(
                    agent_id=agent_id, host="10.0.0.5", port=port, capabilities=[capability]
                ),
                heartbeat=False,
            )
        found = client.find_agents(capability=capability, health=Health.PASSING)
        assert sorted(a.agent_id for a in found) == sorted(ids)
        assert client.lookup(ids[0]).port == 6001
        assert client.endpoint(ids[1]) == "tcp://10.0.0.5:6002"
        client.deregister(ids[0])
        assert [a.agent_id for a in client.find_agents(capability=capability)] == [ids[1]]


# -- coordinated requests, errors, leases -------------------------------------------------------


def test_submit_and_wait_returns_the_agents_answer(
    config: ClientConfig, reasoner: tuple[str, ZmqAgent]
):
    capability, server = reasoner
    with AgentClient(config) as client:
        status = client.submit_and_wait(TextRequest(data="hello", capability=capability), 60)
        assert status.state == "succeeded" and status.result is not None
        assert status.result.data == {"echo": "hello", "task_id": server.received[-1]["task_id"]}
        receipt = client.submit(TextRequest(data="again", capability=capability))
        assert client.wait_result(receipt.request_id, 60).result is not None
        assert client.request_status(receipt.request_id).state == "succeeded"
        with pytest.raises(RequestFailed) as failed:
            client.submit_and_wait(TextRequest(data="x", capability=_unique("sdk-none")), 60)
        assert failed.value.status.state == "failed" and failed.value.status.error


def _events(http: httpx.Client, agent: str) -> list[dict[str, Any]]:
    page = http.get("/errors/", params={"agent": agent})
    assert page.status_code == 200, page.text
    return [item["event"] for item in page.json()["items"]]


def test_publish_error_reaches_the_error_bus(config: ClientConfig, http: httpx.Client):
    with AgentClient(config, hostname="pc-test") as client:
        try:
            raise TimeoutError("redis refused")
        except TimeoutError as exc:
            result = client.publish_error(
                "connection_failure", severity="critical", exc=exc, details={"port": 6379}
            )
    assert len(result.accepted) == 1 and result.stored + result.spooled == 1
    wait_for_condition(lambda: _events(http, config.client_id), 30)
    (event,) = _events(http, config.client_id)
    assert event["id"] == result.accepted[0]
    assert (event["error_type"], event["severity"], event["host"]) == (
        "connection_failure",
        "critical",
        "pc-test",
    )
    assert event["message"] == "redis refused" and "TimeoutError" in event["stack_trace"]
    assert event["details"] == {"port": 6379}


def _lease_state(http: httpx.Client, lease_id: str) -> str:
    return str(http.get(f"/resources/leases/{lease_id}").json()["state"])


def test_lease_is_renewed_while_held_and_released_on_exception(
    config: ClientConfig, http: httpx.Client
):
    request = LeaseRequest(owner=config.client_id, vram_mb=1024, host="pc2", ttl_s=2.0)
    with AgentClient(config) as client:
        with client.lease(request) as lease:
            first = lease.grant
            assert first.host == "pc2" and first.vram_mb == 1024
            time.sleep(3 * first.ttl_s)  # three TTLs: only renewal keeps it
            assert _lease_state(http, lease.lease_id) == "granted"
            assert lease.renewals >= 3 and lease.grant.expires_at > first.expires_at
            assert lease.touch().lease_id == first.lease_id
        assert _lease_state(http, first.lease_id) == "released"
        with pytest.raises(RuntimeError, match="model failed to load"):
            with client.lease(request) as lease:
                held = lease.lease_id
                raise RuntimeError("model failed to load")
        assert _lease_state(http, held) == "released"
        too_big = LeaseRequest(owner=config.client_id, vram_mb=1_000_000, max_wait_s=0)
        with pytest.raises(Conflict) as refused, client.lease(too_big):
            pytest.fail("a lease no GPU can hold was granted")
        assert refused.value.code == "LeaseUnavailable"


# -- the asyncio face ------------------------------------------------------------------------


def test_async_client_does_all_of_it(
    config: ClientConfig, http: httpx.Client, reasoner: tuple[str, ZmqAgent]
):
    capability, _ = reasoner
    agent_id = _unique("sdk-async")
    offset = [0.0]

    async def scenario() -> str:
        clock = lambda: time.monotonic() + offset[0]  # noqa: E731
        async with AsyncAgentClient(config, clock=clock) as client:
            registration = Registration(agent_id=agent_id, host="127.0.0.1", port=5003, ttl_s=3)
            await client.register(registration, interval_s=0.5)
            await asyncio.sleep(4)  # past the TTL
            assert (await client.lookup(agent_id)).health is Health.PASSING
            assert [a.agent_id for a in await client.find_agents(tag=None, host="127.0.0.1")]
            assert await client.endpoint(agent_id) == "tcp://127.0.0.1:5003"
            offset[0] += 3600  # the token expired on the client's clock
            status = await client.submit_and_wait(TextRequest(data="hi", capability=capability))
            assert status.result is not None and client.token_renewals == 2
            published = await client.publish_error("async_failure", "it broke")
            request = LeaseRequest(owner=agent_id, vram_mb=512, ttl_s=1.5)
            with pytest.raises(ValueError):
                async with client.lease(request) as lease:
                    lease_id = lease.lease_id
                    await asyncio.sleep(3.5)
                    assert lease.renewals >= 2
                    lease.check()
                    raise ValueError("inference crashed")
            assert _lease_state(http, lease_id) == "released"
            heartbeats = client.heartbeats(agent_id)
            assert heartbeats is not None and heartbeats.sent >= 6
        assert not heartbeats.running
        return published.accepted[0]

    event_id = asyncio.run(scenario())
    assert _health(http, agent_id) == "absent"
    wait_for_condition(lambda: any(e["id"] == event_id for e in _events(http, config.client_id)))


# -- the worked example ----------------------------------------------------------------------


def _legacy_call(port: int, message: dict[str, Any]) -> dict[str, Any]:
    """What a legacy agent does: one REQ, one JSON frame, a receive timeout."""
    context = zmq.Context()
    try:
        socket = context.socket(zmq.REQ)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVTIMEO, 10_000)
        socket.connect(f"tcp://127.0.0.1:{port}")
        socket.send_json(message)
        reply: dict[str, Any] = json.loads(socket.recv())
        socket.close()
        return reply
    finally:
        context.term()


def test_ported_proactive_agent_runs_its_tasks_through_aisys(
    config: ClientConfig, http: httpx.Client, reasoner: tuple[str, ZmqAgent], tmp_path: Path
):
    capability, server = reasoner
    name = _unique("ProactiveAgent")
    port = free_port()
    tasks = tmp_path / "tasks.json"
    with AgentClient(config) as client:
        agent = ProactiveAgent(client, port, tasks, capability=capability, name=name)
        agent.start()
        try:
            assert _health(http, name) == "passing"
            past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
            future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
            added = _legacy_call(
                port, {"action": "add_task", "task": {"text": "water", "scheduled_time": past}}
            )
            assert added["status"] == "success"
            later = {"text": "call mum", "scheduled_time": future}
            assert _legacy_call(port, {"action": "add_reminder", "reminder": later})["status"]
            assert _legacy_call(port, {"action": "health_check"})["status"] == "ok"
            (done,) = agent.run_due()
            assert done.id == added["task_id"] and done.status == "completed"
            assert done.result == "done" and server.received[-1]["parameters"]["request"]["data"]
            listed = _legacy_call(port, {"action": "get_tasks"})["tasks"]
            assert [i["status"] for i in listed] == ["completed", "pending"]
            assert json.loads(tasks.read_text())[0]["status"] == "completed"
            # A task nobody can take fails, and the failure is on the ErrorBus.
            agent._capability = _unique("sdk-nobody")
            agent.add("task", {"text": "impossible", "scheduled_time": past})
            (failed,) = agent.run_due()
            assert failed.status == "failed"
            wait_for_condition(
                lambda: any(
                    e["correlation_id"] == failed.id for e in _events(http, config.client_id)
                )
            )
            wait_for_condition(lambda: client.lookup(name).health is Health.WARNING, 30)
        finally:
            agent.stop()
    assert _health(http, name) == "absent"


def test_model_worker_holds_its_lease_until_asked_to_unload(
    config: ClientConfig, http: httpx.Client
):
    name, capability, port = _unique("sdk-worker"), _unique("sdk-model"), free_port()
    loaded_on: list[str] = []

    def load(grant: LeaseGrant) -> Callable[[str], str]:
        loaded_on.append(grant.host)
        return lambda text: text.upper()

    async def scenario() -> tuple[str, int]:
        async with AsyncAgentClient(config) as client:
            worker = ModelWorker(
                client,
                name=name,
                host="127.0.0.1",
                port=port,
                capability=capability,
                model_name="phi-2",
                vram_mb=2048,
                load=load,
            )
            task = asyncio.create_task(worker.run())
            while (await client.find_agents(capability=capability)) == []:
                assert not task.done(), task
                await asyncio.sleep(0.1)
            assert worker.lease is not None
            lease_id = worker.lease.lease_id
            status = await client.submit_and_wait(TextRequest(data="hi", capability=capability))
            assert status.result is not None and status.result.message == "HI"
            # What the ResourceScheduler's optimizer sends the owner under VRAM pressure.
            unload = {"command": "UNLOAD_MODEL", "model_name": "phi-2"}
            reply = await asyncio.to_thread(_legacy_call, port, unload)
            assert reply["status"] == "SUCCESS"
            await asyncio.wait_for(task, 30)
            assert await client.find_agents(capability=capability) == []
            return lease_id, worker.served

    lease_id, served = asyncio.run(scenario())
    assert served == 1 and len(loaded_on) == 1
    lease = http.get(f"/resources/leases/{lease_id}").json()
    assert lease["state"] == "released"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


def test_https_with_a_ca_file(config: ClientConfig, aisys_system: Settings, tmp_path: Path):
    """TLS on the wire (a TLS front for the session system's Serve port, self-signed)."""
    cert, key = self_signed_certificate(tmp_path)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)

    async def front(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        backend = await asyncio.open_connection("127.0.0.1", aisys_system.ports.http)
        await asyncio.gather(_pipe(reader, backend[1]), _pipe(backend[0], writer))

    async def scenario() -> None:
        server = await asyncio.start_server(front, "127.0.0.1", 0, ssl=server_side)
        port = server.sockets[0].getsockname()[1]
        https = config.model_copy(update={"url": f"https://127.0.0.1:{port}", "ca_file": cert})
        try:
            async with AsyncAgentClient(https) as client:
                assert isinstance(await client.find_agents(), list)
            untrusted = https.model_copy(update={"ca_file": None})
            async with AsyncAgentClient(untrusted) as client:
                with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
                    await client.find_agents()
        finally:
            server.close()

    asyncio.run(scenario())
