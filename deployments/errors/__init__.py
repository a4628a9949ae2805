"""ErrorBus (``/errors``): error events on NATS JetStream, their query index and the client.

Services and new agents publish with :class:`ErrorPublisher`; the legacy ZeroMQ error bus is
bridged by :mod:`legacy_gateway.error_bridge`.
"""

from actors.errors.models import ErrorEvent, PublishResult, Severity
from actors.errors.publisher import ErrorPublisher
from actors.errors.spool import Spool
from deployments.errors.store import DurableConsumer

__all__ = ["DurableConsumer", "ErrorEvent", "ErrorPublisher", "PublishResult", "Severity", "Spool"]
