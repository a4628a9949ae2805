"""ErrorBus (``/errors``): error events on NATS JetStream, their query index and the client.

Services and new agents publish with :class:`ErrorPublisher`; the legacy ZeroMQ error bus is
bridged by :mod:`legacy_gateway.error_bridge`.
"""

from typing import TYPE_CHECKING

from cluster.base.lazy import lazy_exports

if TYPE_CHECKING:
    from actors.errors.models import ErrorEvent, PublishResult, Severity
    from actors.errors.publisher import ErrorPublisher
    from actors.errors.spool import Spool
    from deployments.errors.store import DurableConsumer

__all__ = [
    "DurableConsumer",
    "ErrorEvent",
    "ErrorPublisher",
    "PublishResult",
    "Severity",
    "Spool",
]
# Imported on first use: importing one light module of the package (its models, say)
# does not load the others' NATS clients and service cores.
__getattr__ = lazy_exports(
    __name__,
    {
        "ErrorEvent": "actors.errors.models",
        "PublishResult": "actors.errors.models",
        "Severity": "actors.errors.models",
        "ErrorPublisher": "actors.errors.publisher",
        "Spool": "actors.errors.spool",
        "DurableConsumer": "deployments.errors.store",
    },
)
