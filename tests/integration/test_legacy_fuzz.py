"""Random frames at every gateway port: every request gets one reply, every port keeps serving.

The seed is printed (``-s``) and can be fixed with ``LEGACY_FUZZ_SEED`` to replay a failure.
"""

from __future__ import annotations

import json
import os
import random
import socket
import string
import uuid
from typing import Any

import pytest
import zmq

from tests.integration._legacy_client import (  # noqa: F401 (fixtures)
    LegacyClient,
    ports_fixture,
    zctx_fixture,
)

pytestmark = pytest.mark.integration

FRAMES_PER_PORT = 300
IN_FLIGHT = 16
KEYS = [
    "action",
    "command",
    "payload",
    "registration_data",
    "agent_name",
    "agent_id",
    "host",
    "port",
    "name",
    "ip",
    "timestamp",
    "request_id",
    "source_agent",
    "metadata",
    "type",
    "data",
    "task",
]
VERBS = [
    "register_agent",
    "get_agent_endpoint",
    "list_agents",
    "ping",
    "health",
    "health_check",
    "get_all_agents",
    "get_registered_agents",
    "get_agent_info",
    "REGISTER",
    "DISCOVER",
    "PING",
    "GET_METRICS",
    "GET_ALL_STATUS",
    "text",
    "audio",
    "vision",
    "execute_task",
    "get_queue_status",
    "",
    "\u0000",
    "x" * 300,
]


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.randint(-(2**70), 2**70)
    if kind == 3:
        return rng.choice([rng.random() * 1e6, -0.0, 1e308])
    if kind == 4:
        return "".join(
            rng.choice(string.printable + "\u00e9\u4e2d") for _ in range(rng.randrange(40))
        )
    if kind == 5:
        return rng.choice(VERBS)
    if kind == 6:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    return {rng.choice(KEYS): _value(rng, depth + 1) for _ in range(rng.randrange(6))}


def _frame(rng: random.Random, max_frame: int) -> bytes:
    kind = rng.randrange(10)
    if kind == 0:
        return rng.randbytes(rng.randrange(2000))
    if kind == 1:
        return rng.randbytes(max_frame + rng.randrange(1, 50_000))
    if kind == 2:
        return json.dumps(_value(rng)).encode()
    if kind == 3:  # a plausible request with random fields
        obj = {rng.choice(["action", "command"]): rng.choice(VERBS)}
        obj.update({rng.choice(KEYS): _value(rng) for _ in range(rng.randrange(5))})
        return json.dumps(obj).encode()
    if kind == 4:  # a valid frame cut short
        whole = json.dumps({"command": "REGISTER", "payload": {"name": "X", "port": 1}}).encode()
        return whole[: rng.randrange(len(whole))]
    if kind == 5:
        return rng.choice([b"", b"ping", b"GET_ALL_STATUS", b"get_suggestion", b"\x00" * 10])
    if kind == 6:
        return b"[" * rng.randrange(1, 100_000)
    if kind == 7:  # a registration with random names, ports and capabilities
        data = {
            "agent_id": rng.choice([f"fuzz-{rng.randrange(50)}", _value(rng)]),
            "host": rng.choice(["127.0.0.1", "", _value(rng)]),
            "port": rng.choice([rng.randrange(0, 70_000), "80", None]),
            "capabilities": rng.choice([["a"], [" bad label"], _value(rng)]),
        }
        return json.dumps({"action": "register_agent", "registration_data": data}).encode()
    if kind == 8:
        return json.dumps(
            {
                "command": "REGISTER",
                "payload": {
                    "name": f"fuzz-{rng.randrange(50)}",
                    "port": rng.randrange(0, 70_000),
                    "extra": _value(rng),
                },
            }
        ).encode()
    if rng.random() < 0.5:  # valid JSON whose integer Python refuses to convert (> 4300 digits)
        digits = b"7" * rng.randrange(4400, 6000)
        return b'{"action": "' + rng.choice(VERBS).encode() + b'", "x": ' + digits + b"}"
    return ("\ud800" * rng.randrange(1, 50)).encode("utf-8", "surrogatepass")


def _is_reply(reply: object) -> bool:
    """A reply a legacy client accepts: a dict with a status word, or SDT's GET_ALL_STATUS map."""
    if not isinstance(reply, dict):
        return False
    if isinstance(reply.get("status"), str):
        return True
    # Raw GET_ALL_STATUS (docs/legacy-protocol.md 3.2): the bare agent map, without a status key.
    entry = {"location", "status", "last_seen"}
    return all(isinstance(v, dict) and set(v) == entry for v in reply.values())


def _fuzz_req(
    ctx: zmq.Context[zmq.Socket[bytes]], port: int, rng: random.Random, max_frame: int
) -> int:
    """Send FRAMES_PER_PORT frames over IN_FLIGHT REQ sockets; return how many got replies."""
    socks = []
    for _ in range(IN_FLIGHT):
        sock = ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(f"tcp://127.0.0.1:{port}")
        socks.append(sock)
    poller = zmq.Poller()
    for sock in socks:
        poller.register(sock, zmq.POLLIN)
    sent = answered = 0
    idle = list(socks)
    try:
        while answered < FRAMES_PER_PORT:
            while idle and sent < FRAMES_PER_PORT:
                idle.pop().send(_frame(rng, max_frame))
                sent += 1
            ready = dict(poller.poll(10_000))
            assert ready, f"port {port}: {sent - answered} requests got no reply in 10 s"
            for sock in ready:
                reply = json.loads(sock.recv())
                assert _is_reply(reply), reply
                answered += 1
                idle.append(sock)
    finally:
        for sock in socks:
            sock.close(linger=0)
    return answered


def _fuzz_dealer(ctx: zmq.Context[zmq.Socket[bytes]], port: int, rng: random.Random) -> None:
    """Odd frame counts from a DEALER: each message with a body gets exactly one reply."""
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.setsockopt(zmq.RCVTIMEO, 5000)
    dealer.connect(f"tcp://127.0.0.1:{port}")
    try:
        for _ in range(30):
            parts = [rng.randbytes(rng.randrange(30)) for _ in range(rng.randrange(1, 5))]
            dealer.send_multipart(parts)
            dealer.recv_multipart()  # raises zmq.Again when no reply comes
    finally:
        dealer.close(linger=0)


def _raw_tcp_garbage(port: int, rng: random.Random) -> None:
    """Bytes that are not ZMTP at all: the connection is dropped, the port lives on."""
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(rng.randbytes(rng.randrange(1, 4096)))


def test_fuzzing_every_port_leaves_every_port_serving(
    zctx: zmq.Context[zmq.Socket[bytes]], ports: dict[str, int], aisys_system: Any
) -> None:
    seed = int(os.environ.get("LEGACY_FUZZ_SEED", random.randrange(2**32)))
    print(f"LEGACY_FUZZ_SEED={seed}")  # noqa: T201 (replay hint)
    rng = random.Random(seed)
    max_frame = aisys_system.legacy_gateway.max_frame_bytes
    for name, port in sorted(ports.items()):
        _raw_tcp_garbage(port, rng)
        assert _fuzz_req(zctx, port, rng, max_frame) == FRAMES_PER_PORT, name
        _fuzz_dealer(zctx, port, rng)
    # Afterwards: every port answers valid requests, a registration still round-trips.
    name = f"after-fuzz-{uuid.uuid4().hex[:8]}"
    for key, port in sorted(ports.items()):
        client = LegacyClient(zctx, port)
        try:
            assert client.send_json({"action": "health_check"})["status"] == "ok", key
            if key.endswith("system_digital_twin"):
                reg = {"command": "REGISTER", "payload": {"name": name, "port": 5000}}
                assert client.send_json(reg)["status"] == "SUCCESS"
                found = client.send_json({"command": "DISCOVER", "payload": {"name": name}})
                assert (found["status"], found["payload"]["port"]) == ("SUCCESS", 5000)
        finally:
            client.close()
