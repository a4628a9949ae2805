"""The ROUTER server itself, with real sockets on random ports: one reply per request, always."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest
import zmq
import zmq.asyncio
import zmq.auth

from actors.registry.follower import RegistryFollower
from cluster.base.errors import ConfigError, PortInUse
from cluster.base.settings import LegacyGatewaySettings, LegacyService
from legacy_gateway._codec import (
    ActionRequest,
    InvalidRequest,
    LegacyRequest,
    Reply,
    dialect_of,
    error_reply,
)
from legacy_gateway.gateway import HostGateway
from legacy_gateway.registry_port import RegistryLink
from legacy_gateway.server import LegacyServer, Received, ServerLimits, hard_frame_limit
from tests.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


LIMITS = ServerLimits(max_frame_bytes=4096, reply_timeout_s=0.3, max_pending=8)


class Scripted:
    """Answers ``{"action": "echo"}`` at once, ``sleep`` after ``delay`` s, ``crash`` by raising."""

    service = "Scripted"

    def handle(self, request: LegacyRequest, received: Received) -> Reply | Awaitable[Reply]:
        if isinstance(request, InvalidRequest):
            return error_reply(request.dialect, request.reason)
        if not isinstance(request, ActionRequest):
            return error_reply(dialect_of(request), "not an action")
        if request.action == "echo":
            return Reply(status="success", fields=request.fields, peer=received.peer())
        if request.action == "crash":
            raise RuntimeError("handler bug")
        return self._later(float(request.fields["delay"]))  # type: ignore[arg-type]

    async def _later(self, delay: float) -> Reply:
        await asyncio.sleep(delay)
        return Reply(status="success", slept=delay)

    def replay(self, frame: bytes) -> bytes | None:
        """A replay cache that breaks on one frame (a bug outside ``handle``)."""
        if frame == b"replay-bug":
            raise KeyError("replay cache bug")
        return None


@pytest.fixture
async def server() -> AsyncIterator[LegacyServer]:
    ctx = zmq.asyncio.Context()
    srv = LegacyServer(ctx, "127.0.0.1", free_port(), Scripted(), LIMITS)
    srv.start()
    yield srv
    await srv.close()
    ctx.term()


def _req(ctx: zmq.asyncio.Context, port: int) -> zmq.asyncio.Socket:
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"tcp://127.0.0.1:{port}")
    return sock


async def _ask(sock: zmq.asyncio.Socket, obj: object) -> dict[str, object]:
    await sock.send(json.dumps(obj).encode())
    reply: dict[str, object] = json.loads(await asyncio.wait_for(sock.recv(), 5))
    return reply


async def test_many_req_clients_are_served_concurrently(server: LegacyServer) -> None:
    ctx = zmq.asyncio.Context()
    try:
        slow = [_req(ctx, server.port) for _ in range(6)]
        fast = _req(ctx, server.port)
        pending = [asyncio.create_task(_ask(s, {"action": "sleep", "delay": 0.2})) for s in slow]
        # A fast request is not queued behind the slow ones.
        echo = await asyncio.wait_for(_ask(fast, {"action": "echo", "n": 1}), 0.15)
        assert echo["fields"] == {"n": 1} and echo["peer"] == "127.0.0.1"
        assert [r["slept"] for r in await asyncio.gather(*pending)] == [0.2] * 6
    finally:
        ctx.destroy(linger=0)


async def test_slow_and_crashing_handlers_still_answer_exactly_once(server: LegacyServer) -> None:
    ctx = zmq.asyncio.Context()
    try:
        sock = _req(ctx, server.port)
        late = await _ask(sock, {"action": "sleep", "delay": 5})
        assert late == {
            "status": "error",
            "error": "Scripted did not answer within 0.3s",
            "message": "Scripted did not answer within 0.3s",
        }
        crash = await _ask(sock, {"action": "crash"})
        assert crash["error"] == "Internal server error: RuntimeError: handler bug"
        assert (await _ask(sock, {"action": "echo"}))["status"] == "success"
    finally:
        ctx.destroy(linger=0)


async def test_a_failure_outside_the_handler_is_answered_and_the_port_lives_on(
    server: LegacyServer,
) -> None:
    ctx = zmq.asyncio.Context()
    try:
        sock = _req(ctx, server.port)
        await sock.send(b"replay-bug")
        reply = json.loads(await asyncio.wait_for(sock.recv(), 5))
        assert reply["status"] == "error"
        assert reply["error"] == "Internal server error: KeyError: 'replay cache bug'"
        assert (await _ask(sock, {"action": "echo", "n": 2}))["fields"] == {"n": 2}
        assert server.running
    finally:
        ctx.destroy(linger=0)


async def test_a_frame_past_the_hard_limit_is_never_buffered_and_others_are_served(
    server: LegacyServer,
) -> None:
    ctx = zmq.asyncio.Context()
    try:
        huge = _req(ctx, server.port)
        await huge.send(b"x" * (hard_frame_limit(LIMITS.max_frame_bytes) + 1))
        # libzmq drops the sender's connection unread: no reply, as if the gateway were down.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(huge.recv(), 0.5)
        # Just under the hard limit: read, and refused with a clear reply.
        big = _req(ctx, server.port)
        await big.send(b"x" * (hard_frame_limit(LIMITS.max_frame_bytes) - 64))
        refused = json.loads(await asyncio.wait_for(big.recv(), 5))
        assert refused["status"] == "error" and "Request too large" in refused["error"]
        other = _req(ctx, server.port)
        assert (await _ask(other, {"action": "echo"}))["status"] == "success"
    finally:
        ctx.destroy(linger=0)


async def test_a_multipart_message_over_the_total_limit_is_answered_and_dropped() -> None:
    ctx = zmq.asyncio.Context()
    limits = ServerLimits(
        max_frame_bytes=4096, reply_timeout_s=0.3, max_pending=8, max_message_bytes=8192
    )
    srv = LegacyServer(ctx, "127.0.0.1", free_port(), Scripted(), limits)
    srv.start()
    try:
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(f"tcp://127.0.0.1:{srv.port}")
        # Every frame is under max_frame_bytes; together they are far over the message limit.
        await dealer.send_multipart([b"", *[b"x" * 4000] * 50])
        empty, body = await asyncio.wait_for(dealer.recv_multipart(), 5)
        assert empty == b""
        assert json.loads(body)["error"] == (
            "Request too large: 51 frames of 200000 bytes in all; the limit is 8192 bytes per "
            "message (legacy_gateway.max_message_bytes)"
        )
        await dealer.send_multipart([b"x" * 3000] * 4)  # no delimiter: the reply has none
        [body] = await asyncio.wait_for(dealer.recv_multipart(), 5)
        assert "4 frames of 12000 bytes" in json.loads(body)["error"]
        req = _req(ctx, srv.port)
        assert (await _ask(req, {"action": "echo", "n": 3}))["fields"] == {"n": 3}
        assert srv.running
    finally:
        await srv.close()
        ctx.destroy(linger=0)


async def test_busy_port_refuses_at_once_beyond_max_pending(server: LegacyServer) -> None:
    ctx = zmq.asyncio.Context()
    try:
        socks = [_req(ctx, server.port) for _ in range(LIMITS.max_pending + 3)]
        replies = await asyncio.gather(*(_ask(s, {"action": "sleep", "delay": 0.2}) for s in socks))
        busy = [r for r in replies if r["status"] == "error"]
        assert len(busy) == 3
        assert "Scripted is busy: 8 requests pending" in str(busy[0]["error"])
    finally:
        ctx.destroy(linger=0)


async def test_dealer_frames_with_and_without_delimiter_and_multipart(
    server: LegacyServer,
) -> None:
    ctx = zmq.asyncio.Context()
    try:
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(f"tcp://127.0.0.1:{server.port}")
        await dealer.send_multipart([b"", b'{"action": "echo"}'])
        empty, body = await asyncio.wait_for(dealer.recv_multipart(), 5)
        assert empty == b"" and json.loads(body)["status"] == "success"
        await dealer.send_multipart([b'{"action": "echo"}'])
        [body] = await asyncio.wait_for(dealer.recv_multipart(), 5)
        assert json.loads(body)["status"] == "success"
        await dealer.send_multipart([b"", b"one", b"two"])
        _, body = await asyncio.wait_for(dealer.recv_multipart(), 5)
        assert json.loads(body)["error"] == "Invalid request: expected one frame, got 2"
        req = _req(ctx, server.port)
        await req.send(b"x" * 5000)
        too_big = json.loads(await asyncio.wait_for(req.recv(), 5))
        assert too_big["error"] == "Request too large: 5000 bytes (limit 4096)"
    finally:
        ctx.destroy(linger=0)


async def test_a_taken_port_fails_start_naming_port_and_owner() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        ctx = zmq.asyncio.Context()
        try:
            with pytest.raises(PortInUse) as info:
                LegacyServer(ctx, "127.0.0.1", port, Scripted(), LIMITS).start()
        finally:
            ctx.term()
    message = str(info.value)
    assert f"port {port} is already in use by pid {os.getpid()}" in message
    assert info.value.port == port


async def test_host_gateway_start_fails_whole_and_releases_its_other_ports() -> None:
    free = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        settings = LegacyGatewaySettings(
            bind="127.0.0.1",
            ports={
                "mainpc": {
                    LegacyService.SERVICE_REGISTRY: free,
                    LegacyService.SYSTEM_DIGITAL_TWIN: taken,
                }
            },
        )
        # The follower is never started: no request reaches the handlers here.
        link = RegistryLink(None, RegistryFollower(None), 1.0)
        gateway = HostGateway(settings, "mainpc", link)
        with pytest.raises(PortInUse, match=f"port {taken} "):
            gateway.start()
    with socket.socket() as again:  # the port that did bind was released
        again.bind(("127.0.0.1", free))


class _TitledHolder:
    """A process whose command line carries ``title`` holding a TCP port until released."""

    _CODE = (
        "import socket, sys\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
        "print(s.getsockname()[1], flush=True); sys.stdin.read()\n"
    )

    def __init__(self, title: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self._CODE, title],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


def _registry_only(port: int) -> LegacyGatewaySettings:
    return LegacyGatewaySettings(
        bind="127.0.0.1", ports={"mainpc": {LegacyService.SERVICE_REGISTRY: port}}
    )


async def test_a_restarted_replica_waits_for_its_predecessor_and_leaves_the_sibling_its_port() -> (
    None
):
    link = RegistryLink(None, RegistryFollower(None), 1.0)
    own = "LegacyGatewayMainpc"
    # The previous replica of this very deployment still holds the port while it shuts down.
    previous = _TitledHolder(f"ray::ServeReplica:legacy:{own}.__del__")
    timer = threading.Timer(0.5, previous.release)
    timer.start()
    gateway = HostGateway(_registry_only(previous.port), "mainpc", link, deployment=own)
    try:
        gateway.start()  # waits for the port instead of skipping it
        assert [(p.port, p.running) for p in gateway.stats()] == [(previous.port, True)]
    finally:
        timer.join()
        await gateway.close()
    # The other host's gateway on the same machine serves the port: this one leaves it alone.
    sibling = _TitledHolder("ray::ServeReplica:legacy:LegacyGatewayPc2")
    gateway = HostGateway(_registry_only(sibling.port), "mainpc", link, deployment=own)
    try:
        gateway.start()
        assert gateway.stats() == []
    finally:
        await gateway.close()
        sibling.release()


async def test_curve_ports_serve_listed_client_keys_only(tmp_path: Path) -> None:
    certs, stranger_dir = tmp_path / "certificates", tmp_path / "elsewhere"
    certs.mkdir()
    stranger_dir.mkdir()
    server_public, _ = zmq.auth.load_certificate(
        zmq.auth.create_certificates(str(certs), "server")[0]
    )
    client_keys = zmq.auth.load_certificate(zmq.auth.create_certificates(str(certs), "client")[1])
    stranger_keys = zmq.auth.load_certificate(
        zmq.auth.create_certificates(str(stranger_dir), "stranger")[1]
    )
    health, main = free_port(), free_port()
    settings = LegacyGatewaySettings(
        bind="127.0.0.1",
        ports={
            "mainpc": {
                LegacyService.SERVICE_REGISTRY: main,
                LegacyService.SERVICE_REGISTRY_HEALTH: health,
            }
        },
        curve_certificates_dir=certs,
    )
    gateway = HostGateway(settings, "mainpc", RegistryLink(None, RegistryFollower(None), 1.0))
    gateway.start()
    ctx = zmq.asyncio.Context()

    def client(port: int, keys: tuple[bytes, bytes | None] | None) -> zmq.asyncio.Socket:
        sock = ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        if keys is not None:
            sock.curve_publickey, sock.curve_secretkey = keys[0], keys[1] or b""
            sock.curve_serverkey = server_public
        sock.connect(f"tcp://127.0.0.1:{port}")
        return sock

    try:
        listed = client(health, client_keys)
        # Answered (degraded: this test's registry follower never loads).
        assert (await _ask(listed, {"action": "health_check"}))["status"] == "degraded"
        # A write goes to the event loop and comes back through the port's inproc relay.
        slow = await _ask(
            client(main, client_keys),
            {"action": "register_agent", "agent_id": "x", "host": "10.0.0.9", "port": 1},
        )
        assert slow["status"] == "error"
        for outsider in (client(health, None), client(health, stranger_keys)):
            with pytest.raises(TimeoutError):  # no handshake: the request is never taken
                await asyncio.wait_for(_ask(outsider, {"action": "health_check"}), 0.5)
        assert (await _ask(listed, {"action": "health_check"}))["status"] == "degraded"
    finally:
        ctx.destroy(linger=0)
        await gateway.close()


async def test_curve_without_the_server_key_fails_naming_the_file(tmp_path: Path) -> None:
    settings = LegacyGatewaySettings(
        bind="127.0.0.1",
        ports={"mainpc": {LegacyService.SERVICE_REGISTRY: free_port()}},
        curve_certificates_dir=tmp_path,
    )
    link = RegistryLink(None, RegistryFollower(None), 1.0)
    with pytest.raises(ConfigError, match=r"server\.key_secret"):
        HostGateway(settings, "mainpc", link)


class LegacyAgent:
    """A still-running legacy agent: a REP socket in a thread answering a fixed frame."""

    REPLY = b'{"status": "success", "answered_by": "legacy agent"}'

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._sock = self._ctx.socket(zmq.REP)
        self._sock.setsockopt(zmq.LINGER, 0)
        self.port = self._sock.bind_to_random_port("tcp://127.0.0.1")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            if self._sock.poll(50):
                self.received.append(self._sock.recv())
                self._sock.send(self.REPLY)
        self._sock.close(linger=0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._ctx.term()


async def test_delegate_mode_relays_frames_verbatim_and_answers_when_the_agent_is_gone() -> None:
    agent = LegacyAgent()
    port = free_port()
    settings = LegacyGatewaySettings(
        bind="127.0.0.1",
        ports={"mainpc": {LegacyService.SERVICE_REGISTRY: port}},
        delegate_to={LegacyService.SERVICE_REGISTRY: f"tcp://127.0.0.1:{agent.port}"},
        reply_timeout_s=0.5,
        max_frame_bytes=4096,
    )
    gateway = HostGateway(settings, "mainpc", RegistryLink(None, RegistryFollower(None), 1.0))
    gateway.start()
    ctx = zmq.asyncio.Context()
    try:
        sock = _req(ctx, port)
        frame = b'{"action":"get_agent_endpoint","agent_name":"X","request_id":"1"}'
        await sock.send(frame)
        assert await asyncio.wait_for(sock.recv(), 5) == LegacyAgent.REPLY
        await sock.send(b"\xffnot json")
        assert await asyncio.wait_for(sock.recv(), 5) == LegacyAgent.REPLY
        assert agent.received == [frame, b"\xffnot json"]  # unchanged, enrichment included
        too_big = await _ask(sock, {"action": "x", "pad": "y" * 5000})
        assert str(too_big["error"]).startswith("Request too large")
        assert len(agent.received) == 2
        agent.stop()
        gone = await _ask(sock, {"command": "DISCOVER", "payload": {"name": "X"}})
        assert gone == {
            "status": "ERROR",
            "message": "ServiceRegistry did not answer within 0.5s",
        }
        assert (await _ask(sock, {"action": "list_agents"}))["status"] == "error"
    finally:
        ctx.destroy(linger=0)
        await gateway.close()
