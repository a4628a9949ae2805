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
    "CoreSettings",
    "HostProfile",
    "NatsSettings",
    "PortSettings",
    "RaySettings",
    "RegistrySettings",
    "Settings",
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


class CoreSettings(DeploymentSettings):
    """CoreOrchestrator (``/core``): agent registry and, later, twin and coordinator."""

    host: str = "mainpc"
    registry: RegistrySettings = RegistrySettings()


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

    @model_validator(mode="after")
    def hosts_have_one_head_and_services_name_known_hosts(self) -> Settings:
        heads = [name for name, profile in self.hosts.items() if profile.role == "head"]
        if len(heads) != 1:
            raise ValueError(f"exactly one host profile must have role 'head', found {heads}")
        tags = [profile.tag for profile in self.hosts.values()]
        if len(set(tags)) != len(tags):
            raise ValueError(f"host tags must be distinct, got {tags}")
        for section, host in (("core", self.core.host), ("nats", self.nats.host)):
            if host not in self.hosts:
                raise ValueError(
                    f"{section}.host is {host!r}, which is not a host profile; "
                    f"choose one of {sorted(self.hosts)}"
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
