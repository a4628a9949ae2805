"""The registry's named, detached Ray actor and the helper that gets or creates it.

The actor is a thin async shell over :class:`RegistryCore`: it owns the SQLite store (so a
restarted actor reloads every acknowledged registration), runs the TTL sweep, and lets readers
long-poll the change feed with :meth:`RegistryActor.wait_changes`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, cast

import ray

from actors._singleton import singleton_options
from actors._unusable import Unusable
from actors.registry.core import RegistryCore
from actors.registry.models import (
    AgentQuery,
    AgentRecord,
    Change,
    ChangeFeed,
    Heartbeat,
    ImportedAgent,
    Registration,
)
from actors.registry.store import SqliteRegistryStore
from cluster.base.constants import REGISTRY_ACTOR_NAME
from cluster.base.errors import AisysError, DatabaseUnusable
from cluster.base.settings import RegistrySettings
from cluster.base.tally import ImportTally

__all__ = ["RegistryActor", "get_or_create_registry"]

logger = logging.getLogger(__name__)

#: Longest a ``wait_changes`` call blocks; callers loop.
MAX_WAIT_S = 30.0


class RegistryActor:
    """Ray actor holding the agent registry. Use :func:`get_or_create_registry`.

    When ``registry.sqlite3`` is not a usable database the actor still starts, and every call
    raises that :class:`~cluster.base.errors.DatabaseUnusable` (naming the file and the fix) rather
    than the constructor failing and Ray re-creating the actor.
    """

    def __init__(self, settings: RegistrySettings, db_path: str) -> None:
        self._changed = asyncio.Event()
        self._sweep_interval = settings.sweep_interval_s
        try:
            self._core = RegistryCore(settings, SqliteRegistryStore(Path(db_path)), time.time)
        except DatabaseUnusable as exc:
            self._core = cast(RegistryCore, Unusable(exc))
            return
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())
        logger.info(
            "registry loaded %d agents at version %d",
            len(self._core.list_agents()),
            self._core.version,
        )

    async def register(self, registration: Registration, source: str | None = None) -> Change:
        """Register; ``source`` is the peer address of a legacy port's connection."""
        return self._notify(self._core.register(registration, source))

    async def register_many(
        self, registrations: list[tuple[Registration, str | None]]
    ) -> list[Change | AisysError]:
        """Register each ``(registration, source)`` in order: one actor call for a batch.

        Returns one answer per registration, in order: its change, or the error that refused
        it alone (a quota, a failed write); the others are stored all the same.
        """
        answers: list[Change | AisysError] = []
        for registration, source in registrations:
            try:
                answers.append(self._core.register(registration, source))
            except AisysError as exc:
                answers.append(exc)
        changes = [answer for answer in answers if isinstance(answer, Change)]
        if changes:
            self._notify(changes[-1])
        return answers

    async def sizes(self) -> dict[str, int]:
        """What the registry holds in memory: agents, legacy ones, change log length/bytes."""
        return {
            "agents": len(self._core.list_agents()),
            "legacy_agents": self._core.legacy_count(),
            "change_log_length": self._core.log_length,
            "change_log_bytes": self._core.log_bytes,
        }

    async def heartbeat(self, agent_id: str, heartbeat: Heartbeat) -> Change:
        return self._notify(self._core.heartbeat(agent_id, heartbeat))

    async def import_agents(self, agents: list[ImportedAgent]) -> ImportTally:
        """Add legacy registrations the registry lacks (``aisys import-legacy``)."""
        tally, changes = self._core.import_agents(agents)
        if changes:
            self._notify(changes[-1])
        return tally

    async def deregister(self, agent_id: str) -> Change:
        return self._notify(self._core.deregister(agent_id))

    async def get(self, agent_id: str) -> AgentRecord:
        return self._core.get(agent_id)

    async def list_agents(self, query: AgentQuery | None = None) -> list[AgentRecord]:
        return self._core.list_agents(query)

    async def version(self) -> int:
        return self._core.version

    async def wait_changes(self, since: int, timeout_s: float = MAX_WAIT_S) -> ChangeFeed:
        """Return changes after ``since``, waiting up to ``timeout_s`` for the first one."""
        deadline = asyncio.get_running_loop().time() + min(timeout_s, MAX_WAIT_S)
        while self._core.version == since:
            event = self._changed
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                break
        return self._core.changes_since(since)

    def _notify(self, change: Change) -> Change:
        # Wake every waiter, then arm a fresh event for the next change.
        self._changed.set()
        self._changed = asyncio.Event()
        return change

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            try:
                changes = self._core.sweep()
            except Exception:
                # Loop boundary: a failed sweep must not stop future sweeps; it is logged with
                # its traceback and retried at the next interval.
                logger.exception("registry sweep failed")
                continue
            if changes:
                self._notify(changes[-1])


def get_or_create_registry(settings: RegistrySettings, db_path: Path, host_tag: str) -> Any:
    """Return the handle of the registry actor, creating it pinned to ``host_tag`` if absent.

    Args:
        settings: the registry section of :class:`cluster.base.settings.Settings`.
        db_path: SQLite file on the host that carries ``host_tag``.
        host_tag: Ray custom resource of the host the actor must live on.
    """
    # Retried calls are safe here: register and heartbeat are idempotent.
    return (
        ray.remote(RegistryActor)
        .options(**singleton_options(REGISTRY_ACTOR_NAME, host_tag))
        .remote(settings, str(db_path))
    )
