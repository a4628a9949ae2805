"""Generate the Serve config (what ``serve deploy`` accepts) from :class:`Settings`.

The host pin of every deployment lives here, in ``ray_actor_options.resources``: a config's
``ray_actor_options`` replaces the code's whole dict, so a pin set only in code would vanish.

Example::

    config = build_serve_config(load_settings())
    Path("serve.yaml").write_text(serve_config_yaml(config))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from ray.serve.schema import ServeDeploySchema

from cluster.base.constants import (
    APP_CORE,
    APP_ERRORS,
    APP_LEGACY,
    APP_OBSERVABILITY,
    APP_RESOURCES,
    APP_ROUTE_PREFIXES,
    APP_SECURITY,
    CORE_GRPC_SERVICER,
)
from cluster.base.errors import MissingHostTag
from cluster.base.nats_client import nats_client
from cluster.base.settings import DeploymentSettings, Settings

__all__ = [
    "AppSpec",
    "APPS",
    "build_serve_config",
    "check_host_tags",
    "required_host_tags",
    "serve_config_yaml",
]

#: Fraction of a host tag each deployment asks for: enough to pin, small enough never to run out.
PIN_FRACTION = 0.001


@dataclass(frozen=True)
class AppSpec:
    """One Serve application: where its builder lives and how its args come from Settings."""

    name: str
    import_path: str
    deployment: str
    section: Callable[[Settings], DeploymentSettings]
    args: Callable[[Settings], dict[str, Any]]
    #: Further deployments of the same application (name, settings section), e.g. per host.
    extra_deployments: tuple[tuple[str, Callable[[Settings], DeploymentSettings]], ...] = ()

    def deployments(self) -> tuple[tuple[str, Callable[[Settings], DeploymentSettings]], ...]:
        """Every deployment of the application, the ingress first."""
        return ((self.deployment, self.section), *self.extra_deployments)


def _core_args(settings: Settings) -> dict[str, Any]:
    return {
        "settings": settings.core.model_dump(mode="json"),
        "data_dir": str(settings.data_dir),
        "host_tag": settings.tag_of(settings.core.host),
        "host_tags": sorted(profile.tag for profile in settings.hosts.values()),
        "declared_gpus": {
            settings.tag_of(host): [gpu.model_dump(mode="json") for gpu in gpus]
            for host, gpus in settings.resources.declared_gpus.items()
        },
        "auth": _auth_args(settings),
    }


def _auth_args(settings: Settings) -> dict[str, Any]:
    """What every replica needs to verify tokens (``deployments.auth.AuthArgs``)."""
    return {
        "settings": settings.security.model_dump(mode="json"),
        "data_dir": str(settings.data_dir),
        "host_tag": settings.tag_of(settings.security.host),
    }


def _security_args(settings: Settings) -> dict[str, Any]:
    return {"auth": _auth_args(settings)}


def _nats(settings: Settings) -> dict[str, Any]:
    """How the services reach NATS: the URL and the password *file* each replica reads on its
    own host, so the secret stays out of Serve's config (unless ``nats.password`` overrides)."""
    return nats_client(settings).model_dump(mode="json")


def _errors_args(settings: Settings) -> dict[str, Any]:
    return {
        "settings": settings.errors.model_dump(mode="json"),
        "nats": _nats(settings),
        "errors_dir": str(settings.errors_dir),
        "auth": _auth_args(settings),
    }


def _legacy_args(settings: Settings) -> dict[str, Any]:
    return {
        "errors": settings.errors.model_dump(mode="json"),
        "nats": _nats(settings),
        "errors_dir": str(settings.errors_dir),
        "auth": _auth_args(settings),
        "gateway": settings.legacy_gateway.model_dump(mode="json"),
        "registry": settings.core.registry.model_dump(mode="json"),
        "data_dir": str(settings.data_dir),
        "registry_host_tag": settings.tag_of(settings.core.host),
        "mainpc_host": settings.legacy_gateway.host,
        "pc2_host": settings.errors.bridge.host,
        # Published for legacy agents that register a loopback address on their own host.
        "node_ips": {name: profile.node_ip for name, profile in settings.hosts.items()},
    }


def _resources_args(settings: Settings) -> dict[str, Any]:
    declared = settings.resources.declared_gpus
    return {
        "settings": settings.resources.model_dump(mode="json"),
        "data_dir": str(settings.data_dir),
        "host_tag": settings.tag_of(settings.resources.host),
        # Every host's GPUs are read by a probe pinned there; a declared table keyed by tag.
        "hosts": {
            profile.tag: [gpu.model_dump(mode="json") for gpu in declared.get(name, [])]
            for name, profile in settings.hosts.items()
        },
        # The legacy ModelManagerAgent runs on MainPC, the head.
        "model_manager_host": settings.tag_of(settings.head_host),
        "auth": _auth_args(settings),
        # Over-use of a lease is an ErrorBus event (actors/resources/workers.py).
        "nats": _nats(settings),
        "errors": settings.errors.model_dump(mode="json"),
    }


def _observability_args(settings: Settings) -> dict[str, Any]:
    declared = settings.resources.declared_gpus
    return {
        "settings": settings.observability.model_dump(mode="json"),
        "data_dir": str(settings.data_dir),
        "nats": _nats(settings),
        "errors": settings.errors.model_dump(mode="json"),
        # Each host is measured by the probe actor pinned to its tag.
        "hosts": {
            profile.tag: [gpu.model_dump(mode="json") for gpu in declared.get(name, [])]
            for name, profile in settings.hosts.items()
        },
        "registry": settings.core.registry.model_dump(mode="json"),
        "registry_host_tag": settings.tag_of(settings.core.host),
        "auth": _auth_args(settings),
        # What {ray_temp_dir} in a log glob stands for (the same path on every host).
        "ray_temp_dir": str(settings.ray_temp_dir),
        "external_url": _external_url(settings),
        # Log follows and the status page's event streams end themselves cleanly before Serve's
        # timeout would cut them (clients resume).
        "request_timeout_s": settings.ray.request_timeout_s,
    }


def _external_url(settings: Settings) -> str:
    """Base URL of the Serve ingress on the hub's host, as Alertmanager users follow it."""
    configured = settings.observability.alerting.external_url
    if configured:
        return configured.rstrip("/")
    ip = settings.hosts[settings.observability.host].node_ip or "127.0.0.1"
    return f"{settings.ray.http_scheme}://{ip}:{settings.ports.http}"


#: Every application aisys deploys, in deployment order.
APPS: tuple[AppSpec, ...] = (
    AppSpec(
        name=APP_CORE,
        import_path="deployments.core.app:build_app",
        deployment="CoreOrchestrator",
        section=lambda s: s.core,
        args=_core_args,
    ),
    AppSpec(
        name=APP_SECURITY,
        import_path="deployments.security.app:build_app",
        deployment="SecurityGateway",
        section=lambda s: s.security,
        args=_security_args,
    ),
    AppSpec(
        name=APP_RESOURCES,
        import_path="deployments.resources.app:build_app",
        deployment="ResourceScheduler",
        section=lambda s: s.resources,
        args=_resources_args,
    ),
    AppSpec(
        name=APP_ERRORS,
        import_path="deployments.errors.app:build_app",
        deployment="ErrorBus",
        section=lambda s: s.errors,
        args=_errors_args,
    ),
    AppSpec(
        name=APP_OBSERVABILITY,
        import_path="deployments.observability.app:build_app",
        deployment="ObservabilityHub",
        section=lambda s: s.observability,
        args=_observability_args,
    ),
    AppSpec(
        name=APP_LEGACY,
        import_path="legacy_gateway.app:build_app",
        deployment="LegacyGatewayPc2",
        section=lambda s: s.errors.bridge,
        args=_legacy_args,
        extra_deployments=(("LegacyGatewayMainpc", lambda s: s.legacy_gateway),),
    ),
)


def _deployment_config(
    name: str, section_of: Callable[[Settings], DeploymentSettings], settings: Settings
) -> dict[str, Any]:
    section = section_of(settings)
    return {
        "name": name,
        "num_replicas": section.num_replicas,
        "max_ongoing_requests": section.max_ongoing_requests,
        "health_check_period_s": section.health_check_period_s,
        "health_check_timeout_s": section.health_check_timeout_s,
        "ray_actor_options": {
            "num_cpus": section.num_cpus,
            "resources": {settings.tag_of(section.host): PIN_FRACTION},
        },
    }


def _tls_options(settings: Settings) -> dict[str, str]:
    """Serve's HTTPS options, when ``ray.tls_certfile`` and ``ray.tls_keyfile`` are set."""
    if settings.ray.tls_certfile is None or settings.ray.tls_keyfile is None:
        return {}
    return {
        "ssl_certfile": str(settings.ray.tls_certfile),
        "ssl_keyfile": str(settings.ray.tls_keyfile),
    }


def build_serve_config(settings: Settings) -> dict[str, Any]:
    """Return the Serve deploy config for every application, validated by Serve's schema.

    Raises:
        pydantic.ValidationError: the generated config is not one ``serve deploy`` accepts.
    """
    config: dict[str, Any] = {
        "proxy_location": "EveryNode",
        "http_options": {
            "host": "0.0.0.0",
            "port": settings.ports.http,
            "request_timeout_s": settings.ray.request_timeout_s,
            **_tls_options(settings),
        },
        "grpc_options": {
            "port": settings.ports.grpc,
            "request_timeout_s": settings.ray.request_timeout_s,
            "grpc_servicer_functions": [CORE_GRPC_SERVICER],
        },
        "applications": [
            {
                "name": spec.name,
                "route_prefix": APP_ROUTE_PREFIXES[spec.name],
                "import_path": spec.import_path,
                "args": spec.args(settings),
                "deployments": [
                    _deployment_config(name, section, settings)
                    for name, section in spec.deployments()
                ],
            }
            for spec in APPS
        ],
    }
    ServeDeploySchema.model_validate(config)
    return config


def serve_config_yaml(config: Mapping[str, Any]) -> str:
    """Render a config from :func:`build_serve_config` as YAML for ``serve deploy``."""
    return yaml.safe_dump(dict(config), sort_keys=False)


def required_host_tags(settings: Settings) -> dict[str, list[str]]:
    """Map every host tag the applications need to the applications that need it."""
    needed: dict[str, list[str]] = {}
    for spec in APPS:
        for _, section in spec.deployments():
            apps = needed.setdefault(settings.tag_of(section(settings).host), [])
            if spec.name not in apps:
                apps.append(spec.name)
    return needed


def check_host_tags(settings: Settings, cluster_resources: Mapping[str, float]) -> None:
    """Fail before deploying when a needed host tag is carried by no node.

    Args:
        settings: the settings the config is built from.
        cluster_resources: ``ray.cluster_resources()`` of the running cluster.

    Raises:
        MissingHostTag: names the first missing tag, who needs it and how to start its node.
    """
    for tag, apps in required_host_tags(settings).items():
        if cluster_resources.get(tag, 0) <= 0:
            host = next(name for name, p in settings.hosts.items() if p.tag == tag)
            hint = (
                f"start that host's node with `aisys up --role worker --host {host} "
                f"--address <head-ip>:{settings.ports.gcs}` (or `ray start --address "
                f"<head-ip>:{settings.ports.gcs} --resources '{{\"{tag}\": 1}}'`)"
            )
            raise MissingHostTag(tag, "application(s) " + ", ".join(apps), hint)
