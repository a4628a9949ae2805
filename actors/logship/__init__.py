"""Log shipping: tail each host's log files, classify the lines, ship them to the ``LOGS`` stream.

Plain-Python parts (``tail``, ``classify``, ``store``, ``shipper``) with the per-host Ray actor in
``actor``; records and counters in ``models``.
"""

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
