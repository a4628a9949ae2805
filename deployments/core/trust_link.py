"""The coordinator's link to agent trust: prefer trusted agents, report every outcome.

Scores are refreshed from the security actor in the background (routing reads a local dict,
no Ray call per request); each finished dispatch to an agent is reported as an interaction
outcome, so the trust table is fed by what the coordinator actually saw.
"""

from __future__ import annotations

import asyncio
import logging

from actors.security.client import SecurityClient
from deployments.core.models import RequestState, RequestStatus
from deployments.security.models import TrustOutcome

__all__ = ["TrustLink", "outcome_of"]

logger = logging.getLogger(__name__)

PRIOR = 0.5


def outcome_of(status: RequestStatus) -> TrustOutcome | None:
    """The trust outcome of a finished request, or None when no agent was tried."""
    if status.downstream is None or status.dispatched_at is None or status.finished_at is None:
        return None
    if status.state not in (RequestState.SUCCEEDED, RequestState.FAILED):
        return None
    latency = max(0.0, status.finished_at - status.dispatched_at)
    return TrustOutcome(success=status.state is RequestState.SUCCEEDED, latency_s=latency)


class TrustLink:
    """Local copy of trust scores plus fire-and-forget outcome reports.

    Args:
        security: the security actor's client (``scores`` and ``record_outcome``).
        refresh_s: how often scores are re-read.
    """

    def __init__(self, security: SecurityClient, refresh_s: float = 5.0) -> None:
        self._security = security
        self._refresh_s = refresh_s
        self._scores: dict[str, float] = {}

    def score(self, agent: str) -> float:
        return self._scores.get(agent, PRIOR)

    def report(self, status: RequestStatus) -> None:
        outcome = outcome_of(status)
        if outcome is not None and status.downstream is not None:
            # Not awaited: a slow security actor must not hold up dispatching.
            self._security.record_outcome(status.downstream, outcome)

    async def refresh_forever(self) -> None:
        while True:
            try:
                self._scores = await self._security.scores()
            except Exception:
                # Loop boundary: keep routing on the last scores; retry next interval.
                logger.warning("trust scores unavailable; keeping the last ones", exc_info=True)
            await asyncio.sleep(self._refresh_s)
