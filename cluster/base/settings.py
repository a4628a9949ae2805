"""Settings: the one configuration object of aisys, built once by the CLI or a test.

The per-service sections live in ``cluster/base/_settings_*.py`` and are re-exported here, so
``from cluster.base.settings import CoreSettings`` is the one way to name any of them.

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
import ssl
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from cluster.base._settings_base import DeploymentSettings, Port, Section
from cluster.base._settings_core import (
    CoordinatorSettings,
    CoreSettings,
    DispatchRoute,
    RegistrySettings,
    RequestType,
    SupervisionSettings,
    TwinSettings,
)
from cluster.base._settings_observability import (
    AlertingSettings,
    AlertRuleSpec,
    AlertSeverity,
    AlertSource,
    AnomalySettings,
    Comparison,
    InhibitRuleSpec,
    LogPattern,
    LogSeverity,
    LogShippingSettings,
    ObservabilitySettings,
    PerfLogSettings,
)
from cluster.base._settings_services import (
    MIRRORABLE,
    DeclaredGpu,
    ErrorBridgeSettings,
    ErrorBusSettings,
    LegacyGatewaySettings,
    LegacyService,
    OptimizerSettings,
    ResourceSettings,
    SecuritySettings,
    TrustSettings,
    WorkerSettings,
)
from cluster.base.errors import ConfigError

__all__ = [
    "MIRRORABLE",
    "AlertRuleSpec",
    "AlertSeverity",
    "AlertSource",
    "AlertingSettings",
    "AnomalySettings",
    "Comparison",
    "CoordinatorSettings",
    "CoreSettings",
    "DeclaredGpu",
    "DeploymentSettings",
    "DispatchRoute",
    "ErrorBridgeSettings",
    "ErrorBusSettings",
    "HostProfile",
    "InhibitRuleSpec",
    "LegacyGatewaySettings",
    "LegacyService",
    "LogPattern",
    "LogSeverity",
    "LogShippingSettings",
    "NatsSettings",
    "ObservabilitySettings",
    "OptimizerSettings",
    "PerfLogSettings",
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
    "WorkerSettings",
    "load_settings",
    "settings_yaml",
]

_TAG_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class HostProfile(Section):
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


class PortSettings(Section):
    """Ports (docs/architecture.md, "Hosts, tags, ports"). Tests use free random ports."""

    gcs: Port = 6380
    dashboard: Port = 8265
    http: Port = 7000
    grpc: Port = 7001
    nats: Port = 4222
    ray_client: Port = 10001
    dashboard_agent: Port = 52365
    gcs_store: Port = Field(
        default=6381, description="The head's GCS store (redis-server, loopback only)."
    )


class RaySettings(Section):
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
    autoscaling_config: Path | None = Field(
        default=None,
        description="The head's `ray start --autoscaling-config`: the cluster config `ray up` "
        "leaves on the head (~/ray_bootstrap_config.yaml), so the head's autoscaler starts the "
        "worker nodes of cluster.yaml over ssh. None: no autoscaler (nodes started by hand).",
    )
    gcs_fault_tolerance: bool | None = Field(
        default=None,
        description="Back the head's GCS with a private redis-server (cluster/ops/gcs_store.py), "
        "so a head restart keeps the cluster, its worker nodes and its applications. None: on "
        "for `--role head`, off for the embedded single machine (where a head outage is the "
        "whole system's anyway).",
    )
    gcs_reconnect_timeout_s: int = Field(
        default=600,
        ge=10,
        description="How long a worker's raylet waits for a restarted head's GCS before it "
        "exits (RAY_gcs_rpc_server_reconnect_timeout_s); after that `aisys supervise` starts "
        "it again once the head answers.",
    )
    request_timeout_s: float = Field(
        default=40.0,
        gt=0,
        description="Serve's end-to-end timeout of HTTP and gRPC requests: a request to a "
        "service whose host is gone gets 408 after this long instead of hanging. Longer than "
        "the longest "
        "long-poll (30 s). Streams (Server-Sent Events) outlive it when the client sends "
        "`X-Request-Timeout-Seconds: 0`.",
    )

    tls_certfile: Path | None = Field(
        default=None,
        description="PEM certificate (chain) for HTTPS on Serve's HTTP port, at the same path on "
        "every host; with tls_keyfile. Its names must cover the addresses clients use "
        "(aisys check uses the head's node_ip, or 127.0.0.1).",
    )
    tls_keyfile: Path | None = Field(default=None, description="Its PEM private key.")
    tls_ca_file: Path | None = Field(
        default=None,
        description="What aisys's own HTTPS clients trust; None trusts tls_certfile itself "
        "(a self-signed certificate).",
    )

    @model_validator(mode="after")
    def tls_needs_both_files(self) -> RaySettings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("set both ray.tls_certfile and ray.tls_keyfile for HTTPS, or neither")
        return self

    @property
    def http_scheme(self) -> str:
        return "https" if self.tls_certfile is not None else "http"

    @property
    def http_verify(self) -> ssl.SSLContext | bool:
        """What aisys's own HTTPS clients verify the server against (httpx's ``verify``)."""
        trusted = self.tls_ca_file or self.tls_certfile
        return ssl.create_default_context(cafile=str(trusted)) if trusted is not None else True


class NatsSettings(Section):
    """The NATS broker: an external URL, or the embedded ``nats-server`` started by ``aisys up``."""

    url: str | None = Field(
        default=None,
        description="External NATS URL; None embeds a server. Credentials of an external broker "
        "go in the URL (nats://USER:PASSWORD@HOST:4222) or in nats.user and nats.password.",
    )
    host: str = Field(default="pc2", description="Host profile that runs the embedded server.")
    bind: str = Field(default="0.0.0.0", description="Listen address of the embedded server.")
    user: str = Field(
        default="aisys",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The NATS user aisys's clients connect as (the embedded server's only user).",
    )
    password: SecretStr | None = Field(
        default=None,
        description="Password of nats.user. None reads <data_dir>/nats_password, which the head "
        "generates once (copy it to the NATS host with the Ray token); with an external broker, "
        "None means the URL carries any credentials.",
    )
    max_store_mb: int = Field(default=2048, ge=16, description="JetStream file-store limit.")


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
        # JetStream reserves a stream's max bytes when it is created: both must fit together.
        both = self.errors.max_stream_mb + self.observability.logs.max_stream_mb
        if (
            self.nats.url is None
            and self.observability.logs.enabled
            and both > self.nats.max_store_mb
        ):
            raise ValueError(
                f"errors.max_stream_mb + observability.logs.max_stream_mb ({both}) is larger "
                f"than the embedded NATS store (nats.max_store_mb = {self.nats.max_store_mb}); "
                "lower one of the first two or raise the third"
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
    def nats_password_path(self) -> Path:
        return self.data_dir / "nats_password"

    @property
    def nats_url(self) -> str:
        """The broker's URL: ``nats.url``, else the NATS host's ``node_ip`` and port."""
        if self.nats.url:
            return self.nats.url
        ip = self.hosts[self.nats.host].node_ip or "127.0.0.1"
        return f"nats://{ip}:{self.ports.nats}"

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


def settings_yaml(settings: Settings) -> str:
    """``settings`` as YAML that :func:`load_settings` reads back equal.

    Secrets are written out in clear: the file it goes to must be its owner's only (0600).
    """

    def plain(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, dict):
            return {plain(k): plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, Enum):
            return value.value
        return value

    return yaml.safe_dump(plain(settings.model_dump()))
