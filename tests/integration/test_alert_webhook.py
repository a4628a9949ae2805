"""The hub's built-in webhook receiver against a real local HTTP server.

The server answers each POST with the next status of a script (503, 503, 200, ...), and can
hold a request until the test lets it go, so retries, giving up, refusals and the queue bound are
observed on the wire and in the exporter's counters. No Ray, no NATS: only sockets.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.registry import CollectorRegistry

from cluster.base.settings import AlertingSettings, AlertRuleSpec
from deployments.observability.alert_models import Notification
from deployments.observability.alert_store import AlertStore
from deployments.observability.alerts import AlertEngine
from deployments.observability.series import Sample
from deployments.observability.webhook import WebhookCollector, WebhookNotifier

pytestmark = pytest.mark.integration

EXTERNAL = "http://127.0.0.1:7000"


class ScriptedReceiver:
    """An HTTP server answering POSTs with scripted statuses (200 once the script is used up)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.attempts: list[dict[str, Any]] = []
        self.delivered: list[dict[str, Any]] = []
        self.arrivals = 0
        self.release = threading.Event()
        self.release.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.arrivals += 1
                receiver.release.wait(30)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.attempts.append(body)
                if status == 200:
                    receiver.delivered.append(body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://user:pw@127.0.0.1:{self._server.server_address[1]}/alerts?x=1"
        self.shown_url = f"http://127.0.0.1:{self._server.server_address[1]}/alerts?x=1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver_factory() -> Iterator[list[ScriptedReceiver]]:
    made: list[ScriptedReceiver] = []
    yield made
    for receiver in made:
        receiver.close()


def receiver(made: list[ScriptedReceiver], statuses: list[int]) -> ScriptedReceiver:
    server = ScriptedReceiver(statuses)
    made.append(server)
    return server


def notifications(tmp_path: Path, count: int = 1) -> list[Notification]:
    """Real notifications: an engine whose rule fires on ``count`` hosts at once."""
    rule = AlertRuleSpec(name="ItHook", metric="cpu", threshold=0.9, summary="hot")
    settings = AlertingSettings(rules=[rule], group_wait_s=0.0)
    engine = AlertEngine(settings, AlertStore(tmp_path / "alerts.db"), time.time())
    samples = [Sample("cpu", (("host", f"h{i}"),), 0.95) for i in range(count)]
    sent = engine.evaluate(samples, time.time())
    assert len(sent) == count
    return sent


async def until(predicate: Any, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout_s}s")


def settings(url: str, **extra: Any) -> AlertingSettings:
    return AlertingSettings(webhook_urls=[url], webhook_timeout_s=5.0, **extra)


def counters(notifier: WebhookNotifier, url: str) -> dict[str, float | None]:
    registry = CollectorRegistry()
    registry.register(WebhookCollector(notifier))
    value = registry.get_sample_value
    return {
        "sent": value("aisys_alert_webhook_sent_total", {"url": url}),
        "failed": value("aisys_alert_webhook_failed_attempts_total", {"url": url}),
        "gave_up": value("aisys_alert_webhook_dropped_total", {"url": url, "reason": "gave_up"}),
        "refused": value("aisys_alert_webhook_dropped_total", {"url": url, "reason": "refused"}),
        "full": value("aisys_alert_webhook_dropped_total", {"url": url, "reason": "queue_full"}),
        "queued": value("aisys_alert_webhook_queue_length", {"url": url}),
    }


def test_a_notification_is_retried_until_the_receiver_takes_it(
    receiver_factory: list[ScriptedReceiver], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = receiver(receiver_factory, [503, 503])
    notifier = WebhookNotifier(settings(server.url), EXTERNAL)

    async def main() -> None:
        notifier.start()
        try:
            notifier.enqueue(notifications(tmp_path))
            await until(lambda: server.delivered)
        finally:
            await notifier.close()

    with caplog.at_level(logging.WARNING, logger="deployments.observability.webhook"):
        asyncio.run(main())
    assert len(server.attempts) == 3
    (body,) = server.delivered
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "aisys"
    assert body["groupLabels"] == {"alertname": "ItHook", "host": "h0"}
    assert body["externalURL"] == EXTERNAL
    (alert,) = body["alerts"]
    assert alert["labels"] == {"alertname": "ItHook", "host": "h0", "severity": "warning"}
    assert alert["annotations"] == {"summary": "hot", "value": "0.95"}
    assert alert["status"] == "firing" and alert["endsAt"] is None
    assert alert["generatorURL"] == f"{EXTERNAL}/observability/alerts"
    assert counters(notifier, server.shown_url) == {
        "sent": 1,
        "failed": 2,
        "gave_up": 0,
        "refused": 0,
        "full": 0,
        "queued": 0,
    }
    failures = [r.getMessage() for r in caplog.records if "attempt" in r.getMessage()]
    assert len(failures) == 2 and all("HTTP 503" in m for m in failures)
    assert all("pw" not in r.getMessage() for r in caplog.records)  # credentials never logged


def test_a_receiver_that_keeps_failing_is_given_up_on_and_one_that_refuses_is_not_retried(
    receiver_factory: list[ScriptedReceiver], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    failing = receiver(receiver_factory, [500] * 10)
    refusing = receiver(receiver_factory, [400])
    hooks = AlertingSettings(
        webhook_urls=[failing.url, refusing.url], webhook_max_attempts=3, webhook_timeout_s=5.0
    )
    notifier = WebhookNotifier(hooks, EXTERNAL)

    async def main() -> None:
        notifier.start()
        try:
            notifier.enqueue(notifications(tmp_path))
            await until(lambda: counters(notifier, failing.shown_url)["gave_up"] == 1)
            await until(lambda: counters(notifier, refusing.shown_url)["refused"] == 1)
        finally:
            await notifier.close()

    with caplog.at_level(logging.WARNING, logger="deployments.observability.webhook"):
        asyncio.run(main())
    assert len(failing.attempts) == 3 and not failing.delivered
    assert counters(notifier, failing.shown_url)["failed"] == 3
    assert len(refusing.attempts) == 1 and not refusing.delivered
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("gave up" in m and "HTTP 500" in m for m in errors)
    assert any("refused" in m and "HTTP 400" in m for m in errors)


def test_the_queue_is_bounded_and_drops_the_oldest(
    receiver_factory: list[ScriptedReceiver], tmp_path: Path
) -> None:
    server = receiver(receiver_factory, [])
    server.release.clear()  # the first POST hangs until released
    notifier = WebhookNotifier(settings(server.url, webhook_queue_size=2), EXTERNAL)
    batch = notifications(tmp_path, count=5)

    async def main() -> None:
        notifier.start()
        try:
            notifier.enqueue(batch[:1])
            await until(lambda: server.arrivals == 1)
            assert counters(notifier, server.shown_url)["queued"] == 1  # in flight
            # The first is being sent; four more arrive for a queue of two.
            notifier.enqueue(batch[1:])
            assert counters(notifier, server.shown_url)["full"] == 2
            assert counters(notifier, server.shown_url)["queued"] == 3
            server.release.set()
            await until(lambda: len(server.delivered) == 3)
            await until(lambda: counters(notifier, server.shown_url)["queued"] == 0)
        finally:
            await notifier.close()

    asyncio.run(main())
    hosts = [body["groupLabels"]["host"] for body in server.delivered]
    assert hosts == ["h0", "h3", "h4"]  # h1 and h2, the oldest waiting, were dropped
