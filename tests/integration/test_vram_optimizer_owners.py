"""The VRAM optimizer asks real owners to unload: legacy ZeroMQ REQ and an HTTP callback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import zmq

from actors.resources._owners import ask_to_unload
from actors.resources.models import UnloadEndpoint

pytestmark = pytest.mark.integration


@pytest.fixture
def mma_socket() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A real ZeroMQ REP socket answering like ModelManagerAgent, on a random port."""
    ctx = zmq.Context()
    rep = ctx.socket(zmq.REP)
    rep.setsockopt(zmq.LINGER, 0)
    port = rep.bind_to_random_port("tcp://127.0.0.1")
    seen: list[dict[str, str]] = []

    def serve() -> None:
        if rep.poll(5000):
            seen.append(rep.recv_json())  # type: ignore[arg-type]
            rep.send_json({"status": "SUCCESS", "message": "Model phi-2 unloaded"})

    thread = threading.Thread(target=serve)
    thread.start()
    yield f"tcp://127.0.0.1:{port}", seen
    thread.join(10)
    rep.close()
    ctx.term()


def test_zmq_owner_gets_the_legacy_unload_command(mma_socket) -> None:
    address, seen = mma_socket
    assert ask_to_unload(UnloadEndpoint(protocol="zmq", address=address), "phi-2", 5.0)
    assert seen == [{"command": "UNLOAD_MODEL", "model_name": "phi-2"}]


def test_silent_zmq_owner_times_out_instead_of_hanging() -> None:
    ctx = zmq.Context()
    silent = ctx.socket(zmq.REP)  # bound, never answers
    silent.setsockopt(zmq.LINGER, 0)
    port = silent.bind_to_random_port("tcp://127.0.0.1")
    try:
        endpoint = UnloadEndpoint(protocol="zmq", address=f"tcp://127.0.0.1:{port}")
        assert ask_to_unload(endpoint, "phi-2", 0.2) is False
    finally:
        silent.close()
        ctx.term()


def test_http_owner_callback_gets_the_same_body() -> None:
    bodies: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            """Keep the test output clean."""

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.handle_request)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/unload"
    try:
        assert ask_to_unload(UnloadEndpoint(protocol="http", address=url), "whisper", 5.0)
    finally:
        thread.join(10)
        server.server_close()
    assert bodies == [{"command": "UNLOAD_MODEL", "model_name": "whisper"}]
