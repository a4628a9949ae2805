"""Anomaly detection and breach prediction on synthetic series with known answers."""

from __future__ import annotations

import random

from cluster.base.settings import AnomalySettings
from deployments.observability.anomaly import AnomalyBank, EwmaDetector, TrendPredictor
from deployments.observability.series import Sample

SETTINGS = AnomalySettings()


def test_noise_only_is_never_flagged() -> None:
    rng = random.Random(7)
    for kind in ("uniform", "gauss"):
        detector = EwmaDetector(SETTINGS)
        noise = [rng.uniform(-1, 1) if kind == "uniform" else rng.gauss(0, 1) for _ in range(2000)]
        flagged = [i for i, n in enumerate(noise) if detector.update(50.0 + n)]
        assert flagged == [], kind


def test_a_step_change_is_flagged_at_once_and_then_absorbed() -> None:
    rng = random.Random(1)
    detector = EwmaDetector(SETTINGS)
    for _ in range(200):
        assert not detector.update(10.0 + rng.uniform(-0.5, 0.5))
    assert detector.update(20.0)
    assert detector.score is not None and detector.score > 10
    # A lasting shift becomes the new normal.
    for _ in range(300):
        detector.update(20.0 + rng.uniform(-0.5, 0.5))
    assert not detector.update(20.0)


def test_nothing_is_flagged_during_warm_up() -> None:
    detector = EwmaDetector(SETTINGS)
    values = [1.0, 100.0, 1.0, 500.0] * 4
    assert not any(detector.update(v) for v in values)
    assert detector.score is None


def test_breach_estimate_of_a_noisy_ramp_is_within_20_percent() -> None:
    rng = random.Random(3)
    trend = TrendPredictor(window_s=600)
    # VRAM ratio rising 0.001/s from 0.5: at t=300 it is 0.8, so 0.95 is 150 s away.
    for t in range(0, 301, 5):
        trend.add(float(t), 0.5 + 0.001 * t + rng.uniform(-0.01, 0.01))
    eta = trend.eta(0.95, now=300.0)
    assert eta is not None and abs(eta - 150.0) <= 0.2 * 150.0


def test_no_breach_estimate_for_a_flat_or_falling_series_and_zero_when_past() -> None:
    flat, falling, above = TrendPredictor(600), TrendPredictor(600), TrendPredictor(600)
    for t in range(10):
        flat.add(float(t), 0.5)
        falling.add(float(t), 0.9 - 0.01 * t)
        above.add(float(t), 0.96 + 0.001 * t)
    assert flat.eta(0.95, 9.0) is None
    assert falling.eta(0.95, 9.0) is None
    assert above.eta(0.95, 9.0) == 0.0
    assert TrendPredictor(600).eta(0.95, 0.0) is None  # too few points


def test_the_bank_follows_each_series_and_describes_the_breach() -> None:
    bank = AnomalyBank(SETTINGS)
    labels = (("gpu", "0"), ("host", "pc2"), ("name", "x"))
    for t in range(0, 120, 5):
        value = 0.5 + 0.001 * t
        bank.observe(
            [
                Sample("aisys_gpu_memory_used_ratio", labels, value),
                Sample("not_watched", (), 1.0),
            ],
            now=float(t),
        )
    (status,) = bank.statuses()
    assert status.metric == "aisys_gpu_memory_used_ratio"
    assert status.labels["host"] == "pc2"
    assert status.breach_eta_s is not None and abs(status.breach_eta_s - 335) < 1
    assert "reaches 0.95 in ~6 min" in status.summary
    # A series gone for a whole trend window is forgotten.
    bank.observe([], now=115.0 + SETTINGS.trend_window_s + 1)
    assert bank.statuses() == []
