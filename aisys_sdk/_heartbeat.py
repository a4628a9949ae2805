"""The background heartbeat of a registered agent: keeps its TTL check passing."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from aisys_sdk.errors import NotFound, RateLimited, SdkError, ServerError, TransportError
from aisys_sdk.models import AgentRecord, Heartbeat

__all__ = ["HealthCheck", "HeartbeatLoop"]

logger = logging.getLogger(__name__)

#: What the agent says about itself at each beat (the legacy ``_get_health_status``).
HealthCheck = Callable[[], Heartbeat]


class HeartbeatLoop:
    """Sends a heartbeat every ``interval_s`` until stopped.

    A transient failure (the server unreachable, a 5xx, a 429) is retried sooner, with
    exponential backoff from a quarter of the interval up to the interval, so beats keep coming
    inside the TTL once the server is back. When the registry no longer knows the agent (404:
    removed after being critical too long, or a wiped registry) it registers the agent again.
    Any other error (403: the token lacks ``registry:write``) stops the loop; ``error`` holds it.

    Args:
        beat: sends one heartbeat.
        register: registers the agent again.
        interval_s: time between beats.
        health: called at each beat for the status to send; an exception it raises is sent as
            ``critical`` with the exception as the note.
    """

    def __init__(
        self,
        agent_id: str,
        beat: Callable[[Heartbeat], Awaitable[AgentRecord]],
        register: Callable[[], Awaitable[AgentRecord]],
        interval_s: float,
        health: HealthCheck | None = None,
    ) -> None:
        self.agent_id = agent_id
        self._beat = beat
        self._register = register
        self.interval_s = interval_s
        self._health = health
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        """Heartbeats the server accepted."""
        self.failures = 0
        """Failed attempts since the last accepted one."""
        self.reregistered = 0
        self.last_record: AgentRecord | None = None
        self.error: SdkError | None = None
        """The last failure (None after a success); set for good when the loop stopped on it."""

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"aisys-heartbeat-{self.agent_id}"
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _status(self) -> Heartbeat:
        if self._health is None:
            return Heartbeat()
        try:
            return self._health()
        except Exception as exc:  # the agent's own check failed: that is its health
            return Heartbeat(status="critical", note=f"health check raised {exc!r}"[:1024])

    async def _run(self) -> None:
        delay = self.interval_s
        while True:
            await asyncio.sleep(delay)
            try:
                try:
                    self.last_record = await self._beat(self._status())
                except NotFound:
                    logger.warning("registry lost agent %s; registering it again", self.agent_id)
                    self.last_record = await self._register()
                    self.reregistered += 1
            except (TransportError, ServerError, RateLimited) as exc:
                self.failures += 1
                self.error = exc
                delay = min(self.interval_s, self.interval_s / 4 * 2 ** (self.failures - 1))
                delay *= random.uniform(0.8, 1.0)
                logger.warning(
                    "heartbeat of %s failed (%s); retry in %.2fs", self.agent_id, exc, delay
                )
                continue
            except SdkError as exc:
                self.error = exc
                logger.error("heartbeat of %s stopped: %s", self.agent_id, exc)
                return
            self.sent += 1
            self.failures = 0
            self.error = None
            delay = self.interval_s
