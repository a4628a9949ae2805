"""A read-only copy of the registry, kept current by applying its change feed.

The registry actor owns one; every reader that must not pay a Ray call per lookup (the core
deployment's replicas, the legacy gateway) keeps another and feeds it :class:`ChangeFeed`s.
"""

from __future__ import annotations

from actors.registry.models import AgentQuery, AgentRecord, Change, ChangeFeed

__all__ = ["RegistryView"]


class RegistryView:
    """Agent records by id at a known registry version."""

    def __init__(self, records: list[AgentRecord] | None = None, version: int = 0) -> None:
        self._records = {r.agent_id: r for r in records or []}
        self.version = version

    def __len__(self) -> int:
        return len(self._records)

    def get(self, agent_id: str) -> AgentRecord | None:
        return self._records.get(agent_id)

    def list_agents(self, query: AgentQuery | None = None) -> list[AgentRecord]:
        records = sorted(self._records.values(), key=lambda r: r.agent_id)
        if query is None:
            return records
        return [r for r in records if query.matches(r)]

    def apply(self, change: Change) -> None:
        """Apply one change; changes at or below the current version are ignored."""
        if change.version <= self.version:
            return
        if change.record is None:
            self._records.pop(change.agent_id, None)
        else:
            self._records[change.agent_id] = change.record
        self.version = change.version

    def apply_feed(self, feed: ChangeFeed) -> None:
        """Apply a feed: a snapshot replaces everything, otherwise changes apply in order."""
        if feed.snapshot is not None:
            self._records = {r.agent_id: r for r in feed.snapshot}
            self.version = feed.version
            return
        for change in feed.changes:
            self.apply(change)
        self.version = max(self.version, feed.version)
