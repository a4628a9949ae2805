"""Names shared by every part of aisys: namespaces, actor names, application names.

Kept in one module so a rename cannot leave a reader behind (as Serve's ``_private/constants``).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "APP_CORE",
    "APP_ERRORS",
    "APP_LEGACY",
    "APP_OBSERVABILITY",
    "APP_RESOURCES",
    "APP_ROUTE_PREFIXES",
    "CORE_GRPC_SERVICER",
    "ERRORS_INDEX_DURABLE",
    "ERRORS_STREAM",
    "ERRORS_SUBJECT_PREFIX",
    "ERRORS_SUBJECTS",
    "LOGS_STREAM",
    "LOGS_SUBJECT_PREFIX",
    "LOGS_SUBJECTS",
    "RAY_NAMESPACE",
    "REGISTRY_ACTOR_NAME",
    "RESOURCES_ACTOR_NAME",
    "SECURITY_ACTOR_NAME",
    "APP_SECURITY",
    "host_probe_actor_name",
    "log_shipper_actor_name",
    "SERVE_NAMESPACE",
]

#: Ray namespace of every aisys actor and driver.
RAY_NAMESPACE: Final = "aisys"
#: The namespace Ray Serve puts its controller and replicas in.
SERVE_NAMESPACE: Final = "serve"

#: Named detached actor holding the agent registry.
REGISTRY_ACTOR_NAME: Final = "aisys.registry"
#: Named detached actor holding identities, signing keys, revocations and trust scores.
SECURITY_ACTOR_NAME: Final = "aisys.security"
#: Named detached actor holding the ResourceScheduler's lease ledger and queue.
RESOURCES_ACTOR_NAME: Final = "aisys.resources"

#: Serve application names (the keys of ``serve status``) and their route prefixes.
APP_CORE: Final = "core"
APP_ERRORS: Final = "errors"
#: The legacy ZeroMQ gateway: one deployment per host tag.
APP_LEGACY: Final = "legacy"
APP_OBSERVABILITY: Final = "observability"
APP_RESOURCES: Final = "resources"
APP_SECURITY: Final = "security"
APP_ROUTE_PREFIXES: Final[dict[str, str]] = {
    APP_CORE: "/core",
    APP_ERRORS: "/errors",
    APP_LEGACY: "/legacy",
    APP_OBSERVABILITY: "/observability",
    APP_RESOURCES: "/resources",
    APP_SECURITY: "/security",
}

#: ``add_..._to_server`` of CoreOrchestrator's gRPC service, for Serve's gRPC proxy.
CORE_GRPC_SERVICER: Final = (
    "deployments.core.proto.aisys_core_pb2_grpc.add_CoreOrchestratorServicer_to_server"
)

#: JetStream stream of ErrorBus and its subjects, ``errors.<severity>.<agent>``.
ERRORS_STREAM: Final = "ERRORS"
ERRORS_SUBJECT_PREFIX: Final = "errors"
ERRORS_SUBJECTS: Final = "errors.*.*"
#: Durable pull consumer that feeds ErrorBus's query index.
ERRORS_INDEX_DURABLE: Final = "errors-index"

#: JetStream stream of shipped log lines and its subjects, ``logs.<host>.<source>``.
LOGS_STREAM: Final = "LOGS"
LOGS_SUBJECT_PREFIX: Final = "logs"
LOGS_SUBJECTS: Final = "logs.>"


def host_probe_actor_name(tag: str) -> str:
    """Name of the per-host probe actor (GPU, CPU, memory readings) of host tag ``tag``."""
    return f"aisys.host_probe.{tag}"


def log_shipper_actor_name(tag: str) -> str:
    """Name of the per-host log shipper actor of host tag ``tag``."""
    return f"aisys.log_shipper.{tag}"
