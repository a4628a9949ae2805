"""CoreOrchestrator (``/core``): agent registry, digital twin, request coordinator, supervision
and the unified gRPC ingress. ``app`` is the Serve deployment; the other modules are its
plain-Python cores (``coordinator``, ``twin``, ``breaker``, ``priority``, ``supervision``), the
ZeroMQ client (``dispatch``), the Serve-facing helpers (``sampler``, ``serve_control``,
``metrics``, ``grpc_ingress``) and the generated ``proto`` package."""

__all__: list[str] = []
