"""RegistryCore: the agent registry's logic, with no Ray in it.

Consul semantics: registering an ``agent_id`` again replaces its registration (idempotent);
a ``ttl`` check turns ``critical`` when no heartbeat arrived within the TTL; an agent that stays
critical longer than ``deregister_critical_after_s`` is removed. Every change bumps a version,
is written to the store before it is returned, and is kept in a bounded change log so readers
can follow the registry without re-reading it.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

from actors.registry.models import (
    AgentQuery,
    AgentRecord,
    Change,
    ChangeFeed,
    Health,
    Heartbeat,
    ImportedAgent,
    Registration,
)
from actors.registry.store import SqliteRegistryStore
from actors.registry.view import RegistryView
from cluster.errors import AgentNotFound
from cluster.legacy_import.tally import ImportTally
from cluster.settings import RegistrySettings

__all__ = ["RegistryCore"]

Clock = Callable[[], float]


class RegistryCore:
    """Registrations, health and the change log.

    Args:
        settings: TTL defaults, deregistration period and change-log size.
        store: where every change is committed before a method returns.
        clock: seconds since the epoch; tests pass a fake one.
    """

    def __init__(self, settings: RegistrySettings, store: SqliteRegistryStore, clock: Clock):
        self._settings = settings
        self._store = store
        self._clock = clock
        records, version = store.load()
        self._view = RegistryView(records, version)
        self._log: collections.deque[Change] = collections.deque(maxlen=settings.change_log_size)

    @property
    def version(self) -> int:
        return self._view.version

    def register(self, registration: Registration) -> Change:
        """Store ``registration``, replacing any earlier one with the same id.

        Registering counts as a heartbeat: a ``ttl`` agent starts ``passing``, a ``none`` agent
        keeps the health its probes gave it (``unknown`` at first).
        """
        now = self._clock()
        previous = self._view.get(registration.agent_id)
        if registration.check == "ttl":
            health, note = Health.PASSING, "registered"
            ttl = registration.ttl_s or self._settings.default_ttl_s
        else:
            health = previous.health if previous else Health.UNKNOWN
            note = previous.health_note if previous else "no health evidence yet"
            ttl = None
        record = self._record(
            registration,
            ttl=ttl,
            health=health,
            note=note,
            registered_at=previous.registered_at if previous else now,
            last_seen_at=now,
        )
        return self._upsert(record)

    def import_agents(self, agents: list[ImportedAgent]) -> tuple[ImportTally, list[Change]]:
        """Add legacy registrations that the registry does not hold yet.

        An agent already registered is left alone: with the same content it was imported
        before ("already present"); with other content it re-registered itself since, and the
        live registration wins over the legacy one. New ones get the ``none`` check, so their
        health stays ``unknown`` until a probe or a heartbeat gives evidence.
        """
        tally = ImportTally()
        changes: list[Change] = []
        for item in agents:
            reg = item.registration
            existing = self._view.get(reg.agent_id)
            if existing is not None:
                same = _legacy_fields(existing) == _legacy_fields(self._record_of(item))
                reason = "already present" if same else "registered since with other content"
                tally.skip(reason, reg.agent_id)
                continue
            changes.append(self._upsert(self._record_of(item)))
            tally.add("agents")
        return tally, changes

    def _record_of(self, item: ImportedAgent) -> AgentRecord:
        return self._record(
            item.registration,
            ttl=None,
            health=Health.UNKNOWN,
            note="imported from the legacy ServiceRegistry; no health evidence yet",
            registered_at=item.registered_at,
            last_seen_at=item.registered_at,
        )

    def _record(
        self,
        registration: Registration,
        *,
        ttl: float | None,
        health: Health,
        note: str,
        registered_at: float,
        last_seen_at: float,
    ) -> AgentRecord:
        return AgentRecord(
            agent_id=registration.agent_id,
            agent_type=registration.agent_type or registration.agent_id,
            host=registration.host,
            port=registration.port,
            health_check_port=registration.health_check_port,
            capabilities=registration.capabilities,
            tags=registration.tags,
            metadata=registration.metadata,
            check=registration.check if ttl is not None else "none",
            ttl_s=ttl,
            deregister_critical_after_s=(
                registration.deregister_critical_after_s
                or self._settings.deregister_critical_after_s
            ),
            health=health,
            health_note=note,
            registered_at=registered_at,
            last_seen_at=last_seen_at,
            critical_since=last_seen_at if health is Health.CRITICAL else None,
        )

    def heartbeat(self, agent_id: str, heartbeat: Heartbeat) -> Change:
        """Record a heartbeat or probe result; raises :class:`AgentNotFound`."""
        record = self._require(agent_id)
        now = self._clock()
        health = Health(heartbeat.status)
        critical_since = None
        if health is Health.CRITICAL:
            critical_since = record.critical_since or now
        updated = record.model_copy(
            update={
                "health": health,
                "health_note": heartbeat.note,
                "last_seen_at": now,
                "critical_since": critical_since,
            }
        )
        return self._upsert(updated)

    def deregister(self, agent_id: str) -> Change:
        """Remove an agent; raises :class:`AgentNotFound`."""
        self._require(agent_id)
        return self._delete(agent_id)

    def get(self, agent_id: str) -> AgentRecord:
        return self._require(agent_id)

    def list_agents(self, query: AgentQuery | None = None) -> list[AgentRecord]:
        return self._view.list_agents(query)

    def sweep(self) -> list[Change]:
        """Expire TTLs and remove agents critical for too long; return the changes made."""
        now = self._clock()
        changes: list[Change] = []
        for record in self._view.list_agents():
            if record.critical_since is not None:
                if now - record.critical_since >= record.deregister_critical_after_s:
                    changes.append(self._delete(record.agent_id))
                continue
            if record.ttl_s is not None and now - record.last_seen_at > record.ttl_s:
                expired = record.model_copy(
                    update={
                        "health": Health.CRITICAL,
                        "health_note": f"TTL of {record.ttl_s:g}s expired",
                        "critical_since": now,
                    }
                )
                changes.append(self._upsert(expired))
        return changes

    def changes_since(self, version: int) -> ChangeFeed:
        """Return the changes after ``version``, or a snapshot when the log no longer has them."""
        current = self._view.version
        if version == current:
            return ChangeFeed(version=current)
        oldest = self._log[0].version if self._log else current + 1
        if version > current or version < oldest - 1:
            return ChangeFeed(version=current, snapshot=self._view.list_agents())
        return ChangeFeed(version=current, changes=[c for c in self._log if c.version > version])

    def _require(self, agent_id: str) -> AgentRecord:
        record = self._view.get(agent_id)
        if record is None:
            raise AgentNotFound(agent_id)
        return record

    def _upsert(self, record: AgentRecord) -> Change:
        change = Change(
            version=self._view.version + 1, op="upsert", agent_id=record.agent_id, record=record
        )
        self._store.put(record, change.version)
        return self._commit(change)

    def _delete(self, agent_id: str) -> Change:
        change = Change(version=self._view.version + 1, op="delete", agent_id=agent_id, record=None)
        self._store.delete(agent_id, change.version)
        return self._commit(change)

    def _commit(self, change: Change) -> Change:
        self._view.apply(change)
        self._log.append(change)
        return change


def _legacy_fields(record: AgentRecord) -> tuple[object, ...]:
    """What a legacy ServiceRegistry record holds, to tell an earlier import from a change."""
    return (
        record.agent_type,
        record.host,
        record.port,
        record.health_check_port,
        record.capabilities,
        record.metadata,
    )
