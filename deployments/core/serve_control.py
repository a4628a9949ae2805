"""What CoreOrchestrator asks of Serve itself: instance details, redeploying one application,
and sending a TaskDefinition to a deployment that is a dispatch target.

These are the only Ray calls of the coordinator and twin outside the registry; they go to the
Serve controller actor, so a replica never blocks its event loop on ``ray.get``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import ray
from pydantic import BaseModel, ConfigDict, ValidationError
from ray import serve
from ray.serve._private.constants import SERVE_CONTROLLER_NAME
from ray.serve.schema import ServeDeploySchema

from cluster.base.constants import SERVE_NAMESPACE
from cluster.base.errors import ClusterError, DispatchFailed, ServiceNotFound
from deployments.core.coordinator import DeploymentTarget
from deployments.core.models import AgentResponse, TaskDefinition

__all__ = [
    "RESTART_ENV_VAR",
    "RestartReport",
    "redeploy_app",
    "send_to_deployment",
    "serve_details",
]

#: Set in an application's runtime_env to a new value to make Serve roll its replicas.
RESTART_ENV_VAR = "AISYS_RESTARTED_AT"


class RestartReport(BaseModel):
    """Answer of ``POST /core/services/{app}/restart``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app: str
    requested_at: float
    detail: str


def _controller() -> Any:
    return ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)


async def serve_details() -> dict[str, Any]:
    """Serve's instance details (applications, deployments, replicas, deployed configs)."""
    details: dict[str, Any] = await _controller().get_serve_instance_details.remote()
    return details


async def redeploy_app(app: str, clock: Any = time.time) -> RestartReport:
    """Redeploy one application with its deployed config, so Serve replaces its replicas.

    The deployed config of every application is applied again unchanged, except for one
    environment variable of ``app``'s runtime_env, which changes the application's version.

    Raises:
        ServiceNotFound: no application is called ``app``.
        ClusterError: the application was not deployed from a config (so cannot be redeployed).
    """
    details = await serve_details()
    apps: dict[str, Any] = details.get("applications") or {}
    if app not in apps:
        raise ServiceNotFound(app, sorted(apps))
    configs = []
    for name, info in apps.items():
        config = info.get("deployed_app_config")
        if config is None:
            raise ClusterError(f"core: application '{name}' was not deployed from a config")
        configs.append(config)
    requested_at = clock()
    for config in configs:
        if config["name"] == app:
            runtime_env = dict(config.get("runtime_env") or {})
            env_vars = dict(runtime_env.get("env_vars") or {})
            env_vars[RESTART_ENV_VAR] = f"{requested_at:.6f}"
            runtime_env["env_vars"] = env_vars
            config["runtime_env"] = runtime_env
    schema = ServeDeploySchema.model_validate(
        {
            "proxy_location": details.get("proxy_location") or "EveryNode",
            "http_options": _known(details.get("http_options"), ("host", "port")),
            "grpc_options": _known(
                details.get("grpc_options"), ("port", "grpc_servicer_functions")
            ),
            "applications": configs,
        }
    )
    await _controller().apply_config.remote(schema)
    return RestartReport(
        app=app,
        requested_at=requested_at,
        detail=f"application '{app}' is being redeployed; its replicas are replaced one by one",
    )


def _known(options: dict[str, Any] | None, keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in (options or {}).items() if k in keys}


async def send_to_deployment(
    target: DeploymentTarget, task: TaskDefinition, timeout_s: float
) -> AgentResponse:
    """Call ``target.method`` of a Serve deployment with the TaskDefinition as JSON data.

    Raises:
        DispatchFailed: the call failed, timed out, or returned no valid AgentResponse.
    """
    handle = serve.get_deployment_handle(target.deployment, app_name=target.app)
    call = handle.options(method_name=target.method).remote(task.model_dump(mode="json"))
    try:
        reply = await asyncio.wait_for(call, timeout_s)
    except TimeoutError:
        call.cancel()  # type: ignore[no-untyped-call]
        raise DispatchFailed(target.downstream, f"no reply within {timeout_s:g}s") from None
    except ray.exceptions.RayError as exc:
        raise DispatchFailed(target.downstream, f"call failed: {exc}") from exc
    try:
        return AgentResponse.model_validate(reply)
    except ValidationError as exc:
        raise DispatchFailed(target.downstream, f"reply is no AgentResponse: {exc}") from exc
