"""The legacy gateway's Serve application (``legacy``): one deployment per host tag.

Today it holds the ErrorBus host's deployment, :class:`LegacyGatewayPc2`, which runs the error
bus bridge on port 7150 (:mod:`legacy_gateway.error_bridge`). The rest of the gateway (the other
legacy ports) is added here as further deployments, one per host tag.

No ``from __future__ import annotations`` here: FastAPI reads the route annotations at runtime.
"""

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict
from ray import serve
from ray.serve import Application

from cluster.errors import ClusterError
from cluster.settings import ErrorBusSettings
from deployments._auth import AuthArgs, Authenticator, install_auth, require
from deployments._http import install_error_handlers
from deployments.errors.core import SPOOL_FILE
from deployments.errors.publisher import ErrorPublisher
from deployments.errors.spool import Spool
from deployments.security.models import Scope
from legacy_gateway.error_bridge import BridgeStats, ErrorBridge

__all__ = ["LegacyAppArgs", "LegacyGatewayPc2", "build_app"]


class LegacyAppArgs(BaseModel):
    """Arguments of the ``legacy`` application (the ``args`` block of its Serve config)."""

    model_config = ConfigDict(extra="forbid")

    errors: ErrorBusSettings
    nats_url: str
    errors_dir: str
    auth: AuthArgs


api = FastAPI(
    title="aisys legacy gateway",
    description="ZeroMQ servers on the legacy ports, translated to the aisys services.",
    version="1",
)
install_error_handlers(api)


@serve.deployment
@serve.ingress(api)
class LegacyGatewayPc2:
    """The legacy gateway on the ErrorBus host: the error-bus bridge on port 7150."""

    def __init__(self, args: LegacyAppArgs) -> None:
        install_auth(api, Authenticator(args.auth))
        errors = args.errors
        # The bridge shares the host's spool file with ErrorBus: whichever is connected drains it.
        spool = Spool(Path(args.errors_dir) / SPOOL_FILE, errors.spool_max_mb * 1024 * 1024)
        self._publisher = ErrorPublisher(args.nats_url, errors, spool, create_stream=True)
        self._publisher.start()
        self._bridge = ErrorBridge(self._publisher, errors.bridge, errors.max_event_bytes)
        self._bridge.start()

    async def check_health(self) -> None:
        if not self._publisher.running or not self._bridge.running:
            raise ClusterError("legacy: the error-bus bridge has stopped")

    @api.get(
        "/error-bridge",
        summary="Counters of the error-bus bridge on port 7150",
        dependencies=[require(Scope.READ)],
    )
    async def error_bridge(self) -> BridgeStats:
        return self._bridge.stats

    async def __del__(self) -> None:
        await self._bridge.close()
        await self._publisher.close()


def build_app(args: dict[str, Any]) -> Application:
    """Serve application builder named by the ``legacy`` import path of the Serve config.

    Raises:
        pydantic.ValidationError: ``args`` is not a valid :class:`LegacyAppArgs`.
    """
    return LegacyGatewayPc2.bind(LegacyAppArgs.model_validate(args))  # type: ignore[attr-defined,no-any-return]
