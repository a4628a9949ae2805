"""Token enforcement shared by every service: verify locally, follow revocations and keys.

Each replica keeps a :class:`TokenVerifier` fed by the security actor's change feed (public
keys and revoked token ids), so checking a token costs no Ray call and a revocation reaches
every service within a second. Routes declare what they need::

    @api.post("/agents", dependencies=[require(Scope.REGISTRY_WRITE)])

No ``from __future__ import annotations``: FastAPI reads the dependency's annotations at runtime.
"""

from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict

from actors.follower import FeedFollower
from actors.security.actor import get_or_create_security
from cluster.errors import ClusterError, PermissionDenied, TokenRejected
from cluster.settings import SecuritySettings
from deployments.security.models import Claims, Scope, SecurityFeed
from deployments.security.tokens import TokenVerifier

__all__ = ["AuthArgs", "Authenticator", "install_auth", "require"]

_STATE_KEY = "aisys_authenticator"


class AuthArgs(BaseModel):
    """What a replica needs to verify tokens (part of every application's args)."""

    model_config = ConfigDict(extra="forbid")

    settings: SecuritySettings
    data_dir: str
    host_tag: str


class _SecurityFollower(FeedFollower[SecurityFeed]):
    def __init__(self, actor: Any, verifier: TokenVerifier) -> None:
        super().__init__(actor)
        self._verifier = verifier
        self._version = 0
        self.feed: SecurityFeed | None = None

    @property
    def version(self) -> int:
        return self._version

    def apply(self, feed: SecurityFeed) -> None:
        self._verifier.update(feed.jwks.keys, feed.revoked)
        self._version = feed.version
        self.feed = feed


class Authenticator:
    """Verifies bearer tokens for one replica."""

    def __init__(self, args: AuthArgs) -> None:
        self.actor = get_or_create_security(args.settings, Path(args.data_dir), args.host_tag)
        self.open_reads = args.settings.open_reads
        self._verifier = TokenVerifier(
            args.settings.issuer, args.settings.audience, args.settings.leeway_s
        )
        self.follower = _SecurityFollower(self.actor, self._verifier)
        self.follower.start()

    async def authenticate(self, authorization: str | None) -> Claims:
        """Return the claims of the ``Authorization: Bearer`` token.

        Raises:
            TokenRejected: no bearer token, or it does not verify.
            ClusterError: the security state has not been loaded yet.
        """
        if not authorization:
            raise TokenRejected("no bearer token (send 'Authorization: Bearer <token>')")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenRejected("the Authorization header must be 'Bearer <token>'")
        if not await self.follower.wait_synced():
            raise ClusterError("security: signing keys not loaded yet; retry shortly")
        return self._verifier.verify(token.strip())

    async def wait_version(self, version: int) -> bool:
        return await self.follower.wait_for(version)


def install_auth(api: FastAPI, authenticator: Authenticator) -> None:
    """Make ``authenticator`` the one :func:`require` uses for ``api``'s routes."""
    setattr(api.state, _STATE_KEY, authenticator)


def require(scope: Scope) -> Any:
    """A FastAPI dependency: 401 without a valid token, 403 without ``scope``."""

    async def check(request: Request) -> Claims | None:
        authenticator: Authenticator = getattr(request.app.state, _STATE_KEY)
        if scope is Scope.READ and authenticator.open_reads:
            return None
        claims = await authenticator.authenticate(request.headers.get("authorization"))
        if not claims.allows(scope):
            raise PermissionDenied(claims.sub, scope.value)
        return claims

    return Depends(check)
