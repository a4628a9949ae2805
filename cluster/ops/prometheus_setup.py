"""``aisys prometheus-credentials``: a metrics-only identity and the scrape config that uses it.

Prometheus scrapes ``/observability/metrics`` with its ``oauth2`` option: it trades the
identity's client secret for an access token at ``/security/token`` and fetches a new one when
that expires. This module creates the identity (scope ``metrics:read``), writes its secret to a
0600 file and fills in the shipped ``deployments/observability/prometheus.yml``.

Example::

    written = write_prometheus_files(settings, Path("/etc/prometheus/aisys"), rotate=False)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ray._private import ray_constants

import deployments.observability
from actors.security.models import NewAgent, Scope
from cluster.base.errors import ConfigError, IdentityExists
from cluster.base.settings import Settings
from cluster.ops import identity

__all__ = [
    "SCRAPE_CONFIG_TEMPLATE",
    "PrometheusFiles",
    "default_ingress",
    "ray_sd_file",
    "render_scrape_config",
    "write_prometheus_files",
]

#: The shipped scrape config; its ``aisys`` and ``ray`` jobs are filled in here.
SCRAPE_CONFIG_TEMPLATE = Path(deployments.observability.__file__).parent / "prometheus.yml"
SECRET_FILE_NAME = "aisys-prometheus.secret"
CONFIG_FILE_NAME = "prometheus.yml"


@dataclass(frozen=True)
class PrometheusFiles:
    """What :func:`write_prometheus_files` wrote."""

    client_id: str
    secret_file: Path
    config_file: Path
    ray_sd_file: Path


def ray_sd_file(settings: Settings) -> Path:
    """The file_sd list of Ray's metrics agents the Ray head keeps up to date."""
    return (
        settings.ray_temp_dir / "session_latest" / ray_constants.PROMETHEUS_SERVICE_DISCOVERY_FILE
    )


def render_scrape_config(
    *,
    ingress: str,
    client_id: str,
    secret_file: Path,
    ray_sd: Path,
    ca_file: Path | None = None,
    template: str | None = None,
) -> str:
    """The shipped scrape config with this system's addresses and files.

    Args:
        ingress: base URL of a Serve ingress, e.g. ``http://192.168.1.10:7000``.
        client_id: the metrics-only agent identity.
        secret_file: file holding its client secret (Prometheus reads it at each token fetch).
        ray_sd: Ray's file_sd list (or a copy Prometheus can read).
        ca_file: what Prometheus trusts for an ``https`` ingress.
        template: the config to fill in; the shipped one when None.

    Raises:
        ConfigError: ``ingress`` is not ``http(s)://HOST:PORT``, or the template lacks a job.
    """
    scheme, sep, address = ingress.rstrip("/").partition("://")
    if not sep or scheme not in ("http", "https") or not address or "/" in address:
        raise ConfigError(f"ingress {ingress!r} must be http://HOST:PORT or https://HOST:PORT")
    text = template if template is not None else SCRAPE_CONFIG_TEMPLATE.read_text()
    config: dict[str, Any] = yaml.safe_load(text)
    jobs = {job["job_name"]: job for job in config.get("scrape_configs", [])}
    if "aisys" not in jobs or "ray" not in jobs:
        raise ConfigError("the scrape config template needs an 'aisys' and a 'ray' job")
    hub = jobs["aisys"]
    hub["scheme"] = scheme
    hub["static_configs"][0]["targets"] = [address]
    oauth2 = hub["oauth2"]
    oauth2["client_id"] = client_id
    oauth2["client_secret_file"] = str(secret_file)
    oauth2["token_url"] = f"{scheme}://{address}/security/token"
    if ca_file is not None:
        hub["tls_config"] = {"ca_file": str(ca_file)}
    jobs["ray"]["file_sd_configs"] = [{"files": [str(ray_sd)]}]
    header = "# Written by `aisys prometheus-credentials` from the shipped prometheus.yml.\n"
    return header + yaml.safe_dump(config, sort_keys=False)


def _write_private(path: Path, text: str, mode: int) -> None:
    """Replace ``path`` atomically with a file of ``mode`` holding ``text``."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask does not narrow it below what was asked
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def default_ingress(settings: Settings) -> str:
    """The Serve ingress on the ObservabilityHub's host."""
    ip = settings.hosts[settings.observability.host].node_ip or "127.0.0.1"
    return f"{settings.ray.http_scheme}://{ip}:{settings.ports.http}"


def write_prometheus_files(
    settings: Settings,
    out_dir: Path,
    *,
    client_id: str = "prometheus",
    ingress: str | None = None,
    ray_sd: Path | None = None,
    rotate: bool = False,
) -> PrometheusFiles:
    """Create the metrics-only identity and write its secret and the scrape config.

    Args:
        out_dir: where ``aisys-prometheus.secret`` (0600) and ``prometheus.yml`` (0644) go;
            created 0700 if missing.
        ingress: base URL Prometheus reaches the Serve ingress at; None: the hub's host.
        ray_sd: the Ray file_sd list the config names; None: the live one in the data dir.
        rotate: replace an existing identity of that name (its old secret stops working at
            once; tokens it already has stay valid until they expire).

    Raises:
        IdentityExists: the identity exists and ``rotate`` is False.
        ConfigError: ``ingress`` is malformed.
    """
    url = ingress or default_ingress(settings)
    sd = ray_sd or ray_sd_file(settings)
    secret_path = out_dir / SECRET_FILE_NAME
    config_path = out_dir / CONFIG_FILE_NAME
    ca = (
        (settings.ray.tls_ca_file or settings.ray.tls_certfile) if url.startswith("https") else None
    )
    text = render_scrape_config(
        ingress=url, client_id=client_id, secret_file=secret_path, ray_sd=sd, ca_file=ca
    )
    agent = NewAgent(agent_id=client_id, scopes=[Scope.METRICS_READ])
    try:
        created = identity.create_agent(settings, agent)
    except IdentityExists:
        if not rotate:
            raise
        identity.forget_agent(settings, client_id)
        created = identity.create_agent(settings, agent)
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write_private(secret_path, created.client_secret, 0o600)
    _write_private(config_path, text, 0o644)
    return PrometheusFiles(client_id, secret_path, config_path, sd)
