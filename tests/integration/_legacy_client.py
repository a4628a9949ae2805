"""A legacy REQ client as the legacy agents use it, and fixtures for the deployed gateway ports.

Test modules import the fixtures ``zctx`` and ``ports`` (``*_fixture``) from here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from cluster.base.settings import Settings
from tests.conftest import wait_for_condition


class LegacyClient:
    """One REQ socket to ``127.0.0.1:port``; every call sends one frame and waits for a reply."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], port: int, timeout_ms: int = 5000):
        self.port = port
        self.sock = ctx.socket(zmq.REQ)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
        self.sock.setsockopt(zmq.SNDTIMEO, timeout_ms)
        self.sock.connect(f"tcp://127.0.0.1:{port}")

    def raw(self, frame: bytes) -> Any:
        """Send ``frame`` verbatim; return the decoded JSON reply (raises zmq.Again on timeout)."""
        self.sock.send(frame)
        return json.loads(self.sock.recv())

    def send_json(self, obj: object) -> Any:
        """What ``socket.send_json`` puts on the wire, as the legacy clients do."""
        return self.raw(json.dumps(obj).encode())

    def close(self) -> None:
        self.sock.close(linger=0)


@pytest.fixture(scope="module", name="zctx")
def zctx_fixture() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture(scope="module", name="ports")
def ports_fixture(aisys_system: Settings, zctx: zmq.Context[zmq.Socket[bytes]]) -> dict[str, int]:
    """Port by "host/service", once every port answers health."""
    table = aisys_system.legacy_gateway.ports
    found = {f"{host}/{svc}": port for host, svcs in table.items() for svc, port in svcs.items()}

    def all_answer() -> bool:
        for port in found.values():
            client = LegacyClient(zctx, port, timeout_ms=2000)
            try:
                assert client.send_json({"action": "health"})["status"] == "ok"
            finally:
                client.close()
        return True

    wait_for_condition(all_answer, timeout_s=120)
    return found


@pytest.fixture(name="client")
def client_fixture(
    zctx: zmq.Context[zmq.Socket[bytes]], ports: dict[str, int]
) -> Iterator[dict[str, LegacyClient]]:
    """A legacy client per "host/service" port."""
    clients = {name: LegacyClient(zctx, port) for name, port in ports.items()}
    yield clients
    for c in clients.values():
        c.close()
