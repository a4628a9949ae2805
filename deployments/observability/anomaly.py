"""Online anomaly detection and time-to-breach prediction, one pair per metric series.

:class:`EwmaDetector` keeps an exponentially weighted mean and mean absolute deviation; a sample
scores ``|x - mean| / (1.2533 * deviation)`` (for normal noise 1.2533 times the mean absolute
deviation is the standard deviation) and is anomalous above ``z_threshold``. During warm-up the
weights are ``1/n`` (plain running averages) and nothing is flagged. Residuals are clipped at
three deviations before they update the state (a Huber step), so one spike does not inflate the
deviation, while a lasting level shift is absorbed over a few dozen samples.

:class:`TrendPredictor` fits a least-squares line to the samples of the last ``window_s`` and
extrapolates it to a threshold: the estimated seconds until breach, or None when the trend does
not head there.

Example::

    bank = AnomalyBank(settings.anomaly)
    bank.observe(samples, now=clock())
    bank.statuses()   # [SeriesStatus(metric="aisys_host_memory_used_ratio", breach_eta_s=420, ...)]
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict

from cluster.base.settings import AnomalySettings
from deployments.observability.series import Sample, SeriesKey

__all__ = ["AnomalyBank", "EwmaDetector", "SeriesStatus", "TrendPredictor"]

_MAD_TO_SIGMA = math.sqrt(math.pi / 2)  # 1.2533
_HUBER_K = 3.0


class EwmaDetector:
    """EWMA mean and deviation with warm-up; see the module docstring."""

    def __init__(self, settings: AnomalySettings) -> None:
        self._s = settings
        self.count = 0
        self.mean = 0.0
        self.deviation = 0.0
        self.score: float | None = None
        self.anomalous = False

    def update(self, value: float) -> bool:
        """Take one sample; return whether it is anomalous."""
        if self.count == 0:
            self.count, self.mean = 1, value
            return False
        residual = value - self.mean
        scale = max(self.deviation * _MAD_TO_SIGMA, self._s.min_deviation)
        warm = self.count >= self._s.warmup_samples
        self.score = abs(residual) / scale if warm else None
        self.anomalous = self.score is not None and self.score > self._s.z_threshold
        if warm:
            residual = max(-_HUBER_K * scale, min(_HUBER_K * scale, residual))
        weight = 1.0 / (self.count + 1)
        self.mean += max(self._s.alpha, weight) * residual
        dev_weight = max(self._s.deviation_alpha, weight)
        self.deviation += dev_weight * (abs(residual) - self.deviation)
        self.count += 1
        return self.anomalous


class TrendPredictor:
    """Least-squares trend over a time window, extrapolated to a threshold."""

    def __init__(self, window_s: float, min_points: int = 5) -> None:
        self._window_s = window_s
        self._min_points = min_points
        self._points: deque[tuple[float, float]] = deque()

    def add(self, at: float, value: float) -> None:
        self._points.append((at, value))
        while self._points and self._points[0][0] < at - self._window_s:
            self._points.popleft()

    def slope(self) -> float | None:
        """Units per second, or None with too few points to tell."""
        fit = self._fit()
        return None if fit is None else fit[1]

    def eta(self, threshold: float, now: float) -> float | None:
        """Seconds from ``now`` until the trend reaches ``threshold`` (rising), 0 if past it.

        None when there are too few points or the trend is flat or falling.
        """
        fit = self._fit()
        if fit is None:
            return None
        level_at_mean_t, slope, mean_t = fit
        level_now = level_at_mean_t + slope * (now - mean_t)
        if level_now >= threshold:
            return 0.0
        if slope <= 0:
            return None
        return (threshold - level_now) / slope

    def _fit(self) -> tuple[float, float, float] | None:
        n = len(self._points)
        if n < self._min_points:
            return None
        mean_t = sum(t for t, _ in self._points) / n
        mean_x = sum(x for _, x in self._points) / n
        var_t = sum((t - mean_t) ** 2 for t, _ in self._points)
        if var_t <= 0:
            return None
        cov = sum((t - mean_t) * (x - mean_x) for t, x in self._points)
        return mean_x, cov / var_t, mean_t


class SeriesStatus(BaseModel):
    """What ``GET /observability/anomalies`` shows for one series."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str
    labels: dict[str, str]
    value: float
    observed_at: float
    samples: int
    score: float | None
    anomalous: bool
    threshold: float | None
    breach_eta_s: float | None
    summary: str


class _Series:
    def __init__(self, settings: AnomalySettings) -> None:
        self.detector = EwmaDetector(settings)
        self.trend = TrendPredictor(settings.trend_window_s)
        self.value = 0.0
        self.observed_at = 0.0


def _describe(metric: str, labels: dict[str, str], threshold: float, eta: float) -> str:
    where = ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"
    if eta <= 0:
        return f"{metric}{{{where}}} is at or above {threshold:g}"
    return f"{metric}{{{where}}} reaches {threshold:g} in ~{max(1, round(eta / 60))} min"


class AnomalyBank:
    """A detector and a trend predictor for every series of the watched metrics."""

    def __init__(self, settings: AnomalySettings) -> None:
        self._s = settings
        self.metrics = frozenset(settings.metrics) | frozenset(settings.breach_thresholds)
        self._series: dict[SeriesKey, _Series] = {}
        self._now = 0.0

    def observe(self, samples: Iterable[Sample], now: float) -> None:
        """Feed the current value of every watched series; forget series gone for a window."""
        self._now = now
        for sample in samples:
            if sample.metric not in self.metrics:
                continue
            series = self._series.get(sample.key)
            if series is None:
                series = self._series[sample.key] = _Series(self._s)
            series.detector.update(sample.value)
            series.trend.add(now, sample.value)
            series.value, series.observed_at = sample.value, now
        stale = now - self._s.trend_window_s
        for key in [k for k, s in self._series.items() if s.observed_at < stale]:
            del self._series[key]

    def score(self, key: SeriesKey) -> float | None:
        series = self._series.get(key)
        return None if series is None else series.detector.score

    def breach_eta(self, key: SeriesKey) -> float | None:
        series = self._series.get(key)
        threshold = self._s.breach_thresholds.get(key[0])
        if series is None or threshold is None:
            return None
        return series.trend.eta(threshold, self._now)

    def statuses(self) -> list[SeriesStatus]:
        result = []
        for key, series in sorted(self._series.items()):
            labels = dict(key[1])
            threshold = self._s.breach_thresholds.get(key[0])
            eta = self.breach_eta(key)
            summary = (
                ""
                if eta is None or threshold is None
                else _describe(key[0], labels, threshold, eta)
            )
            result.append(
                SeriesStatus(
                    metric=key[0],
                    labels=labels,
                    value=series.value,
                    observed_at=series.observed_at,
                    samples=series.detector.count,
                    score=series.detector.score,
                    anomalous=series.detector.anomalous,
                    threshold=threshold,
                    breach_eta_s=eta,
                    summary=summary,
                )
            )
        return result
