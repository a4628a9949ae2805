"""A fake downstream agent for the coordinator tests: a real ZeroMQ REP server in a thread.

It answers every TaskDefinition with a success AgentResponse echoing the request's text, and
every ``{"action": "health_check"}`` with ``{"status": "ok"}``; it records what it received.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import zmq


class ZmqAgent:
    """Start with :meth:`start`, stop (close the socket) with :meth:`stop`; restartable."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port
        self.received: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._context = zmq.Context()

    def start(self) -> ZmqAgent:
        socket = self._context.socket(zmq.REP)
        socket.setsockopt(zmq.LINGER, 0)
        if self.port is None:
            self.port = socket.bind_to_random_port("tcp://127.0.0.1")
        else:
            socket.bind(f"tcp://127.0.0.1:{self.port}")
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, args=(socket,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            assert not self._thread.is_alive(), "agent thread did not stop"
            self._thread = None

    def close(self) -> None:
        self.stop()
        self._context.term()

    def _serve(self, socket: zmq.Socket[bytes]) -> None:
        try:
            while not self._stop.is_set():
                if not socket.poll(50):
                    continue
                message = json.loads(socket.recv())
                self.received.append(message)
                socket.send_json(self._answer(message))
        finally:
            socket.close(linger=0)

    @staticmethod
    def _answer(message: dict[str, Any]) -> dict[str, Any]:
        if message.get("action") == "health_check":
            return {"status": "ok", "service": "fake"}
        request = message["parameters"]["request"]
        return {
            "status": "success",
            "message": "done",
            "data": {"echo": request.get("data"), "task_id": message["task_id"]},
            "metadata": {},
        }
