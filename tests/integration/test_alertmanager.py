"""The hub's alerts POSTed to a real Alertmanager (Debian's ``prometheus-alertmanager``).

Alertmanager runs on random ports with its own storage and routes every alert to a webhook
served by the test, so what Alertmanager *did* with the alerts is observed, not only what it was
sent: the alert shows up active with our labels, its ``endsAt`` moves forward with each resend,
and the webhook gets a firing and then a resolved notification whose ``endsAt`` is the moment
the hub resolved the alert.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from cluster.base.settings import AlertingSettings, AlertRuleSpec
from deployments.observability.alert_store import AlertStore
from deployments.observability.alertmanager import AlertmanagerNotifier
from deployments.observability.alerts import AlertEngine
from deployments.observability.series import Sample
from tests.conftest import free_port, wait_for_condition

pytestmark = pytest.mark.integration

GENERATOR = "http://127.0.0.1:7000/observability/alerts"


class Webhook:
    """An HTTP server on a random port recording every Alertmanager webhook body."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers["Content-Length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                return None

        self.received = received
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def statuses(self, alertname: str) -> list[tuple[str, str]]:
        """(status, endsAt) of every notified alert named ``alertname``, in arrival order."""
        return [
            (alert["status"], alert["endsAt"])
            for body in list(self.received)
            for alert in body["alerts"]
            if alert["labels"].get("alertname") == alertname
        ]


class Alertmanager:
    """One ``alertmanager`` process on a random port, clustering off, storage of its own."""

    def __init__(self, directory: Path, webhook_url: str) -> None:
        binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        if binary is None:
            raise RuntimeError(
                "Alertmanager is not installed: `make system-deps` (apt-get install "
                "prometheus-alertmanager) provides it"
            )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = directory / "alertmanager.yml"
        config.write_text(
            "route:\n"
            "  receiver: hook\n"
            "  group_by: [alertname]\n"
            "  group_wait: 100ms\n"
            "  group_interval: 500ms\n"
            "  repeat_interval: 1h\n"
            "receivers:\n"
            "  - name: hook\n"
            "    webhook_configs:\n"
            f"      - url: {webhook_url}\n"
            "        send_resolved: true\n"
        )
        self._args = [
            binary,
            f"--config.file={config}",
            f"--storage.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
        ]
        self._log = directory / "alertmanager.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(
                self._args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

        def ready() -> bool:
            assert self._proc is not None and self._proc.poll() is None, self._log.read_text()
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200

        wait_for_condition(ready, timeout_s=30, interval_s=0.1)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def alerts(self, alertname: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v2/alerts", timeout=5)
        response.raise_for_status()
        return [a for a in response.json() if a["labels"].get("alertname") == alertname]


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture
def alertmanager(tmp_path: Path, webhook: Webhook) -> Iterator[Alertmanager]:
    """A configured, not yet started Alertmanager; stopped after the test."""
    manager = Alertmanager(tmp_path, webhook.url)
    yield manager
    manager.stop()


class Hub:
    """The hub's alerting part on the real clock: an engine, the notifier, a round loop."""

    def __init__(self, name: str, url: str, tmp_path: Path) -> None:
        rule = AlertRuleSpec(name=name, metric="cpu", threshold=0.9, summary="integration")
        self.settings = AlertingSettings(
            rules=[rule], alertmanager_urls=[url], resend_delay_s=1.0, alertmanager_timeout_s=2.0
        )
        self.engine = AlertEngine(self.settings, AlertStore(tmp_path / "alerts.db"), time.time())
        self.notifier = AlertmanagerNotifier(self.settings, 0.2, GENERATOR)
        self.cpu = 0.95

    async def rounds(self) -> None:
        while True:
            now = time.time()
            self.engine.evaluate([Sample("cpu", (("host", "pc2"),), self.cpu)], now)
            self.notifier.update(self.engine.alerts(), now)
            await asyncio.sleep(0.2)


async def until(predicate: Any, timeout_s: float = 30) -> Any:
    """Poll a blocking check (run in a thread) until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = await asyncio.to_thread(predicate)
        if result:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout_s}s")


def test_an_alert_arrives_firing_is_kept_alive_and_resolves(
    alertmanager: Alertmanager, webhook: Webhook, tmp_path: Path
) -> None:
    alertmanager.start()
    hub = Hub("ItAmFlow", alertmanager.url, tmp_path)

    async def main() -> None:
        hub.notifier.start()
        loop = asyncio.create_task(hub.rounds())
        try:
            (first,) = await until(lambda: alertmanager.alerts("ItAmFlow"))
            assert first["status"]["state"] == "active"
            assert first["labels"] == {
                "alertname": "ItAmFlow",
                "host": "pc2",
                "severity": "warning",
            }
            assert first["annotations"] == {"summary": "integration", "value": "0.95"}
            assert first["generatorURL"] == GENERATOR

            def extended() -> bool:
                (now,) = alertmanager.alerts("ItAmFlow")
                return bool(now["endsAt"] > first["endsAt"])

            await until(extended)  # resent before it could expire
            await until(lambda: "firing" in [s for s, _ in webhook.statuses("ItAmFlow")])

            hub.cpu = 0.1
            resolved = await until(
                lambda: [s for s in webhook.statuses("ItAmFlow") if s[0] == "resolved"]
            )
            (alert,) = [a for a in hub.engine.alerts() if a.rule == "ItAmFlow"]
            assert alert.state == "resolved" and alert.resolved_at is not None
            # Resolved by the hub's POST (endsAt = when the hub resolved it), not by expiry.
            ends_at = resolved[0][1]
            assert abs(datetime.fromisoformat(ends_at).timestamp() - alert.resolved_at) < 0.01
            assert await asyncio.to_thread(alertmanager.alerts, "ItAmFlow") == []
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
            await hub.notifier.close()

    asyncio.run(main())


def test_alerts_queued_while_alertmanager_is_down_arrive_once_it_is_up(
    alertmanager: Alertmanager, tmp_path: Path
) -> None:
    hub = Hub("ItAmRetry", alertmanager.url, tmp_path)

    async def main() -> None:
        hub.notifier.start()
        loop = asyncio.create_task(hub.rounds())
        try:
            await until(lambda: hub.engine.alerts())  # firing and queued, but nobody listens
            assert hub.notifier.running
            await asyncio.to_thread(alertmanager.start)
            (alert,) = await until(lambda: alertmanager.alerts("ItAmRetry"))
            assert alert["status"]["state"] == "active"
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
            await hub.notifier.close()

    asyncio.run(main())
