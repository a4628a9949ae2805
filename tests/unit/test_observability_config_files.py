"""The shipped Prometheus scrape config and Grafana dashboard name metrics the hub exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import CollectorRegistry
from ray._private import ray_constants

from cluster.base.errors import ConfigError
from cluster.base.settings import AlertingSettings, AnomalySettings
from cluster.ops.prometheus_setup import render_scrape_config
from deployments.observability.alert_store import AlertStore
from deployments.observability.alerts import AlertEngine
from deployments.observability.anomaly import AnomalyBank
from deployments.observability.collectors import register_collectors
from deployments.observability.state import HubState
from deployments.observability.webhook import WebhookCollector, WebhookNotifier
from tests.unit._observability_helpers import Clock

HERE = Path(__file__).resolve().parents[2] / "deployments" / "observability"


def _exported_names(tmp_path: Path) -> set[str]:
    registry = CollectorRegistry()
    clock = Clock()
    engine = AlertEngine(AlertingSettings(rules=[]), AlertStore(tmp_path / "a.db"), clock())
    register_collectors(registry, HubState(), AnomalyBank(AnomalySettings()), engine, clock)
    # Registered by the hub when alerting.webhook_urls is set.
    hooks = AlertingSettings(webhook_urls=["http://127.0.0.1:9/hook"])
    registry.register(WebhookCollector(WebhookNotifier(hooks, "http://127.0.0.1:7000")))
    names = set()
    for family in registry.collect():  # every family is yielded, even with no sample
        names.add(family.name)
        if isinstance(family, CounterMetricFamily):
            names.add(family.name + "_total")
    return names


def test_the_scrape_config_scrapes_the_hub_and_rays_file_sd_list() -> None:
    config = yaml.safe_load((HERE / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["aisys"]["metrics_path"] == "/observability/metrics"
    # A credential that renews itself: OAuth2 client credentials, never a static token.
    assert "authorization" not in jobs["aisys"]
    oauth2 = jobs["aisys"]["oauth2"]
    assert oauth2["token_url"].endswith("/security/token")
    assert oauth2["scopes"] == ["metrics:read"] and "client_secret_file" in oauth2
    (files,) = [sd["files"] for sd in jobs["ray"]["file_sd_configs"]]
    expected = f"/session_latest/{ray_constants.PROMETHEUS_SERVICE_DISCOVERY_FILE}"
    assert files and all(path.endswith(expected) for path in files)


def test_the_rendered_scrape_config_points_at_this_system(tmp_path: Path) -> None:
    text = render_scrape_config(
        ingress="https://10.0.0.5:7443",
        client_id="prom",
        secret_file=tmp_path / "s",
        ray_sd=tmp_path / "sd.json",
        ca_file=tmp_path / "ca.pem",
    )
    jobs = {job["job_name"]: job for job in yaml.safe_load(text)["scrape_configs"]}
    hub = jobs["aisys"]
    assert hub["scheme"] == "https" and hub["static_configs"][0]["targets"] == ["10.0.0.5:7443"]
    assert hub["oauth2"] == {
        "client_id": "prom",
        "client_secret_file": str(tmp_path / "s"),
        "token_url": "https://10.0.0.5:7443/security/token",
        "scopes": ["metrics:read"],
    }
    assert hub["tls_config"] == {"ca_file": str(tmp_path / "ca.pem")}
    assert jobs["ray"]["file_sd_configs"] == [{"files": [str(tmp_path / "sd.json")]}]
    with pytest.raises(ConfigError, match="http://HOST:PORT"):
        render_scrape_config(
            ingress="10.0.0.5:7000", client_id="p", secret_file=tmp_path, ray_sd=tmp_path
        )


def test_every_dashboard_metric_is_exported(tmp_path: Path) -> None:
    dashboard = json.loads((HERE / "grafana-dashboard.json").read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\baisys_[a-z_]+", target["expr"])
    }
    exported = _exported_names(tmp_path)
    assert used, "the dashboard queries no aisys metric"
    assert used <= exported, used - exported
    # Every exported family has a panel, apart from the few only alerts and scrapes need.
    families = {n for n in exported if not n.endswith("_total")}
    assert families - used - {"aisys_gpu_devices", "aisys_gpu_memory_total_bytes"} <= {
        "aisys_host_info",  # an info metric, for joins on host
        "aisys_host_network_received_bytes",
        "aisys_host_network_sent_bytes",
        "aisys_host_sample_age_seconds",
        "aisys_host_memory_available_bytes",
        "aisys_host_memory_total_bytes",
        "aisys_host_disk_free_bytes",
        "aisys_gpu_memory_used_bytes",
        "aisys_gpu_memory_free_bytes",
        "aisys_agent_health_state",
        "aisys_lease_over_use",  # the LeaseOverUse alert's series (the ratio has a panel)
        "aisys_anomaly_flagged",
        "aisys_perf_actions",
        "aisys_perf_action_duration_max_seconds",
        # Counters, queried by their _total samples.
        "aisys_log_lines_shipped",
        "aisys_log_lines_duplicate",
        "aisys_log_bytes_shipped",
        "aisys_alert_webhook_sent",
        "aisys_alert_webhook_failed_attempts",
        "aisys_alert_webhook_dropped",
    }
