"""The no-op application behind aisys's token check: what one verification costs a request.

Same body and replica options as :mod:`bench._noop`, but its route needs the ``read`` scope,
verified by the same :mod:`deployments.auth` dependency every aisys route uses.

No ``from __future__ import annotations``: FastAPI reads the route annotations at runtime.
"""

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict
from ray import serve
from ray.serve import Application

from actors.security.models import Scope
from bench._noop import NOOP_BODY
from deployments.auth import AuthArgs, Authenticator, auth_first, install_auth, require

__all__ = ["Guarded", "GuardedArgs", "build_app"]

api = FastAPI(title="aisys bench guarded no-op")
auth_first(api)


class GuardedArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    auth: AuthArgs


@serve.deployment
@serve.ingress(api)
class Guarded:
    """Answers :data:`bench._noop.NOOP_BODY` to requests carrying a token with ``read``."""

    def __init__(self, args: GuardedArgs) -> None:
        install_auth(api, Authenticator(args.auth))

    @api.get("/", dependencies=[require(Scope.READ)])
    async def record(self) -> dict[str, Any]:
        return NOOP_BODY


def build_app(args: dict[str, Any]) -> Application:
    """Serve application builder named by ``bench._guarded:build_app``."""
    return Guarded.bind(GuardedArgs.model_validate(args))  # type: ignore[attr-defined,no-any-return]
