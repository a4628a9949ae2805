"""Settings of the ObservabilityHub (``settings.observability``): alerting, anomalies, perf log,
log shipping."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from cluster.base._settings_base import DeploymentSettings, Section
from cluster.base._settings_core import SupervisionSettings

__all__ = [
    "AlertRuleSpec",
    "AlertSeverity",
    "AlertSource",
    "Comparison",
    "AlertingSettings",
    "AnomalySettings",
    "InhibitRuleSpec",
    "LogPattern",
    "LogSeverity",
    "LogShippingSettings",
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
        *_default_pressure_rules(),
    ]


def _default_pressure_rules() -> list[AlertRuleSpec]:
    """VRAM, disk, GPU temperature, error rate, lease queue, breakers and VRAM over a lease (one
    alert per series: per GPU, per host, per agent, per queued lease, per downstream, per
    lease)."""
    rule = AlertRuleSpec.model_validate
    return [
        rule({"name": "GpuVramPressure", "metric": "aisys_gpu_memory_used_ratio",
              "threshold": 0.9, "for_s": 120.0, "summary": "the GPU's memory is over 90 % used"}),
        rule({"name": "DiskNearlyFull", "metric": "aisys_host_disk_used_ratio",
              "threshold": 0.9, "for_s": 300.0, "summary": "the data disk is over 90 % full"}),
        rule({"name": "GpuTemperatureHigh", "metric": "aisys_gpu_temperature_celsius",
              "threshold": 85.0, "for_s": 120.0, "summary": "the GPU runs above 85 °C"}),
        rule({"name": "ErrorRateSpike", "metric": "aisys_error_rate_per_second",
              "threshold": 0.2, "for_s": 60.0,
              "summary": "the agent reports over 0.2 errors/s (error_rate_window_s average)"}),
        rule({"name": "LeaseWaitingTooLong", "metric": "aisys_lease_queue_wait_seconds",
              "threshold": 300.0, "summary": "a VRAM lease request has waited over 5 minutes"}),
        rule({"name": "BreakerOpen", "metric": "aisys_breaker_open", "op": ">=",
              "threshold": 1.0, "summary": "the downstream's breaker is open"}),
        rule({"name": "LeaseOverUse", "metric": "aisys_lease_over_use", "op": ">=",
              "threshold": 1.0, "for_s": 30.0,
              "summary": "the lease's holder uses more VRAM than it leased (beyond "
                         "resources.workers.usage_tolerance_mb)"}),
    ]  # fmt: skip


def _default_inhibit_rules() -> list[InhibitRuleSpec]:
    return [InhibitRuleSpec(source_matchers={"alertname": "HostDown"}, equal=["host"])]


_HTTP_URL = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
_HTTP_WEBHOOK_URL = re.compile(r"^https?://[^\s/?#]+(/[^\s#]*)?$")


class AlertingSettings(Section):
    """Alert evaluation and notification (Alertmanager routing semantics, one route)."""

    rules: list[AlertRuleSpec] = Field(default_factory=_default_alert_rules)
    inhibit_rules: list[InhibitRuleSpec] = Field(default_factory=_default_inhibit_rules)
    group_by: list[str] = Field(default_factory=lambda: ["alertname", "host"])
    repeat_interval_s: float = Field(
        default=4 * 3600.0, gt=0, description="A still-firing group is notified again after this."
    )
    group_wait_s: float = Field(
        default=30.0,
        ge=0,
        description="A new group's first notification waits this long, so alerts that fire "
        "together are sent together (Alertmanager's group_wait).",
    )
    group_interval_s: float = Field(
        default=300.0,
        ge=0,
        description="A notified group's changes (a new firing alert, a resolved one) are sent no "
        "sooner than this after its last notification (Alertmanager's group_interval).",
    )
    resolved_retention_s: float = Field(
        default=900.0, ge=0, description="Resolved alerts stay listed this long."
    )
    history_retention_days: float = Field(
        default=30.0,
        gt=0,
        description="Alert state transitions (GET /observability/alerts/history) are kept this "
        "long.",
    )
    alertmanager_urls: list[str] = Field(
        default_factory=list,
        description="Alertmanagers (base URLs, e.g. http://host:9093) that firing and resolved "
        "alerts are POSTed to at /api/v2/alerts; empty sends to none.",
    )
    alertmanager_timeout_s: float = Field(
        default=10.0, gt=0, description="Wait for one POST to an Alertmanager."
    )
    resend_delay_s: float = Field(
        default=60.0,
        gt=0,
        description="A still-firing alert is sent to the Alertmanagers again this often, so they "
        "do not resolve it on their own (Prometheus' --rules.alert.resend-delay).",
    )
    webhook_urls: list[str] = Field(
        default_factory=list,
        description="URLs every alert notification is POSTed to as JSON (Alertmanager's webhook "
        "format), for a house without an Alertmanager; empty sends to none.",
    )
    webhook_timeout_s: float = Field(default=10.0, gt=0, description="Wait for one POST.")
    webhook_max_attempts: int = Field(
        default=5, ge=1, le=20, description="POSTs of one notification before it is dropped."
    )
    webhook_queue_size: int = Field(
        default=100, ge=1, le=10_000, description="Notifications queued per URL; oldest dropped."
    )
    external_url: str | None = Field(
        default=None,
        description="Base URL of the Serve ingress as Alertmanager users reach it (the alerts' "
        "generatorURL); None: http://<node_ip of the hub's host or 127.0.0.1>:<ports.http>.",
    )

    @field_validator("rules")
    @classmethod
    def rule_names_are_distinct(cls, value: list[AlertRuleSpec]) -> list[AlertRuleSpec]:
        names = [rule.name for rule in value]
        if len(set(names)) != len(names):
            raise ValueError(f"alerting.rules repeats a rule name: {names}")
        return value

    @field_validator("alertmanager_urls")
    @classmethod
    def alertmanager_urls_are_http_base_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not _HTTP_URL.match(url):
                raise ValueError(
                    f"alerting.alertmanager_urls has {url!r}; give each Alertmanager's base URL "
                    "as http://HOST:PORT (or https://), without /api/v2/alerts"
                )
        return [url.rstrip("/") for url in value]

    @field_validator("webhook_urls")
    @classmethod
    def webhook_urls_are_http_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not _HTTP_WEBHOOK_URL.match(url):
                raise ValueError(
                    f"alerting.webhook_urls has {url!r}; give each as http://HOST[:PORT]/PATH "
                    "(or https://)"
                )
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

    def rule_source_problem(self, rule: AlertRuleSpec) -> str | None:
        """Why ``rule`` could never fire for want of a detector or a breach threshold, or None.

        A rule on ``anomaly_score`` needs its metric watched (in ``metrics`` or
        ``breach_thresholds``); one on ``breach_eta_seconds`` needs a breach threshold for it.
        """
        if rule.source == "anomaly_score" and rule.metric not in {
            *self.metrics,
            *self.breach_thresholds,
        }:
            return (
                f"alert rule {rule.name!r} reads the anomaly score of {rule.metric!r}, which no "
                f"detector watches (watched: {sorted({*self.metrics, *self.breach_thresholds})}); "
                "add the metric to observability.anomaly.metrics in the settings and redeploy"
            )
        if rule.source == "breach_eta_seconds" and rule.metric not in self.breach_thresholds:
            return (
                f"alert rule {rule.name!r} reads the time to breach of {rule.metric!r}, which has "
                f"no breach threshold (metrics with one: {sorted(self.breach_thresholds)}); add "
                f"{rule.metric!r}: <threshold> to observability.anomaly.breach_thresholds in the "
                "settings and redeploy"
            )
        return None


class PerfLogSettings(Section):
    """Performance log (legacy PerformanceLoggerAgent) retention."""

    metrics_retention_days: float = Field(default=30.0, gt=0)
    usage_retention_days: float = Field(default=7.0, gt=0)
    max_query_rows: int = Field(default=10_000, ge=1, description="Cap on one query's rows.")


LogSeverity = Literal["debug", "info", "warning", "error", "critical"]

#: The placeholder a log glob may start with; the Ray temp dir of this system replaces it.
RAY_TEMP_DIR_PLACEHOLDER = "{ray_temp_dir}"
_SOURCE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PLACEHOLDER = re.compile(r"\{[^}]*\}")


class LogPattern(Section):
    """A log-line classification: the first pattern found in a line names its error type."""

    pattern: str = Field(
        min_length=1, description="Regular expression searched in the line, case-insensitively."
    )
    error_type: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="e.g. timeout_error.")
    severity: LogSeverity

    @field_validator("pattern")
    @classmethod
    def pattern_is_a_valid_regular_expression(cls, value: str) -> str:
        try:
            re.compile(value, re.IGNORECASE)
        except re.error as exc:
            raise ValueError(
                f"log pattern {value!r} is not a valid regular expression ({exc}); escape "
                "characters such as '(', '[' or '*' with a backslash to match them literally"
            ) from None
        return value


def _default_log_sources() -> dict[str, list[str]]:
    return {
        # The legacy agents' logs, relative to legacy_root (the legacy scanner's logs/*.log).
        "legacy": ["logs/*.log"],
        # Ray's own logs of the running session on each host.
        "ray": [f"{RAY_TEMP_DIR_PLACEHOLDER}/session_latest/logs/*.log"],
    }


def _default_log_patterns() -> list[LogPattern]:
    # The legacy error bus's log scanner (docs/legacy-protocol.md section 4.14), case-insensitive.
    return [
        LogPattern(pattern="connection refused", error_type="connection_error", severity="error"),
        LogPattern(pattern="timeout", error_type="timeout_error", severity="warning"),
        LogPattern(pattern="out of memory", error_type="resource_error", severity="critical"),
    ]


class LogShippingSettings(Section):
    """Log shipping: each host's log files, tailed and sent to the ``LOGS`` JetStream stream.

    A glob is absolute, starts with ``{ray_temp_dir}``, or is relative to ``legacy_root``.
    """

    enabled: bool = True
    legacy_root: Path | None = Field(
        default=None,
        description="Checkout the legacy agents run from; relative globs are under it. None "
        "leaves sources with relative globs unwatched.",
    )
    sources: dict[str, list[str]] = Field(
        default_factory=_default_log_sources,
        description="Source name (the last token of logs.<host>.<source>) -> file globs.",
    )
    patterns: list[LogPattern] = Field(default_factory=_default_log_patterns)
    poll_interval_s: float = Field(default=1.0, gt=0, description="Period of the file scans.")
    batch_size: int = Field(
        default=500, ge=1, le=2000, description="Lines published before their acks are awaited."
    )
    max_line_bytes: int = Field(
        default=16 * 1024,
        ge=256,
        le=64 * 1024,
        description="Longer lines are cut here, marked truncated, and their rest is skipped.",
    )
    rotate_wait_s: float = Field(
        default=5.0,
        ge=0,
        description="A renamed or deleted file is read this long after its last growth.",
    )
    ack_timeout_s: float = Field(default=5.0, gt=0, description="Wait for a batch's acks.")
    retention_days: float = Field(default=7.0, gt=0, description="LOGS stream max age.")
    max_stream_mb: int = Field(default=512, ge=1, description="LOGS stream max bytes.")
    duplicate_window_s: float = Field(
        default=600.0,
        gt=0,
        description="A line published again (after a crash before its offset was saved) within "
        "this window is stored once.",
    )
    read_scan_max: int = Field(
        default=20_000,
        ge=1000,
        le=1_000_000,
        description="Stream sequence numbers one page of GET /observability/logs examines.",
    )
    sse_keepalive_s: float = Field(
        default=15.0, gt=0, description="Comment sent on an idle GET /observability/logs/stream."
    )

    @field_validator("sources")
    @classmethod
    def sources_are_subject_tokens_with_globs(
        cls, value: dict[str, list[str]]
    ) -> dict[str, list[str]]:
        for name, globs in value.items():
            if not _SOURCE_NAME.match(name):
                raise ValueError(
                    f"log source name {name!r} must be 1-64 letters, digits, '_' or '-' (it is "
                    "a NATS subject token)"
                )
            if not globs:
                raise ValueError(f"log source {name!r} has no globs; give at least one")
            for pattern in globs:
                rest = pattern.removeprefix(RAY_TEMP_DIR_PLACEHOLDER)
                if _PLACEHOLDER.search(rest):
                    raise ValueError(
                        f"log source {name!r} glob {pattern!r}: the only placeholder is "
                        f"{RAY_TEMP_DIR_PLACEHOLDER}, at the start"
                    )
        return value

    @model_validator(mode="after")
    def duplicate_window_fits_in_the_retention(self) -> LogShippingSettings:
        if self.duplicate_window_s > self.retention_days * 86_400.0:
            raise ValueError(
                "logs.duplicate_window_s is longer than logs.retention_days; JetStream needs the "
                "window within the stream's max age"
            )
        return self

    @property
    def max_age_s(self) -> float:
        return self.retention_days * 86_400.0

    def resolved_sources(self, ray_temp_dir: Path) -> dict[str, list[str]]:
        """Each source's globs as absolute paths; relative ones need ``legacy_root``.

        A source whose globs are all relative, with no ``legacy_root``, maps to an empty list.
        """
        resolved: dict[str, list[str]] = {}
        for name, globs in self.sources.items():
            paths = []
            for pattern in globs:
                if pattern.startswith(RAY_TEMP_DIR_PLACEHOLDER):
                    rest = pattern.removeprefix(RAY_TEMP_DIR_PLACEHOLDER).lstrip("/")
                    paths.append(str(ray_temp_dir / rest))
                elif Path(pattern).is_absolute():
                    paths.append(pattern)
                elif self.legacy_root is not None:
                    paths.append(str(self.legacy_root / pattern))
            resolved[name] = paths
        return resolved


class ObservabilitySettings(DeploymentSettings):
    """ObservabilityHub (``/observability``): exporter, probes, perf log, anomalies, alerts."""

    host: str = "pc2"
    sample_interval_s: float = Field(
        default=5.0, gt=0, description="Period of host sampling, agent probes and evaluation."
    )
    host_timeout_s: float = Field(default=5.0, gt=0, description="Wait for a host probe actor.")
    probes: SupervisionSettings = Field(
        # 1 s x 2 attempts: a sweep of agents that never answer ends well within its 5 s period.
        default_factory=lambda: SupervisionSettings(sweep_interval_s=5.0, probe_timeout_s=1.0),
        description="Agent health probes; sweep_interval_s is their period.",
    )
    perflog: PerfLogSettings = PerfLogSettings()
    anomaly: AnomalySettings = AnomalySettings()
    alerting: AlertingSettings = AlertingSettings()
    publish_alerts: bool = Field(
        default=True, description="Publish firing/resolved notifications to the ErrorBus."
    )
    logs: LogShippingSettings = LogShippingSettings()
    error_rate_window_s: float = Field(
        default=300.0, gt=0, description="aisys_error_rate_per_second averages over this window."
    )

    @model_validator(mode="after")
    def alert_rules_read_watched_series(self) -> ObservabilitySettings:
        for rule in self.alerting.rules:
            problem = self.anomaly.rule_source_problem(rule)
            if problem is not None:
                raise ValueError(problem)
        return self
