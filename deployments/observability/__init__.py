"""ObservabilityHub (``/observability``): exporter, agent probes, perf log, anomalies, alerts.

Plain-Python cores (``collectors``, ``anomaly``, ``alerts``, ``perflog``, ``hub``) with the
Serve deployment in ``app``.
"""

from deployments.observability.alerts import AlertEngine
from deployments.observability.anomaly import AnomalyBank, EwmaDetector, TrendPredictor
from deployments.observability.collectors import register_collectors
from deployments.observability.hub import HubCore, HubSources
from deployments.observability.perflog import PerfLog

__all__ = [
    "AlertEngine",
    "AnomalyBank",
    "EwmaDetector",
    "HubCore",
    "HubSources",
    "PerfLog",
    "TrendPredictor",
    "register_collectors",
]
