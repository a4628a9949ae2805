"""SecurityGateway (``/security``): token grants, verification, revocation, identities, trust.

Stateful work goes to the security actor on this host (which holds the signing keys); token
verification here, as in every service, is local (:mod:`deployments.auth`).

No ``from __future__ import annotations`` here: FastAPI reads route annotations at runtime.
"""

from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from ray import serve
from ray.serve import Application

from cluster.errors import ClusterError
from deployments.auth import AuthArgs, Authenticator, auth_first, install_auth, require
from deployments.http import install_error_handlers
from deployments.security.models import (
    Claims,
    Grant,
    IdentityCreated,
    Jwks,
    LegacyIdentity,
    NewAgent,
    NewUser,
    Promotion,
    RevokeRequest,
    Scope,
    TokenPair,
    TrustOutcome,
    TrustReport,
    UserIdentity,
    VerifyResponse,
)

__all__ = ["RefreshRequest", "RevokeResponse", "SecurityAppArgs", "SecurityGateway", "build_app"]


class SecurityAppArgs(BaseModel):
    """Arguments of the ``security`` application."""

    model_config = ConfigDict(extra="forbid")

    auth: AuthArgs


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: SecretStr


class RevokeResponse(BaseModel):
    revoked: str
    applied_by: list[str] = Field(
        description="Replicas (app/deployment/replica) that enforce the revocation already."
    )
    pending: list[str] = Field(
        description="Live replicas that had not applied it when the wait ended; each rejects "
        "every token once its revocation view is older than security.revocation_max_age_s."
    )


def _source(request: Request) -> str:
    """The caller's address as the proxy saw it ("" when unknown)."""
    return request.client.host if request.client else ""


api = FastAPI(
    title="aisys SecurityGateway",
    description="JWT (EdDSA) for users and agents, revocation, and agent trust scores.",
    version="1",
)
install_error_handlers(api)
auth_first(api)  # every scoped route checks its token before the request is parsed


@serve.deployment
@serve.ingress(api)
class SecurityGateway:
    """Serve deployment of SecurityGateway."""

    def __init__(self, args: SecurityAppArgs) -> None:
        self._auth = Authenticator(args.auth)
        self._security = self._auth.security
        install_auth(api, self._auth)

    async def check_health(self) -> None:
        if not self._auth.follower.running:
            raise ClusterError("security: the key/revocation feed task has stopped")

    @api.post("/token", summary="Log in (password) or authenticate an agent (client credentials)")
    async def token(self, grant: Grant, request: Request) -> TokenPair:
        pair: TokenPair = await self._security.grant(grant, _source(request))
        return pair

    @api.post(
        "/refresh",
        summary="Trade a refresh token for a new token pair (single use; a reused one revokes "
        "every token of its login)",
    )
    async def refresh(self, body: RefreshRequest, request: Request) -> TokenPair:
        grant = Grant(grant_type="refresh_token", refresh_token=body.refresh_token)
        pair: TokenPair = await self._security.grant(grant, _source(request))
        return pair

    @api.post(
        "/revoke",
        summary="Revoke an access token (by jti) or a refresh token; returns once every "
        "replica enforces it, or names those that did not yet",
    )
    async def revoke(self, body: RevokeRequest) -> RevokeResponse:
        what, _, spread = await self._security.revoke_visible(body.token.get_secret_value())
        return RevokeResponse(revoked=what, applied_by=spread.applied, pending=spread.pending)

    @api.get("/verify", summary="Verify the bearer token and return its claims")
    async def verify(self, authorization: Annotated[str | None, Header()] = None) -> VerifyResponse:
        claims = await self._auth.authenticate(authorization)
        return VerifyResponse(claims=claims)

    @api.get("/.well-known/jwks.json", summary="Public signing keys (JWKS)")
    async def jwks(self) -> Jwks:
        feed = self._auth.follower.feed
        if not await self._auth.follower.wait_synced() or feed is None:
            raise ClusterError("security: signing keys not loaded yet; retry shortly")
        return feed.jwks

    @api.post("/users", summary="Create a user (admin)")
    async def create_user(
        self, user: NewUser, _: Annotated[Claims, require(Scope.ADMIN)]
    ) -> UserIdentity:
        created: UserIdentity = await self._security.create_user(user)
        return created

    @api.post("/agents", summary="Create an agent identity; its secret is shown once (admin)")
    async def create_agent(
        self, agent: NewAgent, _: Annotated[Claims, require(Scope.ADMIN)]
    ) -> IdentityCreated:
        created: IdentityCreated = await self._security.create_agent(agent)
        return created

    @api.get("/legacy-identities", summary="Identities the legacy `register` created (admin)")
    async def legacy_identities(
        self, _: Annotated[Claims, require(Scope.ADMIN)]
    ) -> list[LegacyIdentity]:
        found: list[LegacyIdentity] = await self._security.legacy_identities()
        return found

    @api.post(
        "/legacy-identities/{name}/promote",
        summary="Give a legacy identity roles, so its legacy login tokens carry their scopes "
        "from its next login; taking a scope away ([] takes all) revokes its tokens (admin)",
    )
    async def promote_legacy(
        self, name: str, body: Promotion, _: Annotated[Claims, require(Scope.ADMIN)]
    ) -> LegacyIdentity:
        promoted: LegacyIdentity = await self._security.promote_legacy(name, body.roles)
        return promoted

    @api.delete(
        "/legacy-identities/{name}",
        status_code=204,
        summary="Delete a legacy identity and revoke its tokens (admin)",
    )
    async def delete_legacy(self, name: str, _: Annotated[Claims, require(Scope.ADMIN)]) -> None:
        await self._security.delete_legacy(name)

    @api.get("/trust", summary="Trust scores of every agent with evidence")
    async def trust_scores(
        self, _: Annotated[Claims | None, require(Scope.READ)]
    ) -> dict[str, float]:
        scores: dict[str, float] = await self._security.scores()
        return scores

    @api.get("/trust/{agent}", summary="An agent's trust score and recent outcomes")
    async def trust(
        self,
        agent: str,
        _: Annotated[Claims | None, require(Scope.READ)],
        history: Annotated[int, Query(ge=0, le=1000)] = 20,
    ) -> TrustReport:
        report: TrustReport = await self._security.trust_report(agent, history)
        return report

    @api.post("/trust/{agent}/outcomes", summary="Record an interaction outcome (admin)")
    async def outcome(
        self, agent: str, outcome: TrustOutcome, _: Annotated[Claims, require(Scope.ADMIN)]
    ) -> TrustReport:
        report: TrustReport = await self._security.record_outcome(agent, outcome)
        return report


def build_app(args: dict[str, Any]) -> Application:
    """Serve application builder named by the ``security`` import path of the Serve config."""
    return SecurityGateway.bind(SecurityAppArgs.model_validate(args))  # type: ignore[attr-defined,no-any-return]
