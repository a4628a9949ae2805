"""Legacy ZeroMQ gateway: answers the legacy agents on their old ports (issue 8).

Served by the ``legacy`` Serve application (:mod:`legacy_gateway.app`), one deployment per host
tag. Modules:

* :mod:`legacy_gateway._codec` reads request frames of the three legacy dialects and writes
  replies as JSON;
* :mod:`legacy_gateway.server` is the asyncio ROUTER server of one port (one reply per request,
  always, within ``legacy_gateway.reply_timeout_s``);
* :mod:`legacy_gateway.registry_port` translates ServiceRegistry (7100, 8100) and
  SystemDigitalTwin (7120) to the agent registry;
* :mod:`legacy_gateway.coordinator_port` translates RequestCoordinator (26002) to
  CoreOrchestrator's request coordinator;
* :mod:`legacy_gateway.delegate` forwards a service's frames verbatim to its legacy agent
  (delegate mode);
* :mod:`legacy_gateway.gateway` binds the legacy ports of one host;
* :mod:`legacy_gateway.migrate_config` rewrites a legacy ``startup_config.yaml``
  (``aisys migrate-config``);
* :mod:`legacy_gateway.error_bridge` bridges the legacy error bus on port 7150 to ErrorBus.
"""

__all__: list[str] = []
