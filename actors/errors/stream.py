"""The ``ERRORS`` JetStream stream's configuration: what every publisher makes sure of first.

The publisher (:mod:`actors.errors.publisher`), the ErrorBus and backups all bring the
stream to the settings with :func:`ensure_stream` before using it; idempotent.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, StorageType, StreamConfig, StreamInfo

from cluster.base.constants import ERRORS_STREAM, ERRORS_SUBJECTS
from cluster.base.nats_client import apply_stream_config
from cluster.base.settings import ErrorBusSettings

__all__ = ["ensure_stream", "stream_config"]


def stream_config(settings: ErrorBusSettings) -> StreamConfig:
    """The ``ERRORS`` stream as ``settings`` describe it."""
    return StreamConfig(
        name=ERRORS_STREAM,
        description="aisys error events, errors.<severity>.<agent>",
        subjects=[ERRORS_SUBJECTS],
        storage=StorageType.FILE,
        max_age=settings.max_age_s,
        max_bytes=settings.max_stream_mb * 1024 * 1024,
        # A stored event carries a little more than the JSON limit (headers, subject).
        max_msg_size=settings.max_event_bytes + 4096,
        discard=DiscardPolicy.OLD,
        duplicate_window=settings.duplicate_window_s,
    )


async def ensure_stream(js: JetStreamContext, settings: ErrorBusSettings) -> StreamInfo:
    """Create the ``ERRORS`` stream, or bring an existing one to ``settings``; idempotent."""
    return await apply_stream_config(js, stream_config(settings))
