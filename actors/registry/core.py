"""RegistryCore: the agent registry's logic, with no Ray in it.

Consul semantics: registering an ``agent_id`` again replaces its registration (idempotent);
a ``ttl`` check turns ``critical`` when no heartbeat arrived within the TTL; an agent that stays
critical longer than ``deregister_critical_after_s`` is removed. Every change bumps a version,
is written to the store before it is returned, and is kept in a change log bounded in count and
bytes so readers can follow the registry without re-reading it (one that falls further behind
gets a snapshot).

Quotas: a registration's metadata is at most ``metadata_max_bytes`` of JSON; registrations made
through the legacy ports carry their connection's address (``source``) and are capped in total
and per source; and unless probes keep them passing, with no re-registration or heartbeat for
``legacy_ttl_s`` they turn critical and are removed like any agent critical for too long.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Callable, Mapping

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
from cluster.base.errors import AgentNotFound, QuotaExceeded
from cluster.base.settings import RegistrySettings
from cluster.base.tally import ImportTally

__all__ = ["RegistryCore", "check_quotas", "metadata_bytes"]

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
        self._log: collections.deque[tuple[Change, int]] = collections.deque()
        self._log_bytes = 0

    @property
    def version(self) -> int:
        return self._view.version

    @property
    def log_bytes(self) -> int:
        """Bytes (JSON of the records) the in-memory change log holds."""
        return self._log_bytes

    @property
    def log_length(self) -> int:
        """Changes the in-memory change log holds."""
        return len(self._log)

    def legacy_count(self, source: str | None = None) -> int:
        """Agents registered through the legacy ports: all, or those from ``source``."""
        return self._view.legacy_count(source)

    def register(self, registration: Registration, source: str | None = None) -> Change:
        """Store ``registration``, replacing any earlier one with the same id.

        Registering counts as a heartbeat: a ``ttl`` agent starts ``passing``, a ``none`` agent
        keeps the health its probes gave it (``unknown`` at first).

        Args:
            registration: what the agent sent.
            source: the peer address of the legacy port connection it came through; None for
                one made over HTTP or gRPC. Legacy registrations are capped in number.

        Raises:
            QuotaExceeded: the metadata is too large, or a new legacy registration would go
                over ``legacy_agents_max`` or ``legacy_agents_per_source``.
        """
        now = self._clock()
        previous = self._view.get(registration.agent_id)
        check_quotas(self._settings, self._view, registration, source)
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
        if source is not None:
            record = record.model_copy(update={"source": source})
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
            ttl, what = record.ttl_s, "TTL"
            if ttl is None and record.source is not None and not _probed_alive(record):
                ttl, what = self._settings.legacy_ttl_s, "legacy registration TTL"
            if ttl is not None and now - record.last_seen_at > ttl:
                expired = record.model_copy(
                    update={
                        "health": Health.CRITICAL,
                        "health_note": f"{what} of {ttl:g}s expired",
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
        oldest = self._log[0][0].version if self._log else current + 1
        if version > current or version < oldest - 1:
            return ChangeFeed(version=current, snapshot=self._view.list_agents())
        # The log holds consecutive versions, oldest first: walk back from the newest only as
        # far as the caller has seen (a follower's poll costs the changes it gets, not the log).
        newer: list[Change] = []
        for change, _ in reversed(self._log):
            if change.version <= version:
                break
            newer.append(change)
        newer.reverse()
        return ChangeFeed(version=current, changes=newer)

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
        size = len(change.record.model_dump_json()) if change.record is not None else 0
        size += _CHANGE_OVERHEAD
        self._log.append((change, size))
        self._log_bytes += size
        while len(self._log) > 1 and (
            len(self._log) > self._settings.change_log_size
            or self._log_bytes > self._settings.change_log_max_bytes
        ):
            self._log_bytes -= self._log.popleft()[1]
        return change


#: Bytes counted per change besides its record's JSON (version, op, id, object headers).
_CHANGE_OVERHEAD = 200


def check_quotas(
    settings: RegistrySettings, view: RegistryView, registration: Registration, source: str | None
) -> None:
    """Raise :class:`QuotaExceeded` if ``view`` may not take ``registration`` from ``source``.

    The registry actor checks every registration; the legacy gateway checks first on its local
    copy too, so a flood over a cap is refused without a call to the actor.
    """
    size = metadata_bytes(registration.metadata)
    if size > settings.metadata_max_bytes:
        raise QuotaExceeded(
            f"metadata of agent '{registration.agent_id}' is {size} bytes of JSON",
            settings.metadata_max_bytes,
            "AISYS_CORE__REGISTRY__METADATA_MAX_BYTES",
        )
    if source is None:
        return
    previous = view.get(registration.agent_id)
    held_by = previous.source if previous is not None else None
    total = view.legacy_count()
    if held_by is None and total >= settings.legacy_agents_max:
        raise QuotaExceeded(
            f"{total} agents are registered through the legacy ports",
            settings.legacy_agents_max,
            "AISYS_CORE__REGISTRY__LEGACY_AGENTS_MAX",
        )
    from_source = view.legacy_count(source)
    if held_by != source and from_source >= settings.legacy_agents_per_source:
        raise QuotaExceeded(
            f"{from_source} agents are registered through the legacy ports from {source}",
            settings.legacy_agents_per_source,
            "AISYS_CORE__REGISTRY__LEGACY_AGENTS_PER_SOURCE",
        )


def metadata_bytes(metadata: Mapping[str, object]) -> int:
    """Size of ``metadata`` as compact JSON, the measure of ``metadata_max_bytes``."""
    return len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())


def _probed_alive(record: AgentRecord) -> bool:
    """Health probes watch the agent and last found it up.

    Probes mark changes only, so such an agent's ``last_seen_at`` stands still while it is up;
    once it is down they mark it critical, and it is removed like any agent critical too long.
    """
    return record.health_check_port is not None and record.health is Health.PASSING


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
