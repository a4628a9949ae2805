"""The blocking client, :class:`AgentClient`, for agents written as threads and loops.

It is :class:`~aisys_sdk.aio.AsyncAgentClient` run on an event loop in a thread of its own:
each method hands its coroutine to that loop and waits for the result, and the background
work (heartbeats, lease renewal) runs there, so the agent's own threads are free. One
implementation, two faces.

Example::

    with AgentClient(ClientConfig.model_validate({})) as client:   # from AISYS_AGENT_* env
        client.register(Registration(agent_id="NLUAgent", host="10.0.0.5", port=5709))
        with client.lease(LeaseRequest(owner="NLUAgent", vram_mb=2048)) as lease:
            load_model(device=lease.grant.gpu_index)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx
from pydantic import JsonValue

from aisys_sdk._heartbeat import HealthCheck, HeartbeatLoop
from aisys_sdk._lease import Lease
from aisys_sdk._tokens import Clock
from aisys_sdk.aio import AsyncAgentClient
from aisys_sdk.config import ClientConfig
from aisys_sdk.models import (
    AgentRecord,
    ErrorEvent,
    Health,
    Heartbeat,
    LeaseGrant,
    LeaseRequest,
    PublishResult,
    Registration,
    RequestStatus,
    Severity,
    SubmitReceipt,
    TokenPair,
    UserRequest,
    WorkerRequest,
    WorkerStatus,
)

__all__ = ["AgentClient", "SyncLease"]

T = TypeVar("T")


class _LoopThread:
    """An event loop running in a daemon thread; :meth:`run` executes a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="aisys-sdk-loop", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self.loop.is_closed() or not self._thread.is_alive():
            coro.close()
            raise RuntimeError("the SDK client is closed")
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a blocking SDK call from a heartbeat health check would deadlock")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # KeyboardInterrupt while waiting: do not leave it running
            raise

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


class SyncLease:
    """A VRAM lease held in a ``with`` block; see :class:`~aisys_sdk._lease.Lease`."""

    def __init__(self, runner: _LoopThread, lease: Lease) -> None:
        self._runner = runner
        self._lease = lease

    @property
    def grant(self) -> LeaseGrant:
        return self._lease.grant

    @property
    def lease_id(self) -> str:
        return self._lease.lease_id

    @property
    def renewals(self) -> int:
        return self._lease.renewals

    def check(self) -> None:
        """Raise :class:`~aisys_sdk.errors.LeaseLost` if the server ended the lease."""
        self._lease.check()

    def touch(self) -> LeaseGrant:
        """Renew now and mark the leased model as used."""
        return self._runner.run(self._lease.touch())

    def __enter__(self) -> SyncLease:
        self._runner.run(self._lease.__aenter__())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._runner.run(self._lease.__aexit__(exc_type, exc, tb))


class AgentClient:
    """An agent's connection to aisys (blocking). Close it, or use ``with``.

    The arguments and methods are those of :class:`~aisys_sdk.aio.AsyncAgentClient`.
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        clock: Clock = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
        hostname: str | None = None,
    ) -> None:
        self._runner = _LoopThread()

        async def make() -> AsyncAgentClient:
            return AsyncAgentClient(config, clock=clock, transport=transport, hostname=hostname)

        self._aio = self._runner.run(make())
        self.config = config

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop heartbeats, deregister, close the connections and the loop thread; idempotent."""
        if self._runner.loop.is_closed():
            return
        try:
            self._runner.run(self._aio.close())
        finally:
            self._runner.stop()

    def token(self) -> TokenPair:
        return self._runner.run(self._aio.token())

    @property
    def token_renewals(self) -> int:
        return self._aio.token_renewals

    def register(
        self,
        registration: Registration,
        *,
        heartbeat: bool = True,
        interval_s: float | None = None,
        health: HealthCheck | None = None,
        deregister_on_close: bool = True,
    ) -> AgentRecord:
        """See :meth:`AsyncAgentClient.register`; ``health`` runs on the SDK's loop thread and
        must not call the client."""
        return self._runner.run(
            self._aio.register(
                registration,
                heartbeat=heartbeat,
                interval_s=interval_s,
                health=health,
                deregister_on_close=deregister_on_close,
            )
        )

    def heartbeats(self, agent_id: str) -> HeartbeatLoop | None:
        return self._aio.heartbeats(agent_id)

    def heartbeat(self, agent_id: str, beat: Heartbeat | None = None) -> AgentRecord:
        return self._runner.run(self._aio.heartbeat(agent_id, beat))

    def deregister(self, agent_id: str) -> None:
        self._runner.run(self._aio.deregister(agent_id))

    def lookup(self, agent_id: str) -> AgentRecord:
        return self._runner.run(self._aio.lookup(agent_id))

    def find_agents(
        self,
        *,
        capability: str | None = None,
        host: str | None = None,
        health: Health | None = None,
        agent_type: str | None = None,
        tag: str | None = None,
    ) -> list[AgentRecord]:
        return self._runner.run(
            self._aio.find_agents(
                capability=capability, host=host, health=health, agent_type=agent_type, tag=tag
            )
        )

    def endpoint(self, agent_id: str) -> str:
        return self._runner.run(self._aio.endpoint(agent_id))

    def submit(self, request: UserRequest) -> SubmitReceipt:
        return self._runner.run(self._aio.submit(request))

    def request_status(self, request_id: str) -> RequestStatus:
        return self._runner.run(self._aio.request_status(request_id))

    def wait_result(self, request_id: str, timeout_s: float = 60.0) -> RequestStatus:
        return self._runner.run(self._aio.wait_result(request_id, timeout_s))

    def submit_and_wait(self, request: UserRequest, timeout_s: float = 60.0) -> RequestStatus:
        return self._runner.run(self._aio.submit_and_wait(request, timeout_s))

    def publish_error(
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
        return self._runner.run(
            self._aio.publish_error(
                error_type,
                message,
                severity=severity,
                details=details,
                exc=exc,
                correlation_id=correlation_id,
                agent=agent,
            )
        )

    def publish_events(self, events: Sequence[ErrorEvent]) -> PublishResult:
        return self._runner.run(self._aio.publish_events(events))

    def lease(
        self, request: LeaseRequest, *, wait_s: float = 60.0, renew_every_s: float | None = None
    ) -> SyncLease:
        return SyncLease(
            self._runner, self._aio.lease(request, wait_s=wait_s, renew_every_s=renew_every_s)
        )

    def start_worker(self, request: WorkerRequest) -> WorkerStatus:
        return self._runner.run(self._aio.start_worker(request))

    def worker(self, worker_id: str) -> WorkerStatus:
        return self._runner.run(self._aio.worker(worker_id))

    def call_worker(
        self, worker_id: str, method: str, *args: JsonValue, **kwargs: JsonValue
    ) -> JsonValue:
        return self._runner.run(self._aio.call_worker(worker_id, method, *args, **kwargs))

    def stop_worker(self, worker_id: str) -> WorkerStatus:
        return self._runner.run(self._aio.stop_worker(worker_id))
