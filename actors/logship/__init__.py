"""Log shipping: tail each host's log files, classify the lines, ship them to the ``LOGS`` stream.

Plain-Python parts (``tail``, ``classify``, ``store``, ``shipper``) with the per-host Ray actor in
``actor``; records and counters in ``models``.
"""

from typing import TYPE_CHECKING

from cluster.base.lazy import lazy_exports

if TYPE_CHECKING:
    from actors.logship.classify import LineClassifier
    from actors.logship.models import LogRecord, ShipperStats, SourceStats
    from actors.logship.publish import LogStream
    from actors.logship.shipper import LogShipper
    from actors.logship.store import PositionStore
    from actors.logship.tail import FileKey, Line, Position, SourceTailer

__all__ = [
    "FileKey",
    "Line",
    "LineClassifier",
    "LogRecord",
    "LogShipper",
    "LogStream",
    "Position",
    "PositionStore",
    "ShipperStats",
    "SourceStats",
    "SourceTailer",
]
# Imported on first use: importing one light module of the package (its models, say)
# does not load the others' NATS clients and service cores.
__getattr__ = lazy_exports(
    __name__,
    {
        "LineClassifier": "actors.logship.classify",
        "LogRecord": "actors.logship.models",
        "ShipperStats": "actors.logship.models",
        "SourceStats": "actors.logship.models",
        "LogStream": "actors.logship.publish",
        "LogShipper": "actors.logship.shipper",
        "PositionStore": "actors.logship.store",
        "FileKey": "actors.logship.tail",
        "Line": "actors.logship.tail",
        "Position": "actors.logship.tail",
        "SourceTailer": "actors.logship.tail",
    },
)
