"""Generated gRPC/protobuf modules of CoreOrchestrator's ingress (see ``aisys_core.proto``)."""

__all__: list[str] = []
