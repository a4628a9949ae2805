"""The built-in webhook receiver: alert notifications POSTed as JSON, for a house without an
Alertmanager.

Each notification the hub's routing sends (a group's firing and resolved alerts, after
``group_wait_s``/``group_interval_s``/``repeat_interval_s``) is POSTed to every URL of
``alerting.webhook_urls`` in Alertmanager's webhook format (``version`` "4"), so a receiver
written for Alertmanager works unchanged.

Per URL, one background task sends the queued messages in order. A POST that times out, cannot
connect or gets a 5xx, 408 or 429 is retried with exponential backoff (``INITIAL_BACKOFF_S``
doubling up to ``MAX_BACKOFF_S``), at most ``webhook_max_attempts`` times; another 4xx means the
receiver refuses the message and it is not retried. The queue holds at most
``webhook_queue_size`` messages: when full, the oldest is dropped. Every failed attempt and every
drop is logged and counted (``aisys_alert_webhook_*``), so a receiver that is down is visible in
the exporter.

Example::

    hooks = WebhookNotifier(settings.alerting, "http://pc2:7000")
    hooks.start()
    hooks.enqueue(notifications)          # from the hub's notify; never blocks
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import httpx
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field

from cluster.base.settings import AlertingSettings
from deployments.observability.alert_models import Alert, Notification

__all__ = [
    "WebhookAlert",
    "WebhookCollector",
    "WebhookMessage",
    "WebhookNotifier",
    "message_of",
    "redacted",
]

logger = logging.getLogger(__name__)

INITIAL_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
#: The ``receiver`` field of every message.
RECEIVER = "aisys"
#: HTTP statuses that mean "try again later"; other 4xx are the receiver's final word.
_RETRYABLE_4XX = frozenset({408, 425, 429})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class WebhookAlert(_Model):
    """One alert of a message (Alertmanager's webhook ``alerts[]`` element)."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime = Field(serialization_alias="startsAt")
    ends_at: datetime | None = Field(serialization_alias="endsAt")
    generator_url: str = Field(serialization_alias="generatorURL")
    fingerprint: str


class WebhookMessage(_Model):
    """The JSON body POSTed for one notification (Alertmanager's webhook payload, version 4)."""

    version: Literal["4"] = "4"
    group_key: str = Field(serialization_alias="groupKey")
    truncated_alerts: int = Field(default=0, serialization_alias="truncatedAlerts")
    status: Literal["firing", "resolved"]
    receiver: str = RECEIVER
    group_labels: dict[str, str] = Field(serialization_alias="groupLabels")
    common_labels: dict[str, str] = Field(serialization_alias="commonLabels")
    common_annotations: dict[str, str] = Field(serialization_alias="commonAnnotations")
    external_url: str = Field(serialization_alias="externalURL")
    alerts: list[WebhookAlert]


def _time(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first, *rest = maps
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in rest)}


def _webhook_alert(alert: Alert, generator_url: str) -> WebhookAlert:
    annotations = {"value": repr(alert.value)}
    if alert.summary:
        annotations["summary"] = alert.summary
    resolved = alert.state == "resolved"
    return WebhookAlert(
        status="resolved" if resolved else "firing",
        labels=dict(alert.labels),
        annotations=annotations,
        starts_at=_time(alert.fired_at if alert.fired_at is not None else alert.active_at),
        ends_at=_time(alert.resolved_at) if resolved and alert.resolved_at else None,
        generator_url=generator_url,
        fingerprint=alert.fingerprint,
    )


def message_of(notification: Notification, external_url: str) -> WebhookMessage:
    """The webhook body of one notification."""
    alerts = [
        _webhook_alert(a, f"{external_url}/observability/alerts") for a in notification.alerts
    ]
    group = sorted(notification.group_labels.items())
    key = hashlib.sha256(repr(group).encode()).hexdigest()[:16]
    return WebhookMessage(
        group_key=f"{{}}:{key}",
        status=notification.status,
        group_labels=notification.group_labels,
        common_labels=_common([a.labels for a in alerts]),
        common_annotations=_common([a.annotations for a in alerts]),
        external_url=external_url,
        alerts=alerts,
    )


def redacted(url: str) -> str:
    """``url`` without a user or password (the form it is logged and labelled in)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


@dataclass
class _Target:
    url: str
    queue: deque[WebhookMessage]
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    sent: int = 0
    failed_attempts: int = 0
    dropped: dict[str, int] = field(
        default_factory=lambda: {"queue_full": 0, "gave_up": 0, "refused": 0}
    )
    last_error: str = ""
    in_flight: int = 0


class WebhookNotifier:
    """Queues notifications for every webhook URL and POSTs them; see the module docstring.

    Args:
        settings: ``webhook_urls``, ``webhook_timeout_s``, ``webhook_max_attempts`` and
            ``webhook_queue_size``.
        external_url: base URL of the Serve ingress (the messages' ``externalURL``).
    """

    def __init__(self, settings: AlertingSettings, external_url: str) -> None:
        self._settings = settings
        self._external_url = external_url
        self._targets = [
            _Target(url, deque(maxlen=settings.webhook_queue_size)) for url in settings.webhook_urls
        ]
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None

    @property
    def running(self) -> bool:
        """False once a sender task has died (a bug; ``check_health`` reports it)."""
        return bool(self._tasks) and not any(task.done() for task in self._tasks)

    def start(self) -> None:
        """Start one sender per URL (needs a running event loop)."""
        self._client = httpx.AsyncClient(timeout=self._settings.webhook_timeout_s)
        self._tasks = [
            asyncio.create_task(self._send_forever(t, self._client), name=f"webhook {t.url}")
            for t in self._targets
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def enqueue(self, notifications: Iterable[Notification]) -> None:
        """Queue a message per notification for every URL; drops the oldest waiting one when
        full (the one being sent is not in the queue)."""
        messages = [message_of(n, self._external_url) for n in notifications]
        for target in self._targets:
            for message in messages:
                if len(target.queue) == target.queue.maxlen:
                    target.dropped["queue_full"] += 1
                    logger.error(
                        "webhook %s: queue full (%d), dropped the oldest alert notification",
                        redacted(target.url),
                        target.queue.maxlen,
                    )
                target.queue.append(message)
            if messages:
                target.wake.set()

    def stats(self) -> Iterator[tuple[str, int, int, int, dict[str, int]]]:
        """(redacted url, queued, sent, failed attempts, dropped by reason) per URL."""
        for t in self._targets:
            waiting = len(t.queue) + t.in_flight
            yield redacted(t.url), waiting, t.sent, t.failed_attempts, dict(t.dropped)

    async def _send_forever(self, target: _Target, client: httpx.AsyncClient) -> None:
        while True:
            await target.wake.wait()
            target.wake.clear()
            while target.queue:
                message = target.queue.popleft()
                target.in_flight = 1
                try:
                    outcome = await self._deliver(target, client, message)
                finally:
                    target.in_flight = 0
                if outcome != "sent":
                    target.dropped[outcome] += 1

    async def _deliver(
        self, target: _Target, client: httpx.AsyncClient, message: WebhookMessage
    ) -> Literal["sent", "gave_up", "refused"]:
        body = message.model_dump(mode="json", by_alias=True)
        backoff = INITIAL_BACKOFF_S
        name = redacted(target.url)
        for attempt in range(1, self._settings.webhook_max_attempts + 1):
            try:
                response = await client.post(target.url, json=body)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    target.sent += 1
                    return "sent"
                problem = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code not in _RETRYABLE_4XX:
                    target.failed_attempts += 1
                    target.last_error = problem
                    logger.error("webhook %s refused an alert notification: %s", name, problem)
                    return "refused"
            target.failed_attempts += 1
            target.last_error = problem
            logger.warning("webhook %s: attempt %d failed: %s", name, attempt, problem)
            if attempt < self._settings.webhook_max_attempts:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
        logger.error(
            "webhook %s: gave up on an alert notification after %d attempts (%s)",
            name,
            self._settings.webhook_max_attempts,
            target.last_error,
        )
        return "gave_up"


class WebhookCollector(Collector):
    """Deliveries, failed attempts, drops and queue length per webhook URL."""

    def __init__(self, notifier: WebhookNotifier) -> None:
        self._notifier = notifier

    def collect(self) -> Iterator[Metric]:
        sent = CounterMetricFamily(
            "aisys_alert_webhook_sent", "Alert notifications a webhook took.", labels=["url"]
        )
        failed = CounterMetricFamily(
            "aisys_alert_webhook_failed_attempts",
            "POSTs to a webhook that failed (each retry counts).",
            labels=["url"],
        )
        dropped = CounterMetricFamily(
            "aisys_alert_webhook_dropped",
            "Alert notifications never delivered: queue_full, gave_up (retries spent) or "
            "refused (a 4xx).",
            labels=["url", "reason"],
        )
        queued = GaugeMetricFamily(
            "aisys_alert_webhook_queue_length", "Notifications waiting to be sent.", labels=["url"]
        )
        for url, waiting, n_sent, n_failed, by_reason in self._notifier.stats():
            sent.add_metric([url], n_sent)
            failed.add_metric([url], n_failed)
            for reason, count in sorted(by_reason.items()):
                dropped.add_metric([url, reason], count)
            queued.add_metric([url], waiting)
        yield from (sent, failed, dropped, queued)
