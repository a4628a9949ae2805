"""Legacy ZeroMQ gateway: answers the legacy agents on their old ports (see its issue).

Served by the ``legacy`` Serve application (:mod:`legacy_gateway.app`), one deployment per host
tag. Today: the error-bus bridge on port 7150 (:mod:`legacy_gateway.error_bridge`).
"""

__all__: list[str] = []
