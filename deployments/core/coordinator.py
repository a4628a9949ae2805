"""RequestCoordinator: the central dispatcher for user requests (plain Python, no Ray).

``submit`` queues a request at its legacy priority and returns at once; worker tasks take
requests in priority order, resolve the downstream (agents registered with the capability the
request names or its type's route names, or a Serve deployment), send the legacy TaskDefinition
through the injected ``send`` and record the reply. Each downstream has a circuit breaker;
while it is open the request fails with :class:`CircuitOpen` or stays queued (``while_open``).
Nothing is dropped: every request ends succeeded, failed (with the error) or cancelled by an
interrupt.

Example::

    coordinator = RequestCoordinator(settings.core.coordinator, resolve, send)
    task = asyncio.create_task(coordinator.run())
    receipt = coordinator.submit(TextRequest(data="hello"))
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from actors.registry.models import AgentRecord, Health
from cluster.base.errors import (
    AisysError,
    CircuitOpen,
    DispatchFailed,
    NoRoute,
    QueueFull,
    RequestCancelled,
    RequestNotFound,
    StorageError,
)
from cluster.base.settings import CoordinatorSettings, DispatchRoute, RequestType
from deployments.core.breaker import BreakerBoard, CircuitBreaker
from deployments.core.dispatch import tcp_endpoint
from deployments.core.journal import JournalEntry, RequestJournal
from deployments.core.models import (
    AgentResponse,
    BreakerView,
    InterruptReport,
    InterruptRequest,
    QueueEntry,
    QueueView,
    RequestState,
    RequestStatus,
    SubmitReceipt,
    TaskDefinition,
    TaskType,
    UserRequest,
)
from deployments.core.priority import BoundedPriorityQueue, compute_priority

__all__ = ["AgentTarget", "DeploymentTarget", "RequestCoordinator", "Target"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentTarget:
    """A registered agent reached over ZeroMQ REQ."""

    downstream: str
    endpoint: str


@dataclass(frozen=True)
class DeploymentTarget:
    """A Serve deployment whose ``method`` takes the TaskDefinition."""

    downstream: str
    app: str
    deployment: str
    method: str


Target = AgentTarget | DeploymentTarget
Resolver = Callable[[str], list[AgentRecord]]
Sender = Callable[[Target, TaskDefinition], Awaitable[AgentResponse]]
_TASK_TYPES: dict[RequestType, TaskType] = {
    "text": "text_processing",
    "audio": "audio_processing",
    "vision": "vision_processing",
}
_HEALTH_ORDER = {Health.PASSING: 0, Health.UNKNOWN: 1, Health.WARNING: 2}


@dataclass
class _Request:
    request_id: str
    request: UserRequest
    priority: int
    submitted_at: float
    state: RequestState = RequestState.QUEUED
    dispatched_at: float | None = None
    finished_at: float | None = None
    dispatch_seq: int | None = None
    downstream: str | None = None
    result: AgentResponse | None = None
    error: AisysError | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def status(self) -> RequestStatus:
        return RequestStatus(
            request_id=self.request_id,
            type=self.request.type,
            state=self.state,
            priority=self.priority,
            session_id=self.request.session_id,
            submitted_at=self.submitted_at,
            dispatched_at=self.dispatched_at,
            finished_at=self.finished_at,
            dispatch_seq=self.dispatch_seq,
            downstream=self.downstream,
            result=self.result,
            error=None if self.error is None else self.error.to_dict(),
        )


class RequestCoordinator:
    """Priority queue, routing, breakers and interrupts of user requests.

    Args:
        settings: the ``core.coordinator`` section.
        resolve: capability -> registered agents (from the local registry view).
        send: delivers a TaskDefinition to a target and returns the reply; raises
            :class:`DispatchFailed` when the target does not answer.
        clock: seconds since the epoch.
        on_finished: called with the final status of every request (metrics).
        trust: agent id -> trust score; among equally healthy agents the higher one is tried
            first.
        journal: where accepted requests are written before they are acknowledged; the
            unfinished ones in it are queued again at construction.
    """

    def __init__(
        self,
        settings: CoordinatorSettings,
        resolve: Resolver,
        send: Sender,
        clock: Callable[[], float] = time.time,
        on_finished: Callable[[RequestStatus], None] | None = None,
        trust: Callable[[str], float] | None = None,
        journal: RequestJournal | None = None,
    ) -> None:
        self._settings = settings
        self._resolve = resolve
        self._send = send
        self._clock = clock
        self._on_finished = on_finished
        self._trust = trust or (lambda _agent: 0.5)
        self._journal = journal
        self._queue: BoundedPriorityQueue[_Request] = BoundedPriorityQueue(settings.queue_max_size)
        self._breakers = BreakerBoard(
            settings.breaker_failure_threshold, settings.breaker_reset_s, clock
        )
        self._requests: dict[str, _Request] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._dispatch_seq = itertools.count()
        self._in_flight = 0
        self.last_submit_at: float | None = None
        self._paused_until: float | None = None
        self._wakeup = asyncio.Event()
        # Selection result of the request just taken: its target and breaker, or why it fails.
        self._picked: dict[str, tuple[Target, CircuitBreaker] | AisysError] = {}
        if journal is not None:
            self._restore(journal)

    # -- API -----------------------------------------------------------------------------

    def _restore(self, journal: RequestJournal) -> None:
        """Queue again what an earlier coordinator accepted and did not finish."""
        for pending in journal.pending():
            entry = _Request(
                pending.request_id, pending.request, pending.priority, pending.submitted_at
            )
            self._requests[entry.request_id] = entry
            try:
                self._queue.push(entry.priority, entry)
            except QueueFull as exc:  # the bound was lowered below what was accepted
                self._finish(entry, exc)
        self._kick()

    def submit(self, request: UserRequest) -> SubmitReceipt:
        """Queue ``request``; raises :class:`QueueFull` when the queue is at its bound."""
        priority = compute_priority(
            request.type,
            request.metadata,
            request.user_id is not None,
            len(self._queue),
            self._queue.max_size,
        )
        entry = _Request(f"req_{uuid.uuid4().hex}", request, priority, self._clock())
        position = self._queue.push(priority, entry)
        if self._journal is not None:
            # Written before the 202 goes out: an acknowledged request survives a restart.
            journal_entry = JournalEntry(entry.request_id, priority, entry.submitted_at, request)
            try:
                self._journal.add(journal_entry)
            except BaseException:
                self._queue.remove_where(lambda queued: queued is entry)
                raise
        self._requests[entry.request_id] = entry
        self.last_submit_at = entry.submitted_at
        self._kick()
        return SubmitReceipt(
            request_id=entry.request_id, priority=priority, queue_position=position
        )

    def status(self, request_id: str) -> RequestStatus:
        entry = self._requests.get(request_id)
        if entry is None:
            raise RequestNotFound(request_id)
        return entry.status()

    async def wait_finished(self, request_id: str, timeout_s: float) -> RequestStatus:
        """The request's status once it finished, or as it is after ``timeout_s`` (long-poll)."""
        entry = self._requests.get(request_id)
        if entry is None:
            raise RequestNotFound(request_id)
        try:
            await asyncio.wait_for(entry.done.wait(), timeout_s)
        except TimeoutError:
            pass  # not finished yet: the caller gets the current state and asks again
        return entry.status()

    async def submit_and_wait(self, request: UserRequest, timeout_s: float) -> RequestStatus:
        """Queue ``request`` and return its status once it finished, or after ``timeout_s``.

        The request is accepted (journaled) exactly as :meth:`submit` accepts it; a timeout
        only ends the wait: the status then says ``queued`` or ``dispatched`` and carries the
        request id, which the caller polls like any other. Raises :class:`QueueFull` as
        :meth:`submit` does.
        """
        receipt = self.submit(request)
        return await self.wait_finished(receipt.request_id, timeout_s)

    def queue_view(self) -> QueueView:
        return QueueView(
            size=len(self._queue),
            max_size=self._queue.max_size,
            in_flight=self._in_flight,
            paused_until=self._pause_end(),
            last_submit_at=self.last_submit_at,
            entries=[
                QueueEntry(
                    request_id=e.request_id,
                    type=e.request.type,
                    priority=e.priority,
                    session_id=e.request.session_id,
                    submitted_at=e.submitted_at,
                )
                for e in self._queue
            ],
        )

    def breaker_views(self) -> list[BreakerView]:
        return self._breakers.views()

    def interrupt(self, interrupt: InterruptRequest) -> InterruptReport:
        """Pause dispatch and cancel the queued requests of a session (all when None).

        Requests already sent to a downstream are not recalled; they finish normally.
        """
        session = interrupt.session_id
        pause_s = (
            self._settings.interrupt_pause_s if interrupt.pause_s is None else interrupt.pause_s
        )
        if pause_s > 0:
            self._paused_until = self._clock() + pause_s
        cancelled = self._queue.remove_where(
            lambda e: session is None or e.request.session_id == session
        )
        for entry in cancelled:
            entry.state = RequestState.CANCELLED
            self._finish(entry, RequestCancelled(entry.request_id, session))
        self._kick()
        return InterruptReport(
            cancelled=[e.request_id for e in cancelled], paused_until=self._pause_end()
        )

    def resume(self) -> None:
        """End an interrupt's pause now."""
        self._paused_until = None
        self._kick()

    async def run(self) -> None:
        """Dispatch forever with ``max_in_flight`` workers; cancel the task to stop."""
        workers = [self._worker() for _ in range(self._settings.max_in_flight)]
        await asyncio.gather(*workers)

    # -- dispatch ------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            entry, target, breaker = await self._next()
            await self._dispatch(entry, target, breaker)

    async def _next(self) -> tuple[_Request, Target, CircuitBreaker]:
        while True:
            wait_s = self._pause_remaining()
            if wait_s is None:
                entry = self._queue.take_first(self._select)
                if entry is not None:
                    picked = self._picked.pop(entry.request_id)
                    if isinstance(picked, AisysError):
                        self._finish(entry, picked)
                        continue
                    return entry, picked[0], picked[1]
                wait_s = self._breakers.next_retry_in() if self._queue else None
            await self._sleep(wait_s)

    def _select(self, entry: _Request) -> bool:
        """Whether ``entry`` can leave the queue now; its target (or error) goes to _picked."""
        route = self._route(entry.request)
        candidates = self._candidates(route)
        if not candidates:
            if self._settings.while_open == "wait":
                return False
            target_text = f"capability '{route.capability}'" if route.capability else "none"
            self._picked[entry.request_id] = NoRoute(entry.request.type, target_text)
            return True
        for target in candidates:
            breaker = self._breakers.get(target.downstream)
            if breaker.allow():
                self._picked[entry.request_id] = (target, breaker)
                return True
        if self._settings.while_open == "wait":
            return False
        first = self._breakers.get(candidates[0].downstream)
        self._picked[entry.request_id] = CircuitOpen(first.name, first.retry_in())
        return True

    def _route(self, request: UserRequest) -> DispatchRoute:
        """The request's own capability, else the configured route of its type."""
        if request.capability is not None:
            return DispatchRoute(capability=request.capability)
        return self._settings.routes[request.type]

    def _candidates(self, route: DispatchRoute) -> list[Target]:
        if route.capability is None:
            assert route.app is not None and route.deployment is not None
            name = f"{route.app}/{route.deployment}"
            return [DeploymentTarget(name, route.app, route.deployment, route.method)]
        records = [r for r in self._resolve(route.capability) if r.health is not Health.CRITICAL]
        # Healthier first; among equally healthy agents, the more trusted one.
        records.sort(
            key=lambda r: (_HEALTH_ORDER.get(r.health, 3), -self._trust(r.agent_id), r.agent_id)
        )
        return [AgentTarget(r.agent_id, tcp_endpoint(r.host, r.port)) for r in records]

    async def _dispatch(self, entry: _Request, target: Target, breaker: CircuitBreaker) -> None:
        entry.state = RequestState.DISPATCHED
        entry.dispatched_at = self._clock()
        entry.dispatch_seq = next(self._dispatch_seq)
        entry.downstream = target.downstream
        self._in_flight += 1
        try:
            reply = await self._send(target, self._task_definition(entry))
        except DispatchFailed as exc:
            breaker.record_failure()
            self._finish(entry, DispatchFailed(target.downstream, exc.reason))
        except Exception as exc:
            # Loop boundary: an unexpected sender error fails this request (with the
            # traceback in the log) and counts against the downstream; the worker goes on.
            logger.exception("dispatch of %s to %s failed", entry.request_id, target.downstream)
            breaker.record_failure()
            self._finish(entry, DispatchFailed(target.downstream, repr(exc)))
        else:
            breaker.record_success()
            entry.result = reply
            if reply.ok:
                self._finish(entry, None)
            else:
                reason = f"agent answered status {reply.status!r}"
                self._finish(entry, DispatchFailed(target.downstream, reason))
        finally:
            self._in_flight -= 1
            self._kick()

    def _task_definition(self, entry: _Request) -> TaskDefinition:
        now = self._clock()
        return TaskDefinition(
            task_id=f"task_{entry.request_id.removeprefix('req_')}",
            task_type=_TASK_TYPES[entry.request.type],
            priority=entry.priority,
            # The capability is a routing hint for the coordinator; agents get the legacy shape.
            parameters={"request": entry.request.model_dump(mode="json", exclude={"capability"})},
            created_at=datetime.fromtimestamp(entry.submitted_at, UTC).isoformat(),
            request_id=entry.request_id,
            timestamp=now,
        )

    def _finish(self, entry: _Request, error: AisysError | None) -> None:
        entry.finished_at = self._clock()
        entry.error = error
        if entry.state is not RequestState.CANCELLED:
            entry.state = RequestState.FAILED if error is not None else RequestState.SUCCEEDED
        self._finished[entry.request_id] = None
        while len(self._finished) > self._settings.results_kept:
            old, _ = self._finished.popitem(last=False)
            self._requests.pop(old, None)
        entry.done.set()
        if self._journal is not None:
            try:
                self._journal.remove(entry.request_id)
            except StorageError as exc:
                # The request is done; left in the journal it is dispatched again after a
                # restart (at-least-once), which beats stopping the dispatch loop here.
                logger.error("request %s finished but stays journaled: %s", entry.request_id, exc)
        if self._on_finished is not None:
            self._on_finished(entry.status())

    # -- waiting -------------------------------------------------------------------------

    def _pause_end(self) -> float | None:
        if self._paused_until is not None and self._paused_until <= self._clock():
            self._paused_until = None
        return self._paused_until

    def _pause_remaining(self) -> float | None:
        end = self._pause_end()
        return None if end is None else end - self._clock()

    def _kick(self) -> None:
        # Wake every waiting worker, then arm a fresh event for the next change.
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    async def _sleep(self, timeout_s: float | None) -> None:
        event = self._wakeup
        try:
            await asyncio.wait_for(event.wait(), timeout_s)
        except TimeoutError:
            return
