"""A read-only copy of the registry, kept current by applying its change feed.

The registry actor owns one; every reader that must not pay a Ray call per lookup (the core
deployment's replicas, the legacy gateway) keeps another and feeds it :class:`ChangeFeed`s.
"""

from __future__ import annotations

import collections

from actors.registry.models import AgentQuery, AgentRecord, Change, ChangeFeed

__all__ = ["RegistryView"]


class RegistryView:
    """Agent records by id at a known registry version, with legacy registrations counted."""

    def __init__(self, records: list[AgentRecord] | None = None, version: int = 0) -> None:
        self._records: dict[str, AgentRecord] = {}
        self._sources: collections.Counter[str] = collections.Counter()
        self._replace(records or [])
        self.version = version

    def __len__(self) -> int:
        return len(self._records)

    def legacy_count(self, source: str | None = None) -> int:
        """Agents registered through the legacy ports: all, or those from ``source``."""
        if source is None:
            return self._sources.total()
        return self._sources[source]

    def _replace(self, records: list[AgentRecord]) -> None:
        self._records = {r.agent_id: r for r in records}
        self._sources = collections.Counter(
            r.source for r in self._records.values() if r.source is not None
        )

    def _put(self, agent_id: str, record: AgentRecord | None) -> None:
        previous = self._records.pop(agent_id, None)
        if previous is not None and previous.source is not None:
            self._sources[previous.source] -= 1
            if self._sources[previous.source] <= 0:
                del self._sources[previous.source]
        if record is not None:
            self._records[agent_id] = record
            if record.source is not None:
                self._sources[record.source] += 1

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
        self._put(change.agent_id, change.record)
        self.version = change.version

    def apply_feed(self, feed: ChangeFeed) -> None:
        """Apply a feed: a snapshot replaces everything, otherwise changes apply in order."""
        if feed.snapshot is not None:
            self._replace(feed.snapshot)
            self.version = feed.version
            return
        for change in feed.changes:
            self.apply(change)
        self.version = max(self.version, feed.version)
