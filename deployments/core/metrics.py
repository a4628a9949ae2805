"""Prometheus metrics of the request coordinator, through ``ray.serve.metrics``.

Serve adds the deployment, replica and application tags; Ray's metrics agent exports them with
the rest of the cluster's metrics. Created inside the replica (the metrics need its context).
"""

from __future__ import annotations

from ray.serve.metrics import Counter, Histogram

from deployments.core.models import RequestStatus

__all__ = ["CoordinatorMetrics"]

#: Latency buckets in milliseconds, from a local agent round trip to a slow model.
LATENCY_BUCKETS_MS = [1.0, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000]


class CoordinatorMetrics:
    """Counts finished requests by type and outcome; records submit-to-finish latency."""

    def __init__(self) -> None:
        self._finished = Counter(
            "aisys_core_requests_finished",
            description="User requests that finished, by type and final state.",
            # Ray annotates tag_keys as tuple[str] where it means tuple[str, ...].
            tag_keys=("type", "state"),  # type: ignore[arg-type]
        )
        self._latency = Histogram(
            "aisys_core_request_latency_ms",
            description="Submit to finish of user requests, milliseconds.",
            boundaries=LATENCY_BUCKETS_MS,
            tag_keys=("type", "state"),  # type: ignore[arg-type]
        )

    def record(self, status: RequestStatus) -> None:
        tags = {"type": status.type, "state": status.state.value}
        self._finished.inc(1, tags=tags)
        if status.finished_at is not None:
            self._latency.observe((status.finished_at - status.submitted_at) * 1000, tags=tags)
