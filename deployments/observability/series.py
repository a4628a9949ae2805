"""Series identity and the reading of current values back from a ``CollectorRegistry``.

Anomaly detectors and alert rules work on the same series Prometheus would scrape: a metric name
plus its labels, taken from the hub's own registry, so a rule names exactly what a user sees.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from prometheus_client.registry import CollectorRegistry

__all__ = ["Sample", "SeriesKey", "current_samples", "matches", "series_key"]

#: A series: metric name plus its labels, sorted.
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


def series_key(metric: str, labels: Mapping[str, str]) -> SeriesKey:
    return metric, tuple(sorted(labels.items()))


@dataclass(frozen=True)
class Sample:
    """The value of one series now."""

    metric: str
    labels: tuple[tuple[str, str], ...]
    value: float

    @property
    def key(self) -> SeriesKey:
        return self.metric, self.labels

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


def matches(labels: Mapping[str, str], matchers: Mapping[str, str]) -> bool:
    """True when every matcher's label has exactly that value (a missing label is ``""``)."""
    return all(labels.get(name, "") == value for name, value in matchers.items())


def current_samples(registry: CollectorRegistry, metrics: Collection[str]) -> list[Sample]:
    """Every finite sample of the named metrics (sample names, e.g. ``x_total`` for counters)."""
    found: list[Sample] = []
    for family in registry.collect():
        for sample in family.samples:
            if sample.name in metrics and math.isfinite(sample.value):
                found.append(
                    Sample(sample.name, tuple(sorted(sample.labels.items())), float(sample.value))
                )
    return found
