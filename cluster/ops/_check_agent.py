"""The throw-away ZeroMQ agent of ``aisys check``: a real REP server in a thread.

It answers every TaskDefinition the coordinator sends with a success ``AgentResponse`` that
echoes the request's text, as a downstream agent of the legacy RequestCoordinator does, so the
check sees a request travel HTTP -> coordinator -> ZeroMQ -> agent and back.
"""

from __future__ import annotations

import threading

import zmq
from pydantic import TypeAdapter, ValidationError

from deployments.core.models import AgentResponse, TaskDefinition, TextRequest, UserRequest

__all__ = ["CheckAgent"]

_REQUEST: TypeAdapter[UserRequest] = TypeAdapter(UserRequest)


class CheckAgent:
    """Bind with :meth:`start` (a random free port on ``ip``), stop with :meth:`stop`.

    Args:
        ip: address to bind; it must be reachable from the host that runs the coordinator.
    """

    def __init__(self, ip: str) -> None:
        self.ip = ip
        self.port = 0
        self.received: list[TaskDefinition] = []
        self._context = zmq.Context()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> CheckAgent:
        """Bind the REP socket and serve from a daemon thread.

        Raises:
            zmq.ZMQError: ``ip`` is not an address of this machine.
        """
        socket = self._context.socket(zmq.REP)
        socket.setsockopt(zmq.LINGER, 0)
        try:
            self.port = socket.bind_to_random_port(f"tcp://{self.ip}")
        except zmq.ZMQError:
            socket.close(linger=0)
            raise
        self._thread = threading.Thread(
            target=self._serve, args=(socket,), name="aisys-check-agent", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and the context; idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._context.term()

    def _serve(self, socket: zmq.Socket[bytes]) -> None:
        try:
            while not self._stop.is_set():
                if socket.poll(50):
                    socket.send(self._answer(socket.recv()).model_dump_json().encode())
        finally:
            socket.close(linger=0)

    def _answer(self, frame: bytes) -> AgentResponse:
        # A REP socket must answer every request, so a frame it cannot read gets an error reply.
        try:
            task = TaskDefinition.model_validate_json(frame)
            request = _REQUEST.validate_python(task.parameters.get("request"))
        except ValidationError as exc:
            return AgentResponse(status="error", error=f"not a TaskDefinition: {exc}")
        self.received.append(task)
        echo = request.data if isinstance(request, TextRequest) else None
        return AgentResponse(
            status="success",
            message="aisys check agent",
            data={"echo": echo, "task_id": task.task_id},
        )
