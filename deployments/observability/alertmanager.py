"""Alerts POSTed to real Alertmanagers (API v2), the way Prometheus' notifier sends them.

Every hub round hands the alert engine's alerts to :meth:`AlertmanagerNotifier.update`, which
does no I/O, so a slow or absent Alertmanager never delays a round. An alert is queued:

- when it fires, and again every ``resend_delay_s`` while it fires, with
  ``endsAt = now + 4 × max(sample interval, resend delay)`` (Prometheus' rule): an Alertmanager
  that stops hearing from the hub resolves the alert by itself, and one that keeps hearing never
  does;
- when it resolves (``endsAt`` = its resolution time), and again every ``resend_delay_s`` while
  the engine still lists it, if it was sent as firing before.

An alert the hub's silences or inhibition rules mute is not sent if it has not been sent as
firing yet. One already sent keeps being resent while it fires, as Prometheus does (muting is the
receiving side's business): otherwise Alertmanager would resolve it by itself at ``endsAt``
while its condition still holds.

One background task per Alertmanager POSTs what is queued to ``<url>/api/v2/alerts``. A failed
POST (no answer within ``alertmanager_timeout_s``, a 5xx) is retried with exponential backoff;
the queue keeps only the latest state of each alert, so it stays bounded during an outage. A 400
means the payload itself is wrong, is logged as an error and not retried.

Example::

    notifier = AlertmanagerNotifier(settings.alerting, 5.0, "http://pc2:7000/observability/alerts")
    notifier.start()
    notifier.update(engine.alerts(), time.time())      # every round
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import UTC, datetime

import httpx
from pydantic import BaseModel, ConfigDict, Field

from cluster.base.aio import cancel_and_wait
from cluster.base.settings import AlertingSettings
from deployments.observability.alert_models import Alert, AlertState

__all__ = ["AlertmanagerNotifier", "PostableAlert"]

logger = logging.getLogger(__name__)

#: First wait before retrying a failed POST; it doubles up to MAX_BACKOFF_S.
INITIAL_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
#: Path of Alertmanager's alert-ingestion endpoint under its base URL.
API_PATH = "/api/v2/alerts"


class PostableAlert(BaseModel):
    """One element of Alertmanager's ``postableAlerts`` body (OpenAPI ``postableAlert``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime = Field(serialization_alias="startsAt")
    ends_at: datetime = Field(serialization_alias="endsAt")
    generator_url: str = Field(serialization_alias="generatorURL")


def _time(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


class AlertmanagerNotifier:
    """Queues alerts for every configured Alertmanager and POSTs them; see the module docstring.

    Args:
        settings: ``alertmanager_urls``, ``alertmanager_timeout_s`` and ``resend_delay_s``.
        eval_interval_s: the hub's round (``sample_interval_s``), for ``endsAt``.
        generator_url: where a person looks the alerts up (each alert's ``generatorURL``).
    """

    def __init__(
        self, settings: AlertingSettings, eval_interval_s: float, generator_url: str
    ) -> None:
        self._urls = list(settings.alertmanager_urls)
        self._timeout = settings.alertmanager_timeout_s
        self._resend = settings.resend_delay_s
        self._valid_for = 4 * max(eval_interval_s, settings.resend_delay_s)
        self._generator_url = generator_url
        self._sent: dict[str, tuple[AlertState, float]] = {}
        self._pending: dict[str, dict[str, PostableAlert]] = {url: {} for url in self._urls}
        self._wake = {url: asyncio.Event() for url in self._urls}
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None

    @property
    def running(self) -> bool:
        """False once a sender task has died (a bug; ``check_health`` reports it)."""
        return bool(self._tasks) and not any(task.done() for task in self._tasks)

    def start(self) -> None:
        """Start one sender per Alertmanager (needs a running event loop)."""
        self._client = httpx.AsyncClient(timeout=self._timeout)
        self._tasks = [
            asyncio.create_task(self._send_forever(url, self._client), name=f"alertmanager {url}")
            for url in self._urls
        ]

    def update(self, alerts: Iterable[Alert], now: float) -> list[PostableAlert]:
        """Queue the alerts that are due now for every Alertmanager; return them."""
        due: list[PostableAlert] = []
        listed: set[str] = set()
        for alert in alerts:
            listed.add(alert.fingerprint)
            if self._is_due(alert, now):
                self._sent[alert.fingerprint] = (alert.state, now)
                postable = self._postable(alert, now)
                due.append(postable)
                for url in self._urls:
                    self._pending[url][alert.fingerprint] = postable
        for fingerprint in set(self._sent) - listed:
            del self._sent[fingerprint]  # the engine forgot it (retention over, rule deleted)
        if due:
            for event in self._wake.values():
                event.set()
        return due

    async def close(self) -> None:
        await cancel_and_wait(self._tasks)
        if self._client is not None:
            await self._client.aclose()

    def _is_due(self, alert: Alert, now: float) -> bool:
        last = self._sent.get(alert.fingerprint)
        if alert.state == "pending":
            return False
        if alert.state == "firing" and (alert.silenced_by or alert.inhibited_by):
            if last is None or last[0] != "firing":
                return False  # muted before Alertmanager heard of it: keep it unheard of
        if alert.state == "resolved" and last is None:
            return False  # never sent as firing: nothing to resolve
        return last is None or last[0] != alert.state or now - last[1] >= self._resend

    def _postable(self, alert: Alert, now: float) -> PostableAlert:
        annotations = {"value": repr(alert.value)}
        if alert.summary:
            annotations["summary"] = alert.summary
        ends_at = now + self._valid_for
        if alert.state == "resolved" and alert.resolved_at is not None:
            ends_at = alert.resolved_at
        return PostableAlert(
            labels=dict(alert.labels),
            annotations=annotations,
            starts_at=_time(alert.fired_at if alert.fired_at is not None else alert.active_at),
            ends_at=_time(ends_at),
            generator_url=self._generator_url,
        )

    async def _send_forever(self, url: str, client: httpx.AsyncClient) -> None:
        backoff = INITIAL_BACKOFF_S
        while True:
            await self._wake[url].wait()
            self._wake[url].clear()
            batch, self._pending[url] = self._pending[url], {}
            try:
                await self._post(client, url, list(batch.values()))
            except httpx.HTTPError as exc:
                if backoff == INITIAL_BACKOFF_S:
                    logger.warning(
                        "Alertmanager %s did not take %d alerts: %s", url, len(batch), exc
                    )
                # Newer states queued meanwhile win over the ones being retried.
                self._pending[url] = {**batch, **self._pending[url]}
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                self._wake[url].set()
                continue
            if backoff != INITIAL_BACKOFF_S:
                logger.info("Alertmanager %s takes alerts again", url)
            backoff = INITIAL_BACKOFF_S

    async def _post(self, client: httpx.AsyncClient, url: str, alerts: list[PostableAlert]) -> None:
        body = [alert.model_dump(mode="json", by_alias=True) for alert in alerts]
        response = await client.post(url + API_PATH, json=body)
        if response.status_code == httpx.codes.BAD_REQUEST:
            logger.error("Alertmanager %s refused the alerts as malformed: %s", url, response.text)
            return
        response.raise_for_status()
