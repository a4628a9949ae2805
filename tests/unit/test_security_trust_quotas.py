"""Trust quotas: the number of agents (legacy model_ids) with a score, and model_id length."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.security.core import SecurityCore
from actors.security.models import TrustOutcome
from cluster.base.errors import QuotaExceeded
from cluster.base.settings import SecuritySettings, TrustSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_trust_quota_defaults() -> None:
    trust = TrustSettings()
    assert (trust.models_max, trust.model_id_max_length, trust.history_limit) == (2048, 128, 1000)


def test_new_model_ids_past_the_cap_are_refused_known_ones_still_scored(tmp_path: Path) -> None:
    settings = SecuritySettings(trust=TrustSettings(models_max=3, history_limit=10))
    core = SecurityCore(settings, tmp_path, Clock())
    for i in range(3):
        core.record_outcome(f"model-{i}", TrustOutcome(success=True), reporter=f"10.0.0.{i}")
    with pytest.raises(QuotaExceeded) as caught:
        core.record_outcome("model-3", TrustOutcome(success=True), reporter="10.0.0.9")
    assert "AISYS_SECURITY__TRUST__MODELS_MAX" in str(caught.value)
    assert "the limit is 3" in str(caught.value)
    assert set(core.scores()) == {"model-0", "model-1", "model-2"}
    for _ in range(15):  # a known one goes on; its history stays at history_limit
        report = core.record_outcome("model-1", TrustOutcome(success=True))
    assert len(core.trust_report("model-1", 100).history) == 10
    assert report.score > 0.5


def test_a_model_id_over_the_length_limit_is_refused(tmp_path: Path) -> None:
    settings = SecuritySettings(trust=TrustSettings(model_id_max_length=16))
    core = SecurityCore(settings, tmp_path, Clock())
    core.record_outcome("x" * 16, TrustOutcome(success=True))
    with pytest.raises(QuotaExceeded, match="model_id of 17 characters: the limit is 16"):
        core.record_outcome("x" * 17, TrustOutcome(success=True))
    assert list(core.scores()) == ["x" * 16]


def test_a_batch_of_outcomes_scores_like_the_same_outcomes_one_by_one(tmp_path: Path) -> None:
    settings = SecuritySettings(trust=TrustSettings(models_max=1, history_limit=10))
    one_by_one = SecurityCore(settings, tmp_path / "a", Clock())
    batched = SecurityCore(settings, tmp_path / "b", Clock())
    outcomes = [TrustOutcome(success=i % 3 != 0, latency_s=0.01 * i) for i in range(14)]
    for outcome in outcomes:
        one_by_one.record_outcome("cot", outcome)
    batched.record_outcomes("cot", outcomes)
    single, batch = one_by_one.trust_report("cot", 100), batched.trust_report("cot", 100)
    assert batch.score == pytest.approx(single.score)
    assert batch.evidence == pytest.approx(single.evidence)
    assert batch.history == single.history and len(batch.history) == 10  # pruned the same
    with pytest.raises(QuotaExceeded):  # the quotas hold for a batch too: nothing recorded
        batched.record_outcomes("other", outcomes)
    assert list(batched.scores()) == ["cot"]
