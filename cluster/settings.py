"""Settings: the one configuration object of aisys, built once by the CLI or a test.

Values come from (highest first) keyword arguments, ``AISYS_*`` environment variables
(``AISYS_PORTS__HTTP=8000``, nested with ``__``), an optional YAML or TOML file named by the
``config_file`` argument or ``AISYS_CONFIG``, and the defaults below. Each service gets its own
section (``settings.core``) handed to its Serve application as arguments; nothing reads
``Settings()`` at import time.

Example::

    settings = load_settings(Path("aisys.yaml"))
    settings.hosts["pc2"].tag        # "pc2"
"""

from __future__ import annotations

import contextvars
import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from cluster.errors import ConfigError

__all__ = [
    "PerfLogSettings",
    "ObservabilitySettings",
    "InhibitRuleSpec",
    "AnomalySettings",
    "AlertingSettings",
    "AlertRuleSpec",
    "CoordinatorSettings",
    "CoreSettings",
    "DeclaredGpu",
    "DispatchRoute",
    "ErrorBridgeSettings",
    "ErrorBusSettings",
    "HostProfile",
    "LegacyGatewaySettings",
    "LegacyService",
    "NatsSettings",
    "OptimizerSettings",
    "PortSettings",
    "RaySettings",
    "RegistrySettings",
    "RequestType",
    "ResourceSettings",
    "SecuritySettings",
    "Settings",
    "SupervisionSettings",
    "TrustSettings",
    "TwinSettings",
    "load_settings",
]

_TAG_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
Port = Annotated[int, Field(ge=1, le=65535)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HostProfile(_Section):
    """One machine of the cluster: its Ray host tag and how its node is started."""

    tag: str = Field(description="Ray custom resource (and node label host=<tag>) of this host.")
    role: Literal["head", "worker"]
    node_ip: str | None = Field(
        default=None, description="--node-ip-address for this host's Ray node."
    )
    num_cpus: int | None = Field(
        default=None, ge=1, description="Logical CPUs the node advertises; None detects."
    )
    num_gpus: int | None = Field(
        default=None,
        ge=0,
        description="GPUs the node advertises to Ray (--num-gpus); None lets Ray detect them.",
    )

    @field_validator("tag")
    @classmethod
    def tag_is_a_short_lowercase_name(cls, value: str) -> str:
        if not _TAG_RE.match(value):
            raise ValueError(
                f"host tag {value!r} must match {_TAG_RE.pattern} (lowercase letter first, "
                "then lowercase letters, digits, '_' or '-')"
            )
        return value


class PortSettings(_Section):
    """Ports of DESIGN.md section 2. Tests replace them with free random ports."""

    gcs: Port = 6380
    dashboard: Port = 8265
    http: Port = 7000
    grpc: Port = 7001
    nats: Port = 4222
    ray_client: Port = 10001
    dashboard_agent: Port = 52365


class RaySettings(_Section):
    """How aisys reaches and starts Ray."""

    address: str | None = Field(
        default=None,
        description="HOST:PORT of the head's GCS; None means this machine at ports.gcs.",
    )
    auth_token: SecretStr | None = Field(
        default=None,
        description="Ray token (RAY_AUTH_MODE=token). None reads <data_dir>/ray_token, which "
        "the head generates once.",
    )
    temp_dir: Path | None = Field(
        default=None, description="Ray's --temp-dir; None means <data_dir>/ray."
    )
    object_store_memory_mb: int | None = Field(default=None, ge=100)


class NatsSettings(_Section):
    """The NATS broker: an external URL, or the embedded ``nats-server`` started by ``aisys up``."""

    url: str | None = Field(default=None, description="External NATS URL; None embeds a server.")
    host: str = Field(default="pc2", description="Host profile that runs the embedded server.")
    bind: str = Field(default="0.0.0.0", description="Listen address of the embedded server.")
    max_store_mb: int = Field(default=2048, ge=16, description="JetStream file-store limit.")


class RegistrySettings(_Section):
    """Agent registry: TTL heartbeats with Consul semantics."""

    default_ttl_s: float | None = Field(
        default=30.0,
        gt=0,
        description="TTL given to registrations that do not name one; None means no TTL check.",
    )
    deregister_critical_after_s: float = Field(
        default=600.0, gt=0, description="Remove an agent after it has been critical this long."
    )
    sweep_interval_s: float = Field(default=1.0, gt=0, le=60)
    change_log_size: int = Field(default=10_000, ge=100)


class DeploymentSettings(_Section):
    """How a service's Serve deployment is placed and sized."""

    host: str = Field(description="Host profile (a key of Settings.hosts) this service runs on.")
    num_replicas: int = Field(default=1, ge=1)
    # Serve's default is one whole CPU per replica, which a 2-core host cannot give five services.
    num_cpus: float = Field(default=0.1, ge=0)
    max_ongoing_requests: int = Field(default=200, ge=1)
    health_check_period_s: float = Field(default=10.0, gt=0)
    health_check_timeout_s: float = Field(default=30.0, gt=0)


RequestType = Literal["text", "audio", "vision"]


class DispatchRoute(_Section):
    """Where requests of one type go: agents with a capability, or a Serve deployment."""

    capability: str | None = Field(
        default=None, description="Registry capability of the agents that take these requests."
    )
    app: str | None = Field(default=None, description="Serve application of the target.")
    deployment: str | None = Field(default=None, description="Serve deployment of the target.")
    method: str = Field(
        default="handle_task", description="Deployment method given the TaskDefinition."
    )

    @model_validator(mode="after")
    def names_a_capability_or_a_deployment(self) -> DispatchRoute:
        by_capability = self.capability is not None
        by_deployment = self.app is not None and self.deployment is not None
        half_deployment = (self.app is None) != (self.deployment is None)
        if by_capability == by_deployment or half_deployment:
            raise ValueError(
                "a dispatch route names either a capability, or both app and deployment"
            )
        return self


def _default_routes() -> dict[RequestType, DispatchRoute]:
    return {
        "text": DispatchRoute(capability="reasoning"),
        "audio": DispatchRoute(capability="audio"),
        "vision": DispatchRoute(capability="vision"),
    }


class CoordinatorSettings(_Section):
    """Request coordinator: bounded priority queue, dispatch over ZeroMQ, circuit breakers."""

    queue_max_size: int = Field(
        default=100, ge=1, description="Queued requests beyond this are refused with 429."
    )
    routes: dict[RequestType, DispatchRoute] = Field(
        default_factory=_default_routes, description="Request type -> where it is dispatched."
    )
    max_in_flight: int = Field(default=4, ge=1, description="Requests dispatched at once.")
    dispatch_timeout_s: float = Field(
        default=5.0, gt=0, description="How long one ZeroMQ attempt waits for the reply."
    )
    dispatch_attempts: int = Field(
        default=2, ge=1, le=10, description="Lazy Pirate attempts (a fresh socket each)."
    )
    breaker_failure_threshold: int = Field(
        default=3, ge=1, description="Consecutive failures that open a downstream's breaker."
    )
    breaker_reset_s: float = Field(
        default=30.0, gt=0, description="Open breakers allow one trial request after this."
    )
    while_open: Literal["fail", "wait"] = Field(
        default="fail",
        description="Requests whose downstream is open or missing: fail at once, or stay queued.",
    )
    interrupt_pause_s: float = Field(
        default=5.0, ge=0, description="Dispatch pause after an interrupt names no duration."
    )
    results_kept: int = Field(
        default=10_000, ge=1, description="Finished requests whose status stays queryable."
    )


class TwinSettings(_Section):
    """Digital twin: host sampling, history, and the legacy simulate_load thresholds."""

    sample_interval_s: float = Field(default=5.0, gt=0, description="Host probe period.")
    history_length: int = Field(default=60, ge=1, description="Samples kept per host.")
    probe_timeout_s: float = Field(default=5.0, gt=0, description="Wait for a host probe.")
    vram_deny_percent: float = Field(default=95.0, gt=0, le=100)
    cpu_caution_percent: float = Field(default=90.0, gt=0, le=100)
    ram_deny_percent: float = Field(default=90.0, gt=0, le=100)


class SupervisionSettings(_Section):
    """Agent health sweep (legacy ``{"action": "health_check"}`` over ZeroMQ REQ)."""

    sweep_interval_s: float = Field(default=30.0, gt=0, description="Period of the sweep.")
    probe_timeout_s: float = Field(
        default=2.0, gt=0, description="An agent that does not answer within this is critical."
    )
    max_concurrent_probes: int = Field(default=32, ge=1)


class CoreSettings(DeploymentSettings):
    """CoreOrchestrator (``/core``): registry, twin, request coordinator and supervision."""

    host: str = "mainpc"
    registry: RegistrySettings = RegistrySettings()
    coordinator: CoordinatorSettings = CoordinatorSettings()
    twin: TwinSettings = TwinSettings()
    supervision: SupervisionSettings = SupervisionSettings()


class ErrorBridgeSettings(DeploymentSettings):
    """The legacy error-bus bridge (ZeroMQ, port 7150), a deployment of the ``legacy`` app."""

    host: str = "pc2"
    # Two replicas on one host would both bind the same ports.
    num_replicas: int = Field(default=1, ge=1, le=1, description="Exactly one: it binds ports.")
    bind: str = Field(default="0.0.0.0", description="Address the bridge's sockets bind.")
    sub_port: Port = Field(default=7150, description="SUB socket legacy publishers connect to.")
    pub_port: Port = Field(
        default=7151, description="PUB socket re-publishing every event as [b'ERROR:', json]."
    )
    receive_hwm: int = Field(
        default=100_000, ge=0, description="ZeroMQ receive high-water mark (messages) of the SUB."
    )

    @model_validator(mode="after")
    def sub_and_pub_ports_differ(self) -> ErrorBridgeSettings:
        if self.sub_port == self.pub_port:
            raise ValueError(
                f"errors.bridge.sub_port and pub_port are both {self.sub_port}; give the "
                "re-publishing PUB socket a port of its own"
            )
        return self


class ErrorBusSettings(DeploymentSettings):
    """ErrorBus (``/errors``): the ``ERRORS`` JetStream stream, its publisher, spool and index."""

    host: str = "pc2"
    retention_days: float = Field(default=7.0, gt=0, description="Stream max age.")
    max_stream_mb: int = Field(default=1024, ge=1, description="Stream max bytes.")
    duplicate_window_s: float = Field(
        default=600.0,
        gt=0,
        description="How long a re-published event id is recognised and stored only once.",
    )
    max_event_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        le=1024 * 1024,
        description="Largest event JSON accepted (NATS' default max payload is 1 MiB).",
    )
    publish_batch_size: int = Field(
        default=256, ge=1, description="Publishes in flight whose acks are awaited together."
    )
    ack_timeout_s: float = Field(default=5.0, gt=0, description="Wait for a stream ack.")
    spool_max_mb: int = Field(
        default=256, ge=1, description="On-disk spool used while NATS is unreachable."
    )
    spool_retry_s: float = Field(
        default=1.0, gt=0, description="How often a non-empty spool is flushed when connected."
    )
    index_batch_size: int = Field(
        default=500, ge=1, description="Events the query index takes from the stream at once."
    )
    sse_keepalive_s: float = Field(
        default=15.0, gt=0, description="Comment line sent on an idle GET /errors/stream."
    )
    bridge: ErrorBridgeSettings = ErrorBridgeSettings()

    @property
    def max_age_s(self) -> float:
        return self.retention_days * 86_400.0


class LegacyService(StrEnum):
    """A legacy port the gateway can answer (``legacy-protocol.md`` section 5)."""

    SERVICE_REGISTRY = "service_registry"
    SERVICE_REGISTRY_HEALTH = "service_registry_health"
    SYSTEM_DIGITAL_TWIN = "system_digital_twin"
    REQUEST_COORDINATOR = "request_coordinator"


def _default_legacy_ports() -> dict[str, dict[LegacyService, int]]:
    return {
        "mainpc": {
            LegacyService.SERVICE_REGISTRY: 7100,
            LegacyService.SERVICE_REGISTRY_HEALTH: 8100,
            LegacyService.SYSTEM_DIGITAL_TWIN: 7120,
            LegacyService.REQUEST_COORDINATOR: 26002,
        },
        # Not 7100 on PC2: a legacy PC2 agent binds it. 7120 because legacy agents register
        # with localhost:7120 on their own host.
        "pc2": {LegacyService.SYSTEM_DIGITAL_TWIN: 7120},
    }


class LegacyGatewaySettings(DeploymentSettings):
    """The legacy ZeroMQ gateway's ports; this section places the non-ErrorBus-host deployment.

    The ``legacy`` application has one deployment per host: ``LegacyGatewayPc2`` runs on
    ``errors.bridge.host`` (with the error-bus bridge), ``LegacyGatewayMainpc`` on ``host``.
    Each binds the ports listed for its host profile in ``ports``.
    """

    host: str = "mainpc"
    num_replicas: int = Field(default=1, ge=1, le=1, description="Exactly one: it binds ports.")
    bind: str = Field(default="0.0.0.0", description="Address every legacy port binds.")
    ports: dict[str, dict[LegacyService, Port]] = Field(
        default_factory=_default_legacy_ports,
        description="Per host profile: legacy service -> port bound on that host.",
    )
    max_frame_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Larger request frames get an error reply."
    )
    reply_timeout_s: float = Field(
        default=4.0,
        gt=0,
        le=60,
        description="Every request is answered within this (legacy clients wait 5 s).",
    )
    max_pending: int = Field(
        default=1024, ge=1, description="Requests awaiting a service per port; beyond: 'busy'."
    )
    delegate_to: dict[LegacyService, str] = Field(
        default_factory=dict,
        description="Services in 'delegate' mode: frames are forwarded verbatim to the still "
        "running legacy agent at this ZeroMQ address (tcp://host:port). Every other service "
        "is in 'replace' mode, answered by aisys.",
    )

    @field_validator("delegate_to")
    @classmethod
    def delegate_addresses_are_tcp_endpoints(
        cls, value: dict[LegacyService, str]
    ) -> dict[LegacyService, str]:
        for service, address in value.items():
            if not re.fullmatch(r"tcp://[^\s:/]+:\d{1,5}", address):
                raise ValueError(
                    f"legacy_gateway.delegate_to[{service.value!r}] is {address!r}; give the "
                    "legacy agent's address as tcp://host:port"
                )
        return value

    @model_validator(mode="after")
    def ports_are_distinct_per_host(self) -> LegacyGatewaySettings:
        for host, ports in self.ports.items():
            numbers = sorted(ports.values())
            if len(set(numbers)) != len(numbers):
                raise ValueError(
                    f"legacy_gateway.ports[{host!r}] binds a port twice ({numbers}); "
                    "give every legacy service of a host its own port"
                )
        return self


class DeclaredGpu(_Section):
    """A GPU of a host that NVML cannot see, declared by hand and reported as "declared"."""

    index: int = Field(ge=0, description="Device index, as CUDA_VISIBLE_DEVICES names it.")
    name: str = Field(min_length=1, max_length=96)
    total_mb: int = Field(gt=0, description="Memory of the device in MiB.")
    uuid: str | None = Field(default=None, description="None gives 'declared-<tag>-<index>'.")


class OptimizerSettings(_Section):
    """VRAM optimizer: when to ask model owners to unload (legacy VRAMOptimizerAgent policy)."""

    warning_ratio: float = Field(
        default=0.75, gt=0, lt=1, description="At this usage, unload the LRU idle model."
    )
    critical_ratio: float = Field(
        default=0.9, gt=0, le=1, description="At this usage, unload the largest model."
    )
    idle_timeout_s: float = Field(
        default=900.0, gt=0, description="A model unused this long is idle."
    )
    interval_s: float = Field(
        default=60.0, gt=0, description="Period of the usage check and idle sweep."
    )
    owner_timeout_s: float = Field(
        default=5.0, gt=0, description="How long an owner (ZeroMQ or HTTP) gets to answer."
    )

    @model_validator(mode="after")
    def warning_is_below_critical(self) -> OptimizerSettings:
        if self.warning_ratio >= self.critical_ratio:
            raise ValueError(
                f"optimizer warning_ratio ({self.warning_ratio}) must be below critical_ratio "
                f"({self.critical_ratio})"
            )
        return self


class ResourceSettings(DeploymentSettings):
    """ResourceScheduler (``/resources``): VRAM leases, the queue, tasks and the optimizer."""

    host: str = "pc2"
    safety_margin_mb: int = Field(
        default=512, ge=0, description="VRAM per GPU never leased (driver, fragmentation)."
    )
    aging_per_s: float = Field(
        default=0.05, ge=0, description="Priority points a waiting request gains per second."
    )
    default_ttl_s: float = Field(
        default=60.0, gt=0, description="Lease TTL when a request names none; heartbeats renew it."
    )
    default_max_wait_s: float = Field(
        default=600.0,
        gt=0,
        description="How long a request may wait queued when it names no limit.",
    )
    max_queue: int = Field(
        default=1000, ge=1, description="Queued requests beyond this are refused."
    )
    poll_interval_s: float = Field(
        default=1.0, gt=0, le=60, description="GPU/CPU readings refresh and lease expiry period."
    )
    cpu_threshold_percent: float = Field(
        default=80.0, gt=0, le=100, description="Tasks are refused while the host's CPU is above."
    )
    memory_threshold_percent: float = Field(
        default=80.0, gt=0, le=100, description="Tasks are refused while host memory is above."
    )
    declared_gpus: dict[str, list[DeclaredGpu]] = Field(
        default_factory=dict,
        description="Host profile name -> GPUs to report when NVML sees none there.",
    )
    task_modules: list[str] = Field(
        default_factory=lambda: ["deployments.resources.jobs"],
        description="Modules (and their submodules) whose functions POST /resources/tasks runs.",
    )
    optimizer: OptimizerSettings = OptimizerSettings()

    @field_validator("declared_gpus")
    @classmethod
    def declared_gpu_indices_are_distinct(
        cls, value: dict[str, list[DeclaredGpu]]
    ) -> dict[str, list[DeclaredGpu]]:
        for host, gpus in value.items():
            indices = [gpu.index for gpu in gpus]
            if len(set(indices)) != len(indices):
                raise ValueError(f"declared_gpus[{host!r}] repeats a device index: {indices}")
        return value


AlertSeverity = Literal["info", "warning", "critical"]
AlertSource = Literal["metric", "anomaly_score", "breach_eta_seconds"]
Comparison = Literal[">", ">=", "<", "<="]


class AlertRuleSpec(_Section):
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


class InhibitRuleSpec(_Section):
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


class AlertingSettings(_Section):
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


class AnomalySettings(_Section):
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


class PerfLogSettings(_Section):
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


def _default_hosts() -> dict[str, HostProfile]:
    return {
        "mainpc": HostProfile(tag="mainpc", role="head"),
        "pc2": HostProfile(tag="pc2", role="worker"),
    }


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "aisys"


_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "aisys_config_file", default=None
)


class TrustSettings(_Section):
    """Agent trust scores: a Beta score with a 0.5 prior whose evidence decays with time."""

    half_life_s: float = Field(
        default=86_400.0, gt=0, description="Evidence loses half its weight in this time."
    )
    slow_response_s: float = Field(
        default=5.0, gt=0, description="A success this slow counts as half a success."
    )
    failed_auth_weight: float = Field(default=2.0, gt=0)
    write_floor: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="Agents scoring below this get only the 'read' scope until they recover.",
    )
    history_limit: int = Field(default=1000, ge=10, description="Outcomes kept per agent.")


class SecuritySettings(DeploymentSettings):
    """SecurityGateway (``/security``): JWT issue/verify/refresh/revoke and trust scores."""

    host: str = "pc2"
    issuer: str = Field(default="aisys", min_length=1)
    audience: str = Field(default="aisys", min_length=1)
    access_ttl_s: int = Field(default=900, ge=30, le=86_400)
    refresh_ttl_s: int = Field(default=7 * 86_400, ge=300)
    leeway_s: int = Field(default=5, ge=0, le=300, description="Clock skew allowed on exp/nbf.")
    open_reads: bool = Field(
        default=False, description="Serve read routes without a token (mutations still need one)."
    )
    admin_user: str = Field(default="admin", min_length=1)
    admin_password: SecretStr | None = Field(
        default=None,
        description="Password of the first admin. None: `aisys up` generates one, prints it once "
        "and stores only its hash.",
    )
    trust: TrustSettings = TrustSettings()


class Settings(BaseSettings):
    """All of aisys's configuration. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="AISYS_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    data_dir: Path = Field(default_factory=_default_data_dir)
    hosts: dict[str, HostProfile] = Field(default_factory=_default_hosts)
    ports: PortSettings = PortSettings()
    ray: RaySettings = RaySettings()
    nats: NatsSettings = NatsSettings()
    core: CoreSettings = CoreSettings()
    resources: ResourceSettings = ResourceSettings()
    errors: ErrorBusSettings = ErrorBusSettings()
    security: SecuritySettings = SecuritySettings()
    legacy_gateway: LegacyGatewaySettings = LegacyGatewaySettings()
    observability: ObservabilitySettings = ObservabilitySettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003 (no .env support)
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file.get()
        if path is not None:
            if path.suffix == ".toml":
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            else:
                sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)

    @field_validator("hosts", mode="before")
    @classmethod
    def partial_host_profiles_merge_into_the_defaults(cls, value: Any) -> Any:
        """``AISYS_HOSTS__PC2__NODE_IP=...`` alone must not wipe the rest of the profile.

        When every given host name is a default profile, the given fields are merged into the
        defaults; naming any other host replaces the whole table.
        """
        defaults = _default_hosts()
        if not isinstance(value, dict) or not set(value) <= set(defaults):
            return value
        merged: dict[str, Any] = {n: p.model_dump() for n, p in defaults.items()}
        for name, given in value.items():
            if isinstance(given, HostProfile):
                given = given.model_dump()
            merged[name] = {**merged[name], **given} if isinstance(given, dict) else given
        return merged

    @model_validator(mode="after")
    def hosts_have_one_head_and_services_name_known_hosts(self) -> Settings:
        heads = [name for name, profile in self.hosts.items() if profile.role == "head"]
        if len(heads) != 1:
            raise ValueError(f"exactly one host profile must have role 'head', found {heads}")
        tags = [profile.tag for profile in self.hosts.values()]
        if len(set(tags)) != len(tags):
            raise ValueError(f"host tags must be distinct, got {tags}")
        for section, host in (
            ("core", self.core.host),
            ("nats", self.nats.host),
            ("errors", self.errors.host),
            ("errors.bridge", self.errors.bridge.host),
            ("resources", self.resources.host),
            ("security", self.security.host),
            ("legacy_gateway", self.legacy_gateway.host),
            *(("legacy_gateway.ports", host) for host in self.legacy_gateway.ports),
            ("observability", self.observability.host),
            *(("resources.declared_gpus", host) for host in self.resources.declared_gpus),
        ):
            if host not in self.hosts:
                raise ValueError(
                    f"{section}.host is {host!r}, which is not a host profile; "
                    f"choose one of {sorted(self.hosts)}"
                )
        return self

    @model_validator(mode="after")
    def error_stream_fits_in_the_embedded_jetstream_store(self) -> Settings:
        if self.nats.url is None and self.errors.max_stream_mb > self.nats.max_store_mb:
            raise ValueError(
                f"errors.max_stream_mb ({self.errors.max_stream_mb}) is larger than the embedded "
                f"NATS store (nats.max_store_mb = {self.nats.max_store_mb}); lower the first or "
                "raise the second"
            )
        return self

    @model_validator(mode="after")
    def legacy_gateway_deployments_are_on_different_hosts(self) -> Settings:
        if self.legacy_gateway.host == self.errors.bridge.host:
            raise ValueError(
                f"legacy_gateway.host and errors.bridge.host are both "
                f"{self.legacy_gateway.host!r}; the legacy app has one deployment per host, so "
                "place the legacy gateway on the host that does not run the error-bus bridge"
            )
        return self

    # Derived values: one place computes each, every reader calls it.

    @property
    def ray_temp_dir(self) -> Path:
        return self.ray.temp_dir or self.data_dir / "ray"

    @property
    def ray_token_path(self) -> Path:
        return self.data_dir / "ray_token"

    @property
    def errors_dir(self) -> Path:
        """ErrorBus's spool and query index live here (on the ErrorBus host)."""
        return self.data_dir / "errors"

    @property
    def head_host(self) -> str:
        return next(name for name, p in self.hosts.items() if p.role == "head")

    @property
    def gcs_address(self) -> str:
        return self.ray.address or f"127.0.0.1:{self.ports.gcs}"

    def tag_of(self, host: str) -> str:
        """Return the Ray host tag of host profile ``host``."""
        return self.hosts[host].tag


def load_settings(config_file: Path | None = None, /, **overrides: Any) -> Settings:
    """Build :class:`Settings` from ``overrides``, the environment and an optional file.

    Args:
        config_file: a ``.yaml``/``.yml`` or ``.toml`` file; ``None`` uses ``AISYS_CONFIG`` if set.
        **overrides: field values that win over every other source.

    Raises:
        ConfigError: the file is missing or a value is invalid; the message names the field.
    """
    if config_file is None and os.environ.get("AISYS_CONFIG"):
        config_file = Path(os.environ["AISYS_CONFIG"])
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"settings file {config_file} does not exist")
    token = _config_file.set(config_file)
    try:
        return Settings(**overrides)
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        raise ConfigError(f"invalid settings: {exc}") from exc
    finally:
        _config_file.reset(token)
