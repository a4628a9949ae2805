"""The ``LOGS`` JetStream stream and a publisher that reports how much of a batch was stored.

Lines go out in file order with ``publish_async`` (one connection, so the stream stores them in
that order) and their acks are awaited together; :meth:`LogStream.publish` returns how many
*leading* messages were acknowledged (one flag each: did the stream have it already), which is
exactly what the shipper may commit.

Example::

    stream = LogStream(nats_client(settings), settings.observability.logs)
    await stream.connect()
    acked = await stream.publish([(record.subject(), record.msg_id(), payload)])
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, PubAck, StorageType, StreamConfig, StreamInfo

from cluster.base.constants import LOGS_STREAM, LOGS_SUBJECTS
from cluster.base.errors import ClusterError, ConfigError
from cluster.base.nats_client import NatsClient, apply_stream_config
from cluster.base.settings import LogShippingSettings

__all__ = ["LogStream", "ensure_logs_stream"]

logger = logging.getLogger(__name__)

#: Bound of one connect attempt: nats-py's connect can keep retrying (nats-io/nats.py#645).
CONNECT_TIMEOUT_S = 10.0

# What NATS raises while it is down, slow or restarting: the batch is published again later.
_UNAVAILABLE = (nats.errors.Error, nats.js.errors.Error, TimeoutError, OSError)


def stream_config(settings: LogShippingSettings) -> StreamConfig:
    """The ``LOGS`` stream as ``settings`` describe it."""
    return StreamConfig(
        name=LOGS_STREAM,
        description="aisys log lines, logs.<host>.<source>",
        subjects=[LOGS_SUBJECTS],
        storage=StorageType.FILE,
        max_age=settings.max_age_s,
        max_bytes=settings.max_stream_mb * 1024 * 1024,
        discard=DiscardPolicy.OLD,
        duplicate_window=settings.duplicate_window_s,
    )


async def ensure_logs_stream(js: JetStreamContext, settings: LogShippingSettings) -> StreamInfo:
    """Create the ``LOGS`` stream, or bring an existing one to ``settings``; idempotent."""
    return await apply_stream_config(js, stream_config(settings))


class LogStream:
    """One NATS connection publishing to ``LOGS``; reconnects by itself once connected."""

    def __init__(self, broker: NatsClient, settings: LogShippingSettings) -> None:
        self._broker = broker
        self._settings = settings
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None

    @property
    def ready(self) -> bool:
        """Connected once and the stream set up; from then on the client reconnects by itself."""
        return self._js is not None

    @property
    def connected(self) -> bool:
        return self._js is not None and self._nc is not None and self._nc.is_connected

    async def connect(self) -> None:
        """Connect and set the stream up, within :data:`CONNECT_TIMEOUT_S`.

        Raises:
            ClusterError: NATS did not answer, or refused the credentials or the stream
                configuration, or this host has no NATS password file.
        """
        try:
            user, password = self._broker.credentials()
        except ConfigError as exc:
            raise ClusterError(f"logs: {exc}") from exc

        async def on_error(exc: Exception) -> None:
            logger.debug("NATS client error: %s", exc)

        nc = Client()
        try:
            # max_reconnect_attempts=-1 keeps the connection once made; the first connect is
            # bounded here and retried by the caller.
            await asyncio.wait_for(
                nc.connect(
                    servers=[self._broker.url],
                    user=user,
                    password=password,
                    connect_timeout=2,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    error_cb=on_error,
                ),
                CONNECT_TIMEOUT_S,
            )
            js = nc.jetstream(timeout=self._settings.ack_timeout_s)
            await ensure_logs_stream(js, self._settings)
        except _UNAVAILABLE as exc:
            await nc.close()
            raise ClusterError(
                f"logs: NATS at {self._broker.display_url}: {exc or type(exc).__name__}"
            ) from exc
        self._nc, self._js = nc, js

    async def reconfigure(self, settings: LogShippingSettings) -> None:
        """Apply new stream limits and ack timeout (on the next connect if not connected)."""
        self._settings = settings
        if self._nc is not None and self.connected:
            self._js = self._nc.jetstream(timeout=settings.ack_timeout_s)
            await ensure_logs_stream(self._js, settings)

    async def publish(self, items: Sequence[tuple[str, str, bytes]]) -> list[bool]:
        """Publish ``(subject, msg_id, payload)`` items in order; see the module docstring.

        Returns:
            One flag per leading acknowledged item: True when the stream had stored it before.

        Raises:
            ClusterError: not connected.
        """
        if self._js is None:
            raise ClusterError("logs: the shipper is not connected to NATS")
        futures: list[asyncio.Future[PubAck]] = []
        try:
            for subject, msg_id, payload in items:
                future = await self._js.publish_async(
                    subject, payload, headers={"Nats-Msg-Id": msg_id}
                )
                futures.append(future)
        except _UNAVAILABLE as exc:
            logger.warning("publishing log lines failed after %d: %s", len(futures), exc)
        if futures:
            _, pending = await asyncio.wait(futures, timeout=self._settings.ack_timeout_s)
            for future in pending:
                future.cancel()
        acked: list[bool] = []
        for future in futures:
            if future.cancelled() or future.exception() is not None:
                if not future.cancelled():
                    logger.warning("a log line was not stored: %s", future.exception())
                break
            acked.append(bool(future.result().duplicate))
        return acked

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.close()
        self._nc = self._js = None
