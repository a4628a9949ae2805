"""RegistryClient: typed calls of the registry actor, and "write, then wait for the local view".

Every caller of the agent registry goes through this class instead of the actor's untyped
handle. A replica that keeps a local :class:`RegistryView` (a :class:`RegistryFollower`) gives
the client its follower; :meth:`RegistryClient.visible` then returns a write's change only once
that view has it, so the caller reads its own write, and raises :class:`ViewLagging` when the
view does not catch up in time.

Example::

    registry = RegistryClient(handle, follower, write_timeout_s=5.0)
    change = await registry.visible(registry.register(registration))
    record = follower.view.get(change.agent_id)  # there

A busy writer (a replica that takes many registrations at once) sends them through
:meth:`RegistryClient.register_batched` instead: the registrations that arrive while one call
is in flight, or within :data:`BATCH_INTERVAL_S` of its start, go together in the next
(:class:`~cluster.base.aio.Batcher`), each still stored before its caller gets its change.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import ray

from actors.calls import Call
from actors.registry.follower import RegistryFollower
from actors.registry.models import (
    AgentQuery,
    AgentRecord,
    Change,
    ChangeFeed,
    Heartbeat,
    ImportedAgent,
    Registration,
)
from cluster.base.aio import Batcher
from cluster.base.constants import RAY_NAMESPACE, REGISTRY_ACTOR_NAME
from cluster.base.errors import AisysError, ViewLagging
from cluster.base.tally import ImportTally

__all__ = ["RegistryClient"]

#: The least time between two batches of :meth:`RegistryClient.register_batched`: under a burst
#: of registrations, one registry call per 20 ms instead of one per registration; one after a
#: quiet spell is sent at once.
BATCH_INTERVAL_S = 0.02


class RegistryClient:
    """The registry actor's calls, typed.

    Args:
        handle: the actor's handle (:func:`actors.registry.actor.get_or_create_registry`, or
            :meth:`named`).
        follower: this process's follower of that actor, if it keeps a local view.
        write_timeout_s: how long :meth:`visible` waits for that view.
        max_batch: the most registrations :meth:`register_batched` sends in one call.
    """

    def __init__(
        self,
        handle: Any,
        follower: RegistryFollower | None = None,
        write_timeout_s: float = 5.0,
        max_batch: int = 64,
    ) -> None:
        self.handle = handle
        self.follower = follower
        self.write_timeout_s = write_timeout_s
        self._registrations: Batcher[tuple[Registration, str | None], Change] = Batcher(
            self.register_many, max_batch, min_interval_s=BATCH_INTERVAL_S
        )

    @classmethod
    def named(cls) -> RegistryClient:
        """The client of the running registry actor, found by name (sync; no local view).

        Raises:
            ValueError: no registry actor runs (the system is not up).
        """
        return cls(ray.get_actor(REGISTRY_ACTOR_NAME, namespace=RAY_NAMESPACE))

    def register(self, registration: Registration, source: str | None = None) -> Call[Change]:
        """Register (idempotent by ``agent_id``); ``source``: a legacy connection's peer."""
        return Call(self.handle.register.remote(registration, source))

    def register_many(
        self, registrations: list[tuple[Registration, str | None]]
    ) -> Call[list[Change | AisysError]]:
        """Register each ``(registration, source)``: its change or its own refusal, in order."""
        return Call(self.handle.register_many.remote(registrations))

    async def register_batched(
        self, registration: Registration, source: str | None = None
    ) -> Change:
        """:meth:`register`, sent in one call with the others this process has waiting."""
        return await self._registrations.submit((registration, source))

    def heartbeat(self, agent_id: str, heartbeat: Heartbeat) -> Call[Change]:
        """Pass, warn or fail the agent's check (``AgentNotFound`` if it is not registered)."""
        return Call(self.handle.heartbeat.remote(agent_id, heartbeat))

    def deregister(self, agent_id: str) -> Call[Change]:
        return Call(self.handle.deregister.remote(agent_id))

    def import_agents(self, agents: list[ImportedAgent]) -> Call[ImportTally]:
        """Add the legacy registrations the registry lacks (``aisys import-legacy``)."""
        return Call(self.handle.import_agents.remote(agents))

    def get(self, agent_id: str) -> Call[AgentRecord]:
        return Call(self.handle.get.remote(agent_id))

    def list_agents(self, query: AgentQuery | None = None) -> Call[list[AgentRecord]]:
        return Call(self.handle.list_agents.remote(query))

    def version(self) -> Call[int]:
        return Call(self.handle.version.remote())

    def sizes(self) -> Call[dict[str, int]]:
        """What the registry holds in memory (agents, legacy agents, change log)."""
        return Call(self.handle.sizes.remote())

    def wait_changes(self, since: int, timeout_s: float) -> Call[ChangeFeed]:
        return Call(self.handle.wait_changes.remote(since, timeout_s))

    async def visible(self, write: Awaitable[Change]) -> Change:
        """The change ``write`` made, once this process's local view has it.

        Raises:
            ViewLagging: the view did not reach the change's version within
                ``write_timeout_s`` (the write is stored; a read here may miss it).
            AisysError: what the actor refused the write with.
        """
        change = await write
        follower = self.follower
        if follower is not None and not await follower.wait_for(
            change.version, self.write_timeout_s
        ):
            raise ViewLagging(
                "agent registry", change.version, follower.version, self.write_timeout_s
            )
        return change
