"""The floor of a coordinated request: one no-op Serve hop plus one ZeroMQ round trip.

``POST /`` takes a user request's JSON, sends a TaskDefinition-sized frame over a pooled REQ
socket to the agent named in the args, waits for its reply and answers a body shaped like a
finished ``RequestStatus``. That is the least any request API with a Serve HTTP ingress and a
ZeroMQ agent behind it can cost (proxy, router, replica, FastAPI, JSON, one REQ/REP round
trip): no queue, no priority, no journal, no breaker, no token check. The coordinator benchmark
deploys it with CoreOrchestrator's replica options and compares submit-and-wait against it.

No ``from __future__ import annotations``: FastAPI reads the route annotations at runtime.
"""

import json
from typing import Any

import zmq
import zmq.asyncio
from fastapi import Body, FastAPI
from pydantic import BaseModel, ConfigDict
from ray import serve
from ray.serve import Application

__all__ = ["ZmqHop", "ZmqHopArgs", "build_app"]

api = FastAPI(title="aisys bench no-op hop plus one ZeroMQ round trip")


class ZmqHopArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint: str


@serve.deployment
@serve.ingress(api)
class ZmqHop:
    """Relays every request to the agent over ZeroMQ and answers its reply."""

    def __init__(self, args: ZmqHopArgs) -> None:
        self._endpoint = args.endpoint
        self._context = zmq.asyncio.Context()
        self._idle: list[zmq.asyncio.Socket] = []
        self._seq = 0

    @api.post("/")
    async def relay(self, request: dict[str, Any] = Body()) -> dict[str, Any]:  # noqa: B008
        self._seq += 1
        frame = {
            "task_id": f"task_{self._seq:032x}",
            "agent_id": "RequestCoordinator",
            "task_type": "text_processing",
            "priority": 2,
            "parameters": {"request": request},
            "request_id": f"req_{self._seq:032x}",
            "source_agent": "RequestCoordinator",
        }
        socket = self._idle.pop() if self._idle else self._connect()
        await socket.send(json.dumps(frame).encode())
        reply = json.loads(await socket.recv())
        self._idle.append(socket)
        return {
            "request_id": frame["request_id"],
            "type": request.get("type", "text"),
            "state": "succeeded",
            "priority": 2,
            "session_id": request.get("session_id"),
            "submitted_at": 0.0,
            "dispatched_at": 0.0,
            "finished_at": 0.0,
            "dispatch_seq": self._seq,
            "downstream": "bench-reasoner",
            "result": reply,
            "error": None,
        }

    def _connect(self) -> zmq.asyncio.Socket:
        socket = self._context.socket(zmq.REQ)
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(self._endpoint)
        return socket


def build_app(args: dict[str, Any]) -> Application:
    """Serve application builder named by ``bench._zmq_hop:build_app``."""
    return ZmqHop.bind(ZmqHopArgs.model_validate(args))  # type: ignore[attr-defined,no-any-return]
