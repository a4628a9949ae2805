"""Settings of the ObservabilityHub (``settings.observability``): alerting, anomalies, perf log."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from cluster._settings_base import DeploymentSettings, Section
from cluster._settings_core import SupervisionSettings

__all__ = [
    "AlertRuleSpec",
    "AlertSeverity",
    "AlertSource",
    "Comparison",
    "AlertingSettings",
    "AnomalySettings",
    "InhibitRuleSpec",
    "ObservabilitySettings",
    "PerfLogSettings",
]


AlertSeverity = Literal["info", "warning", "critical"]
AlertSource = Literal["metric", "anomaly_score", "breach_eta_seconds"]
Comparison = Literal[">", ">=", "<", "<="]


class AlertRuleSpec(Section):
    """One alert rule (Prometheus alerting-rule semantics) on a metric the hub exports.

    ``source`` picks the value compared with ``threshold``: the metric itself, the anomaly score
    of the metric's series, or its predicted seconds until breach.
    """

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", description="The alertname.")
    metric: str = Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", description="Exported metric name.")
    matchers: dict[str, str] = Field(
        default_factory=dict, description="Label values a series must have (exact match)."
    )
    source: AlertSource = "metric"
    op: Comparison = ">"
    threshold: float
    for_s: float = Field(
        default=0.0, ge=0, description="How long the condition holds before pending turns firing."
    )
    severity: AlertSeverity = "warning"
    labels: dict[str, str] = Field(default_factory=dict, description="Added to the alert.")
    summary: str = Field(default="", max_length=512)


class InhibitRuleSpec(Section):
    """Alertmanager inhibition: a firing source alert mutes target alerts with equal labels."""

    source_matchers: dict[str, str]
    target_matchers: dict[str, str] = Field(default_factory=dict)
    equal: list[str] = Field(default_factory=lambda: ["host"])


def _default_alert_rules() -> list[AlertRuleSpec]:
    return [
        AlertRuleSpec(
            name="HostDown",
            metric="aisys_host_up",
            op="<",
            threshold=1.0,
            for_s=30.0,
            severity="critical",
            summary="the host's probe does not answer",
        ),
        AlertRuleSpec(
            name="AgentDown",
            metric="aisys_agent_up",
            op="<",
            threshold=1.0,
            for_s=60.0,
            severity="warning",
            summary="the agent does not answer its health check",
        ),
    ]


def _default_inhibit_rules() -> list[InhibitRuleSpec]:
    return [InhibitRuleSpec(source_matchers={"alertname": "HostDown"}, equal=["host"])]


class AlertingSettings(Section):
    """Alert evaluation and notification (Alertmanager routing semantics, one route)."""

    rules: list[AlertRuleSpec] = Field(default_factory=_default_alert_rules)
    inhibit_rules: list[InhibitRuleSpec] = Field(default_factory=_default_inhibit_rules)
    group_by: list[str] = Field(default_factory=lambda: ["alertname", "host"])
    repeat_interval_s: float = Field(
        default=4 * 3600.0, gt=0, description="A still-firing group is notified again after this."
    )
    resolved_retention_s: float = Field(
        default=900.0, ge=0, description="Resolved alerts stay listed this long."
    )

    @field_validator("rules")
    @classmethod
    def rule_names_are_distinct(cls, value: list[AlertRuleSpec]) -> list[AlertRuleSpec]:
        names = [rule.name for rule in value]
        if len(set(names)) != len(names):
            raise ValueError(f"alerting.rules repeats a rule name: {names}")
        return value


def _default_breach_thresholds() -> dict[str, float]:
    return {
        "aisys_host_memory_used_ratio": 0.95,
        "aisys_host_disk_used_ratio": 0.95,
        "aisys_gpu_memory_used_ratio": 0.95,
    }


class AnomalySettings(Section):
    """Online anomaly detection (EWMA mean and deviation) and time-to-breach prediction."""

    metrics: list[str] = Field(
        default_factory=lambda: [
            "aisys_host_cpu_used_ratio",
            "aisys_host_memory_used_ratio",
            "aisys_host_disk_used_ratio",
            "aisys_gpu_memory_used_ratio",
            "aisys_agent_probe_latency_seconds",
        ],
        description="Exported gauges whose every series gets a detector.",
    )
    alpha: float = Field(default=0.1, gt=0, le=1, description="EWMA weight of the mean.")
    deviation_alpha: float = Field(
        default=0.05, gt=0, le=1, description="EWMA weight of the absolute deviation."
    )
    warmup_samples: int = Field(default=20, ge=2, description="Samples seen before flagging.")
    z_threshold: float = Field(default=5.0, gt=0, description="Score that flags an anomaly.")
    min_deviation: float = Field(
        default=1e-3, gt=0, description="Floor of the deviation, so a flat series is not fragile."
    )
    trend_window_s: float = Field(
        default=600.0, gt=0, description="Samples this recent feed the linear trend."
    )
    breach_thresholds: dict[str, float] = Field(
        default_factory=_default_breach_thresholds,
        description="Metric name -> value whose crossing is predicted.",
    )


class PerfLogSettings(Section):
    """Performance log (legacy PerformanceLoggerAgent) retention."""

    metrics_retention_days: float = Field(default=30.0, gt=0)
    usage_retention_days: float = Field(default=7.0, gt=0)
    max_query_rows: int = Field(default=10_000, ge=1, description="Cap on one query's rows.")


class ObservabilitySettings(DeploymentSettings):
    """ObservabilityHub (``/observability``): exporter, probes, perf log, anomalies, alerts."""

    host: str = "pc2"
    sample_interval_s: float = Field(
        default=5.0, gt=0, description="Period of host sampling, agent probes and evaluation."
    )
    host_timeout_s: float = Field(default=5.0, gt=0, description="Wait for a host probe actor.")
    probes: SupervisionSettings = Field(
        default_factory=lambda: SupervisionSettings(sweep_interval_s=5.0),
        description="Agent health probes; sweep_interval_s is their period.",
    )
    perflog: PerfLogSettings = PerfLogSettings()
    anomaly: AnomalySettings = AnomalySettings()
    alerting: AlertingSettings = AlertingSettings()
    publish_alerts: bool = Field(
        default=True, description="Publish firing/resolved notifications to the ErrorBus."
    )
