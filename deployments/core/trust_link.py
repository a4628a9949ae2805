"""The coordinator's link to agent trust: prefer trusted agents, report every outcome.

Scores are refreshed from the security actor in the background (routing reads a local dict,
no Ray call per request); each finished dispatch to an agent is reported as an interaction
outcome, so the trust table is fed by what the coordinator actually saw. Outcomes are sent in
batches (one actor call and one commit per agent every ``flush_s``), not one call each: under
load a call per request cost the replica and the security actor more than the request itself.
Trust evidence is advisory: a replica that stops loses at most its last ``flush_s`` of outcomes.
"""

from __future__ import annotations

import asyncio
import logging

from actors.security.client import SecurityClient
from actors.security.models import TrustOutcome
from deployments.core.models import RequestState, RequestStatus

__all__ = ["TrustLink", "outcome_of"]

logger = logging.getLogger(__name__)

PRIOR = 0.5
#: Outcomes held for the next flush at most; beyond, new ones are counted and dropped.
MAX_PENDING = 10_000


def outcome_of(status: RequestStatus) -> TrustOutcome | None:
    """The trust outcome of a finished request, or None when no agent was tried."""
    if status.downstream is None or status.dispatched_at is None or status.finished_at is None:
        return None
    if status.state not in (RequestState.SUCCEEDED, RequestState.FAILED):
        return None
    latency = max(0.0, status.finished_at - status.dispatched_at)
    return TrustOutcome(success=status.state is RequestState.SUCCEEDED, latency_s=latency)


class TrustLink:
    """Local copy of trust scores plus batched outcome reports.

    Args:
        security: the security actor's client (``scores`` and ``record_outcomes``).
        refresh_s: how often scores are re-read.
        flush_s: how often the outcomes gathered since the last flush are sent.
    """

    def __init__(
        self, security: SecurityClient, refresh_s: float = 5.0, flush_s: float = 0.2
    ) -> None:
        self._security = security
        self._refresh_s = refresh_s
        self._flush_s = flush_s
        self._scores: dict[str, float] = {}
        self._pending: dict[str, list[TrustOutcome]] = {}
        self._held = 0
        self._dropped = 0

    def score(self, agent: str) -> float:
        return self._scores.get(agent, PRIOR)

    def report(self, status: RequestStatus) -> None:
        outcome = outcome_of(status)
        if outcome is None or status.downstream is None:
            return
        if self._held >= MAX_PENDING:  # the security actor is not taking them: bounded
            self._dropped += 1
            return
        self._pending.setdefault(status.downstream, []).append(outcome)
        self._held += 1

    async def flush(self) -> None:
        """Send what was gathered; on failure it is logged and not sent again."""
        batch, self._pending, self._held = self._pending, {}, 0
        if self._dropped:
            logger.warning("%d trust outcomes dropped (over %d held)", self._dropped, MAX_PENDING)
            self._dropped = 0
        if batch:
            # Awaited here, in the background task: never on a request's path.
            await self._security.record_outcomes(batch)

    async def flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self._flush_s)
            try:
                await self.flush()
            except Exception:
                # Loop boundary: trust evidence is advisory; a failed batch is logged, the
                # next one is sent on time.
                logger.warning("trust outcomes not recorded", exc_info=True)

    async def refresh_forever(self) -> None:
        while True:
            try:
                self._scores = await self._security.scores()
            except Exception:
                # Loop boundary: keep routing on the last scores; retry next interval.
                logger.warning("trust scores unavailable; keeping the last ones", exc_info=True)
            await asyncio.sleep(self._refresh_s)
