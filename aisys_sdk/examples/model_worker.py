"""A model worker on the asyncio client: ModelManagerAgent's VRAM handshake, ported.

The legacy ModelManagerAgent asked VRAMOptimizerAgent ``can_accommodate_model`` and
``make_room_for_model`` before a load, sent ``update_vram_status`` every interval, reported
``REPORT_MODEL_VRAM`` to SystemDigitalTwin, and answered ``UNLOAD_MODEL`` on its own port. Here
the worker holds a VRAM lease for exactly as long as its model is loaded: the lease waits in the
scheduler's queue while room is made, is renewed in the background, and names the worker's port
as its ``unload_endpoint``, so under VRAM pressure the scheduler sends the same ``UNLOAD_MODEL``
frame; the worker then unloads and leaves the lease's block, which releases it. Meanwhile it
answers the coordinator's TaskDefinition frames for its capability, as the legacy agents do.

The model is whatever ``load`` returns (a callable from text to text); loading real weights onto
``grant.gpu_index`` is the agent's own business.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import zmq
import zmq.asyncio

from aisys_sdk import (
    AgentResponse,
    AsyncAgentClient,
    Lease,
    LeaseGrant,
    LeaseRequest,
    Registration,
    UnloadEndpoint,
)

__all__ = ["ModelWorker"]

logger = logging.getLogger(__name__)

Model = Callable[[str], str]


class ModelWorker:
    """Args:
    client: the SDK client (asyncio).
    name: agent id, and the lease's owner.
    host, port: where its REP socket is reachable (requests and UNLOAD_MODEL).
    capability: the requests it takes.
    load: loads the model on the granted GPU; returns it.
    """

    def __init__(
        self,
        client: AsyncAgentClient,
        *,
        name: str,
        host: str,
        port: int,
        capability: str,
        model_name: str,
        vram_mb: int,
        load: Callable[[LeaseGrant], Model],
        lease_wait_s: float = 120.0,
    ) -> None:
        self.client, self.name, self.host, self.port = client, name, host, port
        self.capability, self.model_name, self.vram_mb = capability, model_name, vram_mb
        self._load, self._lease_wait_s = load, lease_wait_s
        self.served = 0
        self.lease: Lease | None = None

    async def run(self) -> None:
        """Serve until asked to unload (or cancelled); the lease is released either way."""
        context = zmq.asyncio.Context()
        rep = context.socket(zmq.REP)
        rep.setsockopt(zmq.LINGER, 0)
        rep.bind(f"tcp://*:{self.port}")
        request = LeaseRequest(
            owner=self.name,
            vram_mb=self.vram_mb,
            model_name=self.model_name,
            unload_endpoint=UnloadEndpoint(
                protocol="zmq", address=f"tcp://{self.host}:{self.port}"
            ),
        )
        registered = False
        try:
            async with self.client.lease(request, wait_s=self._lease_wait_s) as lease:
                self.lease = lease
                model = self._load(lease.grant)
                await self.client.register(
                    Registration(
                        agent_id=self.name,
                        host=self.host,
                        port=self.port,
                        capabilities=[self.capability],
                        metadata={"model": self.model_name, "gpu": lease.grant.gpu_uuid},
                    )
                )
                registered = True
                await self._serve(rep, lease, model)
        finally:
            self.lease = None
            rep.close(linger=1000)  # the UNLOAD_MODEL reply still goes out
            context.term()
            if registered:
                await self.client.deregister(self.name)

    async def _serve(self, rep: zmq.asyncio.Socket, lease: Lease, model: Model) -> None:
        while True:
            if not await rep.poll(200):
                lease.check()  # the scheduler ended the lease: stop serving on VRAM not ours
                continue
            try:
                frame: Any = json.loads(await rep.recv())
            except ValueError as exc:
                await rep.send_json({"status": "error", "error": f"Invalid JSON request: {exc}"})
                continue
            if isinstance(frame, dict) and frame.get("command") == "UNLOAD_MODEL":
                await rep.send_json({"status": "SUCCESS", "message": f"{self.model_name} unloaded"})
                return
            await rep.send_json(await self._answer(frame, lease, model))

    async def _answer(self, frame: Any, lease: Lease, model: Model) -> dict[str, Any]:
        if not isinstance(frame, dict):
            return {"status": "error", "error": "expected a JSON object"}
        if frame.get("action") in ("health_check", "health", "ping"):
            return {"status": "ok", "model": self.model_name}
        try:
            text = str(frame["parameters"]["request"]["data"])
        except (KeyError, TypeError):
            return {"status": "error", "error": "expected a TaskDefinition with a text request"}
        try:
            answer = model(text)
        except Exception as exc:  # the model's failure is the request's answer, and an event
            await self.client.publish_error(
                "inference_failed", exc=exc, correlation_id=str(frame.get("task_id"))
            )
            return {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
        await lease.touch()  # used: the optimizer unloads idle models first
        self.served += 1
        return AgentResponse(status="success", message=answer).model_dump(mode="json")
