"""Trust scores: a Beta(α, β) estimate with a 0.5 prior whose evidence decays with time.

Each outcome adds evidence ``x`` in [0, 1] with weight ``w`` (α += w·x, β += w·(1−x)). Between
outcomes the evidence above the prior halves every ``half_life_s``, so the score drifts back to
0.5 when nothing is heard. The legacy scorer's formula ignored history; this one keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.security.models import TrustOutcome
from cluster.base.settings import TrustSettings

__all__ = ["TrustState", "add_counts", "decayed", "evidence_of", "merged", "observe", "score_of"]

PRIOR = 1.0  # α = β = 1: mean 0.5


@dataclass(frozen=True)
class TrustState:
    """Evidence for one agent at time ``at`` (seconds since the epoch)."""

    alpha: float = PRIOR
    beta: float = PRIOR
    at: float = 0.0


def evidence_of(outcome: TrustOutcome, settings: TrustSettings) -> tuple[float, float]:
    """Return ``(x, weight)`` of one outcome."""
    if outcome.kind == "failed_auth":
        return 0.0, settings.failed_auth_weight
    if outcome.kind == "error_reported" or not outcome.success:
        return 0.0, 1.0
    slowness = min(outcome.latency_s / settings.slow_response_s, 2.0)
    return max(0.0, 1.0 - 0.5 * slowness), 1.0


def decayed(state: TrustState, now: float, settings: TrustSettings) -> TrustState:
    """Evidence at ``now``: what lies above the prior halves every half-life."""
    if now <= state.at:
        return state
    factor = 0.5 ** ((now - state.at) / settings.half_life_s)
    return TrustState(
        alpha=PRIOR + (state.alpha - PRIOR) * factor,
        beta=PRIOR + (state.beta - PRIOR) * factor,
        at=now,
    )


def observe(
    state: TrustState, outcome: TrustOutcome, now: float, settings: TrustSettings
) -> TrustState:
    """Fold one outcome observed at ``now`` into ``state``."""
    current = decayed(state, now, settings)
    x, weight = evidence_of(outcome, settings)
    return TrustState(
        alpha=current.alpha + weight * x, beta=current.beta + weight * (1 - x), at=now
    )


def add_counts(
    state: TrustState, successes: float, failures: float, at: float, settings: TrustSettings
) -> TrustState:
    """Fold ``successes`` full successes and ``failures`` failures observed at ``at``."""
    current = decayed(state, at, settings)
    return TrustState(
        alpha=current.alpha + successes, beta=current.beta + failures, at=max(at, current.at)
    )


def merged(a: TrustState, b: TrustState, settings: TrustSettings) -> TrustState:
    """The evidence of ``a`` and ``b`` together, at the later of their times.

    Evidence above the prior only ever decays by the same factor per second, so two histories
    gathered apart (live outcomes, and legacy ones imported later) add up once both are
    decayed to one time: the result is what folding every outcome in time order would give.
    """
    at = max(a.at, b.at)
    da, db = decayed(a, at, settings), decayed(b, at, settings)
    return TrustState(alpha=da.alpha + db.alpha - PRIOR, beta=da.beta + db.beta - PRIOR, at=at)


def score_of(state: TrustState) -> float:
    return state.alpha / (state.alpha + state.beta)
