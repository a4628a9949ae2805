"""ObservabilityHub (``/observability``): exporter, agent probes, perf log, anomalies, alerts.

Plain-Python cores (``collectors``, ``anomaly``, ``alerts``, ``perflog``, ``hub``) with the
Serve deployment in ``app``.
"""

from typing import TYPE_CHECKING

from cluster.base.lazy import lazy_exports

if TYPE_CHECKING:
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
# Imported on first use: importing one light module of the package (its models, say)
# does not load the others' NATS clients and service cores.
__getattr__ = lazy_exports(
    __name__,
    {
        "AlertEngine": "deployments.observability.alerts",
        "AnomalyBank": "deployments.observability.anomaly",
        "EwmaDetector": "deployments.observability.anomaly",
        "TrendPredictor": "deployments.observability.anomaly",
        "register_collectors": "deployments.observability.collectors",
        "HubCore": "deployments.observability.hub",
        "HubSources": "deployments.observability.hub",
        "PerfLog": "deployments.observability.perflog",
    },
)
