"""The asyncio client, :class:`AsyncAgentClient`; the sync client runs this one on a thread.

Example::

    async with AsyncAgentClient(ClientConfig(url=..., client_id="NLUAgent", client_secret=s)) as c:
        await c.register(Registration(agent_id="NLUAgent", host="10.0.0.5", port=5709))
        peers = await c.find_agents(capability="reasoning")
        status = await c.submit_and_wait(TextRequest(data="hello"))
        async with c.lease(LeaseRequest(owner="NLUAgent", vram_mb=2048)) as lease:
            ...  # load the model on lease.grant.gpu_index
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import traceback
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import httpx
from pydantic import JsonValue

from aisys_sdk._api import Api, Params
from aisys_sdk._heartbeat import HealthCheck, HeartbeatLoop
from aisys_sdk._lease import Lease
from aisys_sdk._tokens import Clock
from aisys_sdk.config import ClientConfig
from aisys_sdk.errors import RequestFailed, SdkError, WaitTimedOut
from aisys_sdk.models import (
    AgentRecord,
    ErrorEvent,
    Health,
    Heartbeat,
    LeaseRequest,
    PublishResult,
    Registration,
    RequestStatus,
    Severity,
    SubmitReceipt,
    TokenPair,
    UserRequest,
    WorkerCall,
    WorkerCallResult,
    WorkerRequest,
    WorkerStatus,
    _AgentList,
)

__all__ = ["AsyncAgentClient"]

logger = logging.getLogger(__name__)

#: The longest single wait the core's ``GET /core/requests/{id}?wait_s=`` allows.
_MAX_SERVER_WAIT_S = 30.0


class AsyncAgentClient:
    """An agent's connection to aisys (asyncio). Close it, or use ``async with``.

    Args:
        config: where aisys is and the agent's identity.
        clock: monotonic seconds, for token expiry.
        transport: an httpx transport to send through; None: plain TCP (or TLS).
        hostname: the ``host`` of published error events; None: this machine's name.
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        clock: Clock = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
        hostname: str | None = None,
    ) -> None:
        self.config = config
        self._api = Api(config, clock, transport)
        self._hostname = hostname if hostname is not None else socket.gethostname()
        self._heartbeats: dict[str, HeartbeatLoop] = {}
        self._deregister_on_close: set[str] = set()

    async def __aenter__(self) -> AsyncAgentClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop every heartbeat, deregister what was registered with ``deregister_on_close``,
        close the connections."""
        for loop in list(self._heartbeats.values()):
            await loop.stop()
        self._heartbeats.clear()
        for agent_id in sorted(self._deregister_on_close):
            try:
                await self.deregister(agent_id)
            except SdkError as exc:  # its TTL then retires it; closing must finish
                logger.warning("deregistering %s on close failed: %s", agent_id, exc)
        await self._api.aclose()

    # -- identity ------------------------------------------------------------------------

    async def token(self) -> TokenPair:
        """The current token pair, obtained or renewed first if needed."""
        await self._api.tokens.access_token()
        pair = self._api.tokens.pair
        assert pair is not None
        return pair

    @property
    def token_renewals(self) -> int:
        """How many tokens were obtained so far (the first login included)."""
        return self._api.tokens.renewals

    # -- registry ------------------------------------------------------------------------

    async def register(
        self,
        registration: Registration,
        *,
        heartbeat: bool = True,
        interval_s: float | None = None,
        health: HealthCheck | None = None,
        deregister_on_close: bool = True,
    ) -> AgentRecord:
        """Register an agent (idempotent by ``agent_id``) and keep its TTL check passing.

        Args:
            heartbeat: send heartbeats in the background (for a ``ttl`` check).
            interval_s: time between heartbeats; None: a third of the TTL.
            health: called at each heartbeat for the status to report.
            deregister_on_close: deregister it when the client closes.
        """
        record: AgentRecord = await self._api.call(
            "POST", "/core/agents", AgentRecord, body=registration
        )
        agent_id = record.agent_id
        if deregister_on_close:
            self._deregister_on_close.add(agent_id)
        old = self._heartbeats.pop(agent_id, None)
        if old is not None:
            await old.stop()
        if heartbeat and record.check == "ttl" and record.ttl_s is not None:
            loop = HeartbeatLoop(
                agent_id,
                lambda beat: self.heartbeat(agent_id, beat),
                lambda: self._api.call("POST", "/core/agents", AgentRecord, body=registration),
                interval_s if interval_s is not None else record.ttl_s / 3,
                health,
            )
            self._heartbeats[agent_id] = loop
            loop.start()
        return record

    def heartbeats(self, agent_id: str) -> HeartbeatLoop | None:
        """The background heartbeat of ``agent_id`` (None when it has none)."""
        return self._heartbeats.get(agent_id)

    async def heartbeat(self, agent_id: str, beat: Heartbeat | None = None) -> AgentRecord:
        """Send one heartbeat (passing unless ``beat`` says otherwise)."""
        record: AgentRecord = await self._api.call(
            "PUT", f"/core/agents/{agent_id}/heartbeat", AgentRecord, body=beat or Heartbeat()
        )
        return record

    async def deregister(self, agent_id: str) -> None:
        """Stop its heartbeat and remove the registration."""
        loop = self._heartbeats.pop(agent_id, None)
        if loop is not None:
            await loop.stop()
        self._deregister_on_close.discard(agent_id)
        await self._api.call("DELETE", f"/core/agents/{agent_id}", None)

    # -- discovery -----------------------------------------------------------------------

    async def lookup(self, agent_id: str) -> AgentRecord:
        """One agent by id; :class:`~aisys_sdk.errors.NotFound` when it is not registered."""
        record: AgentRecord = await self._api.call("GET", f"/core/agents/{agent_id}", AgentRecord)
        return record

    async def find_agents(
        self,
        *,
        capability: str | None = None,
        host: str | None = None,
        health: Health | None = None,
        agent_type: str | None = None,
        tag: str | None = None,
    ) -> list[AgentRecord]:
        """Agents matching every given filter."""
        given = {
            "capability": capability,
            "host": host,
            "health": health.value if health is not None else None,
            "agent_type": agent_type,
            "tag": tag,
        }
        params: Params = {k: v for k, v in given.items() if v is not None}
        found: _AgentList = await self._api.call("GET", "/core/agents", _AgentList, params=params)
        return found.agents

    async def endpoint(self, agent_id: str) -> str:
        """``tcp://host:port`` of a registered agent (the legacy ``get_agent_endpoint``)."""
        return (await self.lookup(agent_id)).endpoint

    # -- coordinated requests ------------------------------------------------------------

    async def submit(self, request: UserRequest) -> SubmitReceipt:
        """Queue a request with the coordinator; returns at once with its id."""
        receipt: SubmitReceipt = await self._api.call(
            "POST", "/core/requests", SubmitReceipt, body=request
        )
        return receipt

    async def request_status(self, request_id: str) -> RequestStatus:
        status: RequestStatus = await self._api.call(
            "GET", f"/core/requests/{request_id}", RequestStatus
        )
        return status

    async def wait_result(self, request_id: str, timeout_s: float = 60.0) -> RequestStatus:
        """Wait until the request finished; return it if it succeeded.

        Raises:
            RequestFailed: it ended ``failed`` or ``cancelled``.
            WaitTimedOut: it had not finished after ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            wait = min(_MAX_SERVER_WAIT_S, max(0.0, deadline - time.monotonic()))
            status: RequestStatus = await self._api.call(
                "GET",
                f"/core/requests/{request_id}",
                RequestStatus,
                params={"wait_s": round(wait, 3)},
                extra_timeout_s=wait,
            )
            if status.state.finished:
                if status.state != "succeeded":
                    raise RequestFailed(status)
                return status
            if time.monotonic() >= deadline:
                raise WaitTimedOut(f"request {request_id} ({status.state})", timeout_s)
            if wait == 0:
                await asyncio.sleep(0.05)

    async def submit_and_wait(self, request: UserRequest, timeout_s: float = 60.0) -> RequestStatus:
        """:meth:`submit`, then :meth:`wait_result`."""
        receipt = await self.submit(request)
        return await self.wait_result(receipt.request_id, timeout_s)

    # -- ErrorBus ------------------------------------------------------------------------

    async def publish_error(
        self,
        error_type: str,
        message: str = "",
        *,
        severity: Severity = "error",
        details: dict[str, JsonValue] | None = None,
        exc: BaseException | None = None,
        correlation_id: str | None = None,
        agent: str | None = None,
    ) -> PublishResult:
        """Publish one error event as this agent; ``exc`` adds its stack trace.

        Returns once the ErrorBus stored the event (or spooled it to disk while NATS is down).
        """
        trace = "".join(traceback.format_exception(exc)) if exc is not None else None
        event = ErrorEvent(
            host=self._hostname,
            agent=agent or self.config.client_id,
            error_type=error_type,
            severity=severity,
            message=message or (str(exc) if exc is not None else ""),
            details=details or {},
            stack_trace=trace,
            correlation_id=correlation_id,
        )
        return await self.publish_events([event])

    async def publish_events(self, events: Sequence[ErrorEvent]) -> PublishResult:
        """Publish prepared events in one call."""
        body: dict[str, Any] = {"events": [e.model_dump(mode="json") for e in events]}
        result: PublishResult = await self._api.call("POST", "/errors/", PublishResult, body=body)
        return result

    # -- VRAM leases ---------------------------------------------------------------------

    def lease(
        self, request: LeaseRequest, *, wait_s: float = 60.0, renew_every_s: float | None = None
    ) -> Lease:
        """A VRAM lease to hold in ``async with``: renewed while held, released on exit.

        Args:
            wait_s: how long to wait while the request is queued behind other leases.
            renew_every_s: renewal period; None: a third of the lease's TTL.
        """
        return Lease(self._api, request, wait_s, renew_every_s)

    # -- model workers -------------------------------------------------------------------

    async def start_worker(self, request: WorkerRequest) -> WorkerStatus:
        """Start a model worker under a VRAM lease; ready (or waiting for its lease)."""
        status: WorkerStatus = await self._api.call(
            "POST", "/resources/workers", WorkerStatus, body=request
        )
        return status

    async def worker(self, worker_id: str) -> WorkerStatus:
        status: WorkerStatus = await self._api.call(
            "GET", f"/resources/workers/{worker_id}", WorkerStatus
        )
        return status

    async def call_worker(
        self, worker_id: str, method: str, *args: JsonValue, **kwargs: JsonValue
    ) -> JsonValue:
        """Call an allow-listed method of the worker; its JSON result."""
        call = WorkerCall(method=method, args=list(args), kwargs=kwargs)
        result: WorkerCallResult = await self._api.call(
            "POST", f"/resources/workers/{worker_id}/call", WorkerCallResult, body=call
        )
        return result.result

    async def stop_worker(self, worker_id: str) -> WorkerStatus:
        """Stop the worker and release its lease."""
        status: WorkerStatus = await self._api.call(
            "DELETE", f"/resources/workers/{worker_id}", WorkerStatus
        )
        return status
