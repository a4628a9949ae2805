"""Settings of the ErrorBus, legacy gateway, ResourceScheduler and SecurityGateway sections."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Final

from pydantic import Field, SecretStr, field_validator, model_validator

from cluster.base._settings_base import DeploymentSettings, Port, Section

__all__ = [
    "DeclaredGpu",
    "ErrorBridgeSettings",
    "ErrorBusSettings",
    "LegacyGatewaySettings",
    "MIRRORABLE",
    "LegacyService",
    "OptimizerSettings",
    "ResourceSettings",
    "SecuritySettings",
    "TrustSettings",
    "WorkerSettings",
]


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
        default=1000,
        ge=1,
        description="ZeroMQ receive high-water mark (messages) of the SUB, per connected "
        "publisher; beyond it libzmq drops that publisher's messages.",
    )
    max_message_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Largest legacy error message (all its frames together): a larger frame "
        "drops the publisher's connection unread (ZMQ_MAXMSGSIZE), a larger message of "
        "smaller frames is dropped and counted as oversized.",
    )
    queue_depth: int = Field(
        default=1000,
        ge=1,
        description="Events received and waiting for NATS; when full, the SUB stops reading "
        "(and its high-water mark then drops).",
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
    """A legacy port the gateway can answer (``docs/legacy-protocol.md`` section 5)."""

    SERVICE_REGISTRY = "service_registry"
    SERVICE_REGISTRY_HEALTH = "service_registry_health"
    SYSTEM_DIGITAL_TWIN = "system_digital_twin"
    REQUEST_COORDINATOR = "request_coordinator"
    AUTHENTICATION = "authentication"
    AUTHENTICATION_HEALTH = "authentication_health"
    TRUST_SCORER = "trust_scorer"
    #: The trust scorer's declared port; its code bound 5626, where clients connect.
    TRUST_SCORER_DECLARED = "trust_scorer_declared"
    TRUST_SCORER_HEALTH = "trust_scorer_health"
    SYSTEM_DIGITAL_TWIN_HEALTH = "system_digital_twin_health"
    REQUEST_COORDINATOR_HEALTH = "request_coordinator_health"
    REQUEST_COORDINATOR_SUGGESTIONS = "request_coordinator_suggestions"
    UNIFIED_SYSTEM = "unified_system"
    UNIFIED_SYSTEM_HEALTH = "unified_system_health"
    PREDICTIVE_HEALTH_MONITOR = "predictive_health_monitor"
    VRAM_OPTIMIZER = "vram_optimizer"
    #: Where ModelManagerAgent falls back to when discovery fails.
    VRAM_OPTIMIZER_MMA = "vram_optimizer_mma"
    PERFORMANCE_MONITOR = "performance_monitor"
    HEALTH_MONITOR = "health_monitor"
    #: PerformanceLoggerAgent's code bound 5632, where its clients connect; 7128 is declared.
    PERFORMANCE_LOGGER = "performance_logger"
    PERFORMANCE_LOGGER_DECLARED = "performance_logger_declared"
    PERFORMANCE_LOGGER_HEALTH = "performance_logger_health"
    SYSTEM_HEALTH_MANAGER = "system_health_manager"
    #: SystemHealthManager's own health port (its code passed 8121 explicitly).
    SYSTEM_HEALTH_MANAGER_HEALTH = "system_health_manager_health"
    RESOURCE_MANAGER = "resource_manager"
    TASK_SCHEDULER = "task_scheduler"
    ASYNC_PROCESSOR = "async_processor"


#: Services whose registrations and events a 'mirror' mode records in aisys (the actions
#: are listed in legacy_gateway/mirror.py; a unit test keeps the two in step).
MIRRORABLE: Final = frozenset(
    {
        LegacyService.SERVICE_REGISTRY,
        LegacyService.SYSTEM_DIGITAL_TWIN,
        LegacyService.AUTHENTICATION,
        LegacyService.TRUST_SCORER,
        LegacyService.TRUST_SCORER_DECLARED,
        LegacyService.PERFORMANCE_MONITOR,
        LegacyService.PERFORMANCE_LOGGER,
        LegacyService.PERFORMANCE_LOGGER_DECLARED,
    }
)

#: The legacy AsyncProcessor's task types; it processed each by logging it.
_LEGACY_TASK_TYPES: Final = ("logging", "analysis", "memory")
_LOG_TASK: Final = "deployments.resources.jobs:log_task"


def _default_legacy_ports() -> dict[str, dict[LegacyService, int]]:
    return {
        "mainpc": {
            LegacyService.SERVICE_REGISTRY: 7100,
            LegacyService.SERVICE_REGISTRY_HEALTH: 8100,
            LegacyService.SYSTEM_DIGITAL_TWIN: 7120,
            LegacyService.SYSTEM_DIGITAL_TWIN_HEALTH: 7121,
            LegacyService.REQUEST_COORDINATOR: 26002,
            LegacyService.REQUEST_COORDINATOR_HEALTH: 26003,
            LegacyService.REQUEST_COORDINATOR_SUGGESTIONS: 5591,
            LegacyService.UNIFIED_SYSTEM: 7125,
            LegacyService.UNIFIED_SYSTEM_HEALTH: 5569,
            LegacyService.PREDICTIVE_HEALTH_MONITOR: 5613,
            LegacyService.VRAM_OPTIMIZER: 5572,
            LegacyService.VRAM_OPTIMIZER_MMA: 5588,
        },
        # Not 7100 on PC2: a legacy PC2 agent binds it. 7120 because legacy agents register
        # with localhost:7120 on their own host.
        "pc2": {
            LegacyService.SYSTEM_DIGITAL_TWIN: 7120,
            LegacyService.AUTHENTICATION: 7116,
            LegacyService.AUTHENTICATION_HEALTH: 8116,
            LegacyService.TRUST_SCORER: 5626,
            LegacyService.TRUST_SCORER_DECLARED: 7122,
            LegacyService.TRUST_SCORER_HEALTH: 5627,
            # Health ports that collide with another legacy main port (7104, 7115, 7116,
            # 7102) are left out (section 5).
            LegacyService.PERFORMANCE_MONITOR: 7103,
            LegacyService.HEALTH_MONITOR: 7114,
            LegacyService.PERFORMANCE_LOGGER: 5632,
            LegacyService.PERFORMANCE_LOGGER_DECLARED: 7128,
            LegacyService.PERFORMANCE_LOGGER_HEALTH: 5633,
            LegacyService.SYSTEM_HEALTH_MANAGER: 7117,
            # SystemHealthManager's effective main port 7121 is SDT's health port on MainPC;
            # its health port 8121 collides with nothing.
            LegacyService.SYSTEM_HEALTH_MANAGER_HEALTH: 8121,
            LegacyService.RESOURCE_MANAGER: 7113,
            LegacyService.TASK_SCHEDULER: 7115,
            LegacyService.ASYNC_PROCESSOR: 7101,
        },
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
    max_message_bytes: int = Field(
        default=2 * 1024 * 1024,
        ge=1024,
        description="Largest total of all frames of one multipart request; the frames past it "
        "are read and dropped, and the request gets an error reply.",
    )
    held_payloads_max: int = Field(
        default=1000,
        ge=0,
        description="Most payloads SystemDigitalTwin keeps for REGISTERs without a port; a "
        "new one beyond it gets an error reply.",
    )
    held_payload_max_bytes: int = Field(
        default=16 * 1024,
        ge=256,
        description="Largest such payload, measured as its JSON encoding.",
    )
    feed_max_objects: int = Field(
        default=100_000,
        ge=100,
        description="Most objects one pickled feed message may build (unpickler opcodes plus "
        "the nodes of its JSON form); beyond: the message is rejected.",
    )
    feed_max_depth: int = Field(
        default=64, ge=4, description="Deepest nesting of one pickled feed message."
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
    twin_refresh_s: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="Period of the local copy of the digital twin (the legacy SDT's was 5 s).",
    )
    suggestion_idle_s: float = Field(
        default=300.0, gt=0, description="Idle time after which 5591 suggests the reminder."
    )
    task_functions: dict[str, str] = Field(
        default_factory=lambda: dict.fromkeys(
            ("logging", "analysis", "memory"), "deployments.resources.jobs:log_task"
        ),
        description="TaskScheduler/AsyncProcessor task type -> 'module:function' run as a Ray "
        "task with data=<the task's data> (the module must be in resources.task_modules).",
    )
    interrupt_feed: str | None = Field(
        default="tcp://127.0.0.1:5576",
        description="StreamingInterruptHandler's PUB (pickled interrupts); None: not followed.",
    )
    language_feed: str | None = Field(
        default="tcp://127.0.0.1:5577",
        description="StreamingLanguageAnalyzer's PUB (pickled analyses); None: not followed.",
    )
    max_feed_bytes: int = Field(
        default=256 * 1024, ge=1024, description="Larger pickled feed messages are dropped."
    )
    curve_certificates_dir: Path | None = Field(
        default=None,
        description="Switches CurveZMQ on for every legacy request port: the legacy "
        "secure_zmq certificates directory, with server.key_secret (the ports' key pair) and "
        "the public key files (*.key) of the clients let in. None: plaintext, as before.",
    )
    delegate_to: dict[LegacyService, str] = Field(
        default_factory=dict,
        description="Services in 'delegate' mode: frames are forwarded verbatim to the still "
        "running legacy agent at this ZeroMQ address (tcp://host:port). Every other service "
        "is in 'replace' mode, answered by aisys (or 'mirror' mode, see mirror_to).",
    )
    mirror_to: dict[LegacyService, str] = Field(
        default_factory=dict,
        description="Services in 'mirror' mode: forwarded like delegate_to, and the "
        "registrations and events the legacy agent accepted are recorded in aisys too "
        f"(services that have them: {', '.join(sorted(MIRRORABLE))}).",
    )
    mirror_queue_max: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Mirrored writes waiting for aisys, per port; beyond: dropped and counted.",
    )
    usage_max_keys: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Distinct (action, caller) pairs counted per port for `aisys migrate "
        "status`; calls beyond them are counted together as '(other)'.",
    )

    @field_validator("interrupt_feed", "language_feed")
    @classmethod
    def feeds_are_tcp_endpoints(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"tcp://[^\s:/]+:\d{1,5}", value):
            raise ValueError(f"{value!r}: give the publisher's address as tcp://host:port")
        return value

    @field_validator("task_functions")
    @classmethod
    def task_functions_name_functions(cls, value: dict[str, str]) -> dict[str, str]:
        for kind, function in value.items():
            if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", function):
                raise ValueError(
                    f"legacy_gateway.task_functions[{kind!r}] is {function!r}; "
                    "give it as 'module:function'"
                )
        return value

    @field_validator("delegate_to", "mirror_to")
    @classmethod
    def delegate_addresses_are_tcp_endpoints(
        cls, value: dict[LegacyService, str]
    ) -> dict[LegacyService, str]:
        for service, address in value.items():
            if not re.fullmatch(r"tcp://[^\s:/]+:\d{1,5}", address):
                raise ValueError(
                    f"legacy_gateway.delegate_to / mirror_to[{service.value!r}] is "
                    f"{address!r}; give the legacy agent's address as tcp://host:port"
                )
        return value

    @model_validator(mode="after")
    def each_service_has_one_mode(self) -> LegacyGatewaySettings:
        both = sorted(set(self.delegate_to) & set(self.mirror_to))
        if both:
            raise ValueError(
                f"legacy_gateway: {', '.join(both)} in both delegate_to and mirror_to; "
                "give each legacy service one mode"
            )
        unmirrorable = sorted(set(self.mirror_to) - MIRRORABLE)
        if unmirrorable:
            raise ValueError(
                f"legacy_gateway.mirror_to: {', '.join(unmirrorable)} take no registrations or "
                f"events aisys could record; use delegate_to for them (mirror_to takes "
                f"{', '.join(sorted(MIRRORABLE))})"
            )
        return self

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


class DeclaredGpu(Section):
    """A GPU of a host that NVML cannot see, declared by hand and reported as "declared"."""

    index: int = Field(ge=0, description="Device index, as CUDA_VISIBLE_DEVICES names it.")
    name: str = Field(min_length=1, max_length=96)
    total_mb: int = Field(gt=0, description="Memory of the device in MiB.")
    uuid: str | None = Field(default=None, description="None gives 'declared-<tag>-<index>'.")


class OptimizerSettings(Section):
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


class WorkerSettings(Section):
    """Model workers: long-lived Ray actors under a VRAM lease (deployments/resources)."""

    classes: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "deployments.resources.vram_worker:VramWorker": ["report", "hold", "free"]
        },
        description="'module:Class' a worker may run -> the methods callable over HTTP.",
    )
    max_workers: int = Field(default=32, ge=1, description="Most workers alive at once.")
    idle_s: float = Field(
        default=300.0, gt=0, description="A worker with no call this long is an unload candidate."
    )
    call_max_bytes: int = Field(
        default=1_048_576, ge=1024, le=67_108_864, description="Largest call body or result."
    )
    call_timeout_s: float = Field(default=60.0, gt=0, description="Longest worker call.")
    start_timeout_s: float = Field(
        default=120.0, gt=0, description="Longest wait for a worker's class to construct."
    )
    usage_tolerance_mb: int = Field(
        default=256, ge=0, description="Measured use above the lease by more than this is over."
    )
    learned_margin_mb: int = Field(
        default=256, ge=0, description="Added to max(declared, learned peak) at admission."
    )
    oom_growth: float = Field(
        default=1.5, ge=1.0, le=4.0, description="An OOM raises the learned peak to lease x this."
    )


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
    tasks_max_active: int = Field(
        default=1000,
        ge=1,
        description="Most tasks waiting or running at once; a new one beyond it is refused.",
    )
    tasks_kept: int = Field(
        default=1000, ge=1, description="Most finished task records kept for status queries."
    )
    task_retention_s: float = Field(
        default=3600.0, gt=0, description="How long a finished task record is kept."
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
    nvml_double: Path | None = Field(
        default=None,
        description="Device table (JSON, keyed by host tag) of the NVML test double, read "
        "instead of the NVIDIA driver on every host: for tests and demos, never production. "
        "Its GPUs are labelled source=nvml-double; a node of a host with no num_gpus set "
        "advertises the table's device count to Ray (actors/probe/nvml_double.py).",
    )
    task_modules: list[str] = Field(
        default_factory=lambda: ["deployments.resources.jobs"],
        description="Modules (and their submodules) whose functions POST /resources/tasks runs.",
    )
    optimizer: OptimizerSettings = OptimizerSettings()
    workers: WorkerSettings = WorkerSettings()

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


class TrustSettings(Section):
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
    history_limit: int = Field(
        default=1000, ge=10, description="Outcomes (history rows) kept per agent (model_id)."
    )
    models_max: int = Field(
        default=2048,
        ge=1,
        description="Most agents (legacy model_ids) with a trust score; an outcome for a new "
        "one beyond it is refused.",
    )
    model_id_max_length: int = Field(
        default=128, ge=8, le=4096, description="Longest agent name (model_id) with trust."
    )


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
    legacy_identities_max: int = Field(
        default=1000,
        ge=0,
        description="Most identities the legacy AuthenticationAgent `register` may create; "
        "further registrations get an error reply.",
    )
    login_window_s: float = Field(
        default=300.0, gt=0, description="Window in which failed logins are counted."
    )
    login_failures_per_subject: int = Field(
        default=5,
        ge=1,
        description="Failed logins (HTTP token grants and legacy login) per user/agent id in "
        "login_window_s; beyond it every attempt for that id gets 429 until the window slides.",
    )
    login_failures_per_source: int = Field(
        default=20,
        ge=1,
        description="Failed logins per source address in login_window_s; beyond it every "
        "attempt from that address gets 429.",
    )
    trust_reports_per_reporter: int = Field(
        default=120,
        ge=1,
        description="Legacy log_performance outcomes one reporter (source address) may add in "
        "trust_report_window_s; the excess gets an error reply and is not recorded.",
    )
    trust_report_window_s: float = Field(default=60.0, gt=0)
    revocation_max_age_s: float = Field(
        default=5.0,
        ge=1.0,
        le=300.0,
        description="A replica whose view of revocations was last confirmed longer ago than "
        "this rejects every token (503) until its security feed catches up.",
    )
