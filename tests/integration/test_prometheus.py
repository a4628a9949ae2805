"""A real Prometheus (Debian's ``prometheus``) scraping aisys with the shipped config.

The session system issues hour-long tokens, so this module starts a system of its own through
the CLI (``aisys up`` in a subprocess, random ports, its own data dir) whose access tokens live
30 s with no leeway. ``aisys prometheus-credentials`` writes the metrics-only identity's secret
and the scrape config; the test only shortens the scrape interval. Prometheus then has to fetch
a new token at ``/security/token`` (OAuth2 client credentials) every lifetime: the aisys target
staying ``up`` across more than two lifetimes, with fresh samples, shows that it does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from cluster.base.settings import SecuritySettings, Settings
from tests.conftest import free_port, short_tmp_dir, wait_for_condition
from tests.integration.conftest import ADMIN_PASSWORD, login, make_settings, settings_file
from tests.integration.test_alert_webhook import ScriptedReceiver

pytestmark = pytest.mark.integration

#: The shortest access-token lifetime the settings allow.
TTL_S = 30
SCRAPE_INTERVAL_S = 2


def aisys(
    settings: Settings, *args: str, timeout_s: float = 600
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AISYS_")}
    env["AISYS_CONFIG"] = str(settings_file(settings, settings.data_dir))
    executable = str(Path(sys.executable).with_name("aisys"))
    return subprocess.run(
        [executable, *args], env=env, capture_output=True, text=True, timeout=timeout_s
    )


@pytest.fixture(scope="module")
def hook() -> Iterator[ScriptedReceiver]:
    """The system's alert webhook: a local HTTP server that fails its first POST."""
    receiver = ScriptedReceiver([503])
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def short_ttl_system(hook: ScriptedReceiver) -> Iterator[Settings]:
    """A whole system of its own whose access tokens expire after TTL_S, with no leeway, and
    whose hub POSTs its alert notifications to ``hook``."""
    security = SecuritySettings(
        admin_password=SecretStr(ADMIN_PASSWORD), access_ttl_s=TTL_S, leeway_s=0
    )
    settings = make_settings(security=security)
    observability = settings.observability
    alerting = observability.alerting.model_copy(update={"webhook_urls": [hook.url]})
    settings = settings.model_copy(
        update={"observability": observability.model_copy(update={"alerting": alerting})}
    )
    try:
        started = aisys(settings, "up", "--no-check")
        assert started.returncode == 0, started.stdout + started.stderr
        yield settings
    finally:
        aisys(settings, "down", timeout_s=300)
        shutil.rmtree(settings.data_dir, ignore_errors=True)


class Prometheus:
    """One ``prometheus`` process on a random port with its own storage."""

    def __init__(self, directory: Path, config: Path) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError(
                "Prometheus is not installed: `make system-deps` (apt-get install prometheus) "
                "provides it"
            )
        self.url = f"http://127.0.0.1:{free_port()}"
        self._args = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'tsdb'}",
            f"--web.listen-address={self.url.removeprefix('http://')}",
        ]
        self.log = directory / "prometheus.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                self._args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

        def ready() -> bool:
            assert self._proc is not None and self._proc.poll() is None, self.log.read_text()
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200

        wait_for_condition(ready, timeout_s=60, interval_s=0.2)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def targets(self, job: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/targets", params={"state": "active"}, timeout=5)
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()["data"]["activeTargets"]
        return [t for t in found if t["labels"].get("job") == job]

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result


@pytest.fixture(scope="module")
def credentials(short_ttl_system: Settings) -> Iterator[Path]:
    """``aisys prometheus-credentials`` output: the secret and the scrape config."""
    out = short_tmp_dir("aisys-prom-")
    try:
        result = aisys(short_ttl_system, "prometheus-credentials", "--out-dir", str(out))
        assert result.returncode == 0, result.stdout + result.stderr
        assert (out / "aisys-prometheus.secret").stat().st_mode & 0o777 == 0o600
        yield out
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_the_metrics_identity_reads_metrics_and_nothing_else(
    short_ttl_system: Settings, credentials: Path
) -> None:
    base = f"http://127.0.0.1:{short_ttl_system.ports.http}"
    secret = (credentials / "aisys-prometheus.secret").read_text()
    form = {"grant_type": "client_credentials", "scope": "metrics:read"}
    token = httpx.post(f"{base}/security/token", data=form, auth=("prometheus", secret), timeout=30)
    assert token.status_code == 200, token.text
    body = token.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == TTL_S
    assert body["scope"] == "metrics:read" and "refresh_token" not in body
    assert token.headers["cache-control"] == "no-store"
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    metrics = httpx.get(f"{base}/observability/metrics", headers=bearer, timeout=30)
    assert metrics.status_code == 200 and "aisys_host_up" in metrics.text
    for path in ("/observability/alerts", "/core/queue", "/resources/leases"):
        assert httpx.get(base + path, headers=bearer, timeout=30).status_code == 403, path

    wrong = httpx.post(f"{base}/security/token", data=form, auth=("prometheus", "x"), timeout=30)
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert wrong.headers["www-authenticate"].startswith("Basic")
    grant = {"grant_type": "authorization_code", "code": "x"}
    unsupported = httpx.post(f"{base}/security/token", data=grant, timeout=30)
    assert unsupported.status_code == 400
    assert unsupported.json()["error"] == "unsupported_grant_type"
    # The JSON form keeps working, refresh token and all.
    login = httpx.post(
        f"{base}/security/token",
        json={"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD},
        timeout=30,
    )
    assert login.status_code == 200 and login.json()["refresh_token"]


def test_prometheus_keeps_scraping_through_token_expiry(
    short_ttl_system: Settings, credentials: Path
) -> None:
    config_path = credentials / "prometheus.yml"
    config = yaml.safe_load(config_path.read_text())
    hub = next(job for job in config["scrape_configs"] if job["job_name"] == "aisys")
    assert hub["static_configs"][0]["targets"] == [f"127.0.0.1:{short_ttl_system.ports.http}"]
    # The one change to the written config: scrape often, so many scrapes fall in the test.
    config["global"]["scrape_interval"] = f"{SCRAPE_INTERVAL_S}s"
    config_path.write_text(yaml.safe_dump(config))
    prometheus = Prometheus(credentials, config_path)
    prometheus.start()
    try:
        _watch_scrapes(prometheus)
    finally:
        prometheus.stop()


def _watch_scrapes(prometheus: Prometheus) -> None:
    def hub_up() -> bool:
        (target,) = prometheus.targets("aisys")
        return bool(target["health"] == "up")

    wait_for_condition(hub_up, timeout_s=60, interval_s=0.5)
    started = time.time()
    problems: list[str] = []

    def scraped_past_two_lifetimes() -> bool:
        (target,) = prometheus.targets("aisys")
        if target["health"] != "up":
            problems.append(f"{target['health']}: {target['lastError']}")
        return time.time() - started > 2 * TTL_S + 3 * SCRAPE_INTERVAL_S

    wait_for_condition(scraped_past_two_lifetimes, timeout_s=4 * TTL_S, interval_s=1.0)
    assert not problems, problems
    window = int(time.time() - started)
    (low,) = prometheus.query(f'min_over_time(up{{job="aisys"}}[{window}s])')
    assert float(low["value"][1]) == 1.0
    (count,) = prometheus.query(f'count_over_time(up{{job="aisys"}}[{window}s])')
    assert float(count["value"][1]) >= window / SCRAPE_INTERVAL_S / 2
    # Samples of the hub's own series keep arriving: the newest is from the last few scrapes.
    fresh = prometheus.query('timestamp(aisys_host_up{job="aisys"})')
    assert fresh and all(time.time() - float(s["value"][1]) < 5 * SCRAPE_INTERVAL_S for s in fresh)
    # Ray's own metrics agent, found through the file_sd list the Ray head keeps.
    wait_for_condition(
        lambda: any(t["health"] == "up" for t in prometheus.targets("ray")),
        timeout_s=60,
        interval_s=1.0,
    )


def test_the_identity_is_replaced_only_when_asked(
    short_ttl_system: Settings, credentials: Path
) -> None:
    out = short_tmp_dir("aisys-prom-rotate-")
    try:
        again = aisys(short_ttl_system, "prometheus-credentials", "--out-dir", str(out))
        assert again.returncode == 2 and "already exists" in again.stderr, again.stderr
        assert not (out / "aisys-prometheus.secret").exists()
        rotated = aisys(
            short_ttl_system, "prometheus-credentials", "--out-dir", str(out), "--rotate"
        )
        assert rotated.returncode == 0, rotated.stderr
        old = (credentials / "aisys-prometheus.secret").read_text()
        new = (out / "aisys-prometheus.secret").read_text()
        assert new != old
        base = f"http://127.0.0.1:{short_ttl_system.ports.http}/security/token"
        form = {"grant_type": "client_credentials"}
        for secret, status in ((old, 401), (new, 200)):
            answer = httpx.post(base, data=form, auth=("prometheus", secret), timeout=30)
            assert answer.status_code == status, answer.text
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_the_hubs_alerts_reach_the_webhook_despite_a_failed_first_post(
    short_ttl_system: Settings, hook: ScriptedReceiver
) -> None:
    base = f"http://127.0.0.1:{short_ttl_system.ports.http}"
    admin = {"Authorization": f"Bearer {login(base, 'admin', ADMIN_PASSWORD)}"}
    rule = {"name": "ItWebhook", "metric": "aisys_host_up", "op": ">=", "threshold": 0}
    put = httpx.put(f"{base}/observability/rules/ItWebhook", json=rule, headers=admin, timeout=30)
    assert put.status_code == 200, put.text
    try:

        def delivered() -> list[dict[str, Any]]:
            return [
                a
                for body in list(hook.delivered)
                for a in body["alerts"]
                if a["labels"]["alertname"] == "ItWebhook"
            ]

        wait_for_condition(delivered, timeout_s=60, interval_s=0.5)
        assert {a["labels"]["host"] for a in delivered()} <= {"mainpc", "pc2"}
        assert len(hook.attempts) > len(hook.delivered)  # the first POST got a 503
        metrics = httpx.get(f"{base}/observability/metrics", headers=admin, timeout=30).text
        url = {"url": hook.shown_url}
        families = {
            s.name: s.value
            for f in text_string_to_metric_families(metrics)
            for s in f.samples
            if s.labels == url
        }
        assert families["aisys_alert_webhook_sent_total"] >= 1
        assert families["aisys_alert_webhook_failed_attempts_total"] >= 1
    finally:
        httpx.delete(f"{base}/observability/rules/ItWebhook", headers=admin, timeout=30)
