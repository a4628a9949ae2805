"""Mirror mode: the legacy agent answers, and aisys records what it accepted.

For a service listed in ``legacy_gateway.mirror_to`` the gateway forwards every frame to the
still-running legacy agent and relays its reply verbatim, exactly as delegate mode does
(:mod:`legacy_gateway.delegate`). In addition, each registration or event the legacy agent
accepted (:data:`MIRRORED`: the actions that write, answered with a success status) is handed,
after the reply is on its way, to the handler aisys would answer that port with in replace
mode; its reply is discarded. So both registries hold the same agents and the owner can compare
them before switching the service to ``replace``.

The recording never touches the legacy path: a bounded queue sits between them, a full queue
drops the write and counts it, and one worker task applies the writes in arrival order, each
within ``reply_timeout_s``. :class:`MirrorStats` (``aisys migrate status``) shows what was
recorded, refused by aisys, skipped (the legacy agent refused it), failed or dropped.

Example::

    port = MirrorPort(LegacyService.SERVICE_REGISTRY, "ServiceRegistry", "tcp://10.0.0.7:7100",
                      ctx, aisys=ServiceRegistryPort(link), queue_max=1000, timeout_s=4.0)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Final

import zmq
import zmq.asyncio
from pydantic import BaseModel

from cluster.base.settings import MIRRORABLE, LegacyService
from legacy_gateway._codec import (
    ActionRequest,
    CommandRequest,
    InvalidRequest,
    LegacyRequest,
    Reply,
)
from legacy_gateway.delegate import DelegatePort
from legacy_gateway.server import Outcome, PortHandler, Received

__all__ = ["MIRRORED", "MirrorPort", "MirrorStats"]

logger = logging.getLogger(__name__)

S = LegacyService
_REGISTRY_WRITES: Final = frozenset({"register_agent"})
_TWIN_WRITES: Final = frozenset(
    {"register_agent", "report_error", "publish_event", "update_vram_metrics"}
    | {"REGISTER", "REPORT_MODEL_VRAM"}
)
_PERF_LOG_WRITES: Final = frozenset({"log_metric", "log_resource_usage"})

#: Per mirrorable service: the actions (``command`` names upper-case) that are recorded.
MIRRORED: Final[dict[LegacyService, frozenset[str]]] = {
    S.SERVICE_REGISTRY: _REGISTRY_WRITES,
    S.SYSTEM_DIGITAL_TWIN: _TWIN_WRITES,
    S.AUTHENTICATION: frozenset({"register"}),
    S.TRUST_SCORER: frozenset({"log_performance"}),
    S.TRUST_SCORER_DECLARED: frozenset({"log_performance"}),
    S.PERFORMANCE_MONITOR: frozenset({"log_metric"}),
    S.PERFORMANCE_LOGGER: _PERF_LOG_WRITES,
    S.PERFORMANCE_LOGGER_DECLARED: _PERF_LOG_WRITES,
}
assert set(MIRRORED) == MIRRORABLE  # the settings validate mirror_to against MIRRORABLE

#: Statuses with which the legacy agents accepted a write.
_ACCEPTED: Final = frozenset({"success", "SUCCESS", "ok"})


class MirrorStats(BaseModel):
    """What one mirrored port recorded in aisys so far."""

    queued: int
    queue_max: int
    recorded: int  # aisys accepted the write too
    refused: int  # aisys answered it with an error: the two registries now differ
    skipped: int  # the legacy agent refused it, so aisys did not record it either
    failed: int  # aisys raised or did not answer within the timeout
    dropped: int  # the queue was full
    last_problem: str | None


class _Mirrored(Received):
    """A request frame replayed to the aisys handler, with the peer captured on arrival."""

    __slots__ = ("_data", "_peer")

    def __init__(self, data: bytes, peer: str) -> None:
        self._data = data
        self._peer = peer

    @property
    def data(self) -> bytes:
        return self._data

    def peer(self) -> str:
        return self._peer


def _write_name(request: LegacyRequest) -> str | None:
    if isinstance(request, ActionRequest):
        return request.action
    if isinstance(request, CommandRequest):
        return request.command.upper()
    return None


def _accepted(reply: bytes) -> bool:
    try:
        decoded = json.loads(reply)
    except (ValueError, RecursionError):
        return False
    return isinstance(decoded, dict) and decoded.get("status") in _ACCEPTED


_Item = tuple[LegacyRequest, _Mirrored, bytes]


class MirrorPort(DelegatePort):
    """Forwards like :class:`DelegatePort`; records accepted writes through ``aisys``.

    Args:
        service: the legacy service this port answers.
        name: the legacy agent's name, used in error replies.
        address: the legacy agent's ZeroMQ endpoint.
        ctx: an asyncio ZeroMQ context for the forwarding sockets.
        aisys: the handler replace mode would answer this port with.
        queue_max: most writes waiting for aisys; beyond: dropped and counted.
        timeout_s: how long one write may take in aisys.
    """

    def __init__(
        self,
        service: LegacyService,
        name: str,
        address: str,
        ctx: zmq.asyncio.Context,
        *,
        aisys: PortHandler,
        queue_max: int,
        timeout_s: float,
    ) -> None:
        super().__init__(name, address, ctx)
        self._writes = MIRRORED[service]
        self._aisys = aisys
        self._timeout_s = timeout_s
        self._queue_max = queue_max
        self._queue: asyncio.Queue[_Item] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._counts = dict.fromkeys(("recorded", "refused", "skipped", "failed", "dropped"), 0)
        self._last_problem: str | None = None

    @property
    def stats(self) -> MirrorStats:
        queued = self._queue.qsize() if self._queue is not None else 0
        return MirrorStats(
            queued=queued,
            queue_max=self._queue_max,
            last_problem=self._last_problem,
            **self._counts,
        )

    def handle(self, request: LegacyRequest, received: Received) -> Outcome:
        if isinstance(request, InvalidRequest) or _write_name(request) not in self._writes:
            return super().handle(request, received)
        return self._forward_and_record(request, _Mirrored(received.data, received.peer()))

    async def _forward_and_record(self, request: LegacyRequest, mirrored: _Mirrored) -> bytes:
        reply = await self._forward(mirrored.data)
        # The reply is the legacy agent's, unchanged; recording only enqueues (never waits).
        self._enqueue((request, mirrored, reply))
        return reply

    def _enqueue(self, item: _Item) -> None:
        if self._queue is None:
            self._queue = asyncio.Queue(self._queue_max)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._record_all())
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._counts["dropped"] += 1
            self._last_problem = f"the mirror queue was full ({self._queue_max} writes)"

    async def _record_all(self) -> None:
        queue = self._queue
        assert queue is not None
        while True:
            item = await queue.get()
            try:
                await self._record(*item)
            except Exception as exc:  # loop boundary: one bad write must not stop the mirror
                logger.exception("mirror of %s: recording failed", self.service)
                self._counts["failed"] += 1
                self._last_problem = f"{type(exc).__name__}: {exc!s:.200}"

    async def _record(self, request: LegacyRequest, mirrored: _Mirrored, reply: bytes) -> None:
        if not _accepted(reply):
            self._counts["skipped"] += 1
            return
        outcome = self._aisys.handle(request, mirrored)
        try:
            if not isinstance(outcome, bytes | Reply):
                outcome = await asyncio.wait_for(outcome, self._timeout_s)
        except TimeoutError:
            self._counts["failed"] += 1
            self._last_problem = f"aisys did not record it within {self._timeout_s:g}s"
            return
        answer = outcome if isinstance(outcome, Reply) else Reply.model_validate_json(outcome)
        if answer.status in _ACCEPTED:
            self._counts["recorded"] += 1
            return
        self._counts["refused"] += 1
        extra = answer.model_dump()
        self._last_problem = str(extra.get("error") or extra.get("message") or answer.status)

    async def close(self) -> None:
        """Stop the recording worker (writes still queued are not recorded)."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
