"""SecurityGateway (``/security``): token grants, verification, revocation, identities, trust.

Stateful work goes to the security actor on this host (which holds the signing keys); token
verification here, as in every service, is local (:mod:`deployments.auth`).

No ``from __future__ import annotations`` here: FastAPI reads route annotations at runtime.
"""

from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from ray import serve
from ray.exceptions import RayTaskError
from ray.serve import Application

from actors.security.models import (
    AccessToken,
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
from cluster.base.errors import ClusterError, SecurityError
from deployments.auth import AuthArgs, Authenticator, auth_first, install_auth, require
from deployments.http import install_error_handlers
from deployments.security.oauth import (
    FORM_CONTENT_TYPE,
    OAuthError,
    OAuthErrorBody,
    oauth_error_of,
    parse_token_form,
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


_TOKEN_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": Grant.model_json_schema()},
            FORM_CONTENT_TYPE: {
                "schema": {
                    **Grant.model_json_schema(),
                    "description": "RFC 6749 token request; client credentials may come as "
                    "HTTP Basic instead of client_id/client_secret.",
                }
            },
        },
    }
}


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

    @api.post(
        "/token",
        summary="Log in (password) or authenticate an agent (client credentials); JSON, or a "
        "standard OAuth2 form request (its client-credentials answer has no refresh token)",
        response_model=TokenPair | AccessToken,
        responses={400: {"model": OAuthErrorBody}, 401: {"model": OAuthErrorBody}},
        openapi_extra=_TOKEN_REQUEST_BODY,
    )
    async def token(self, request: Request) -> Response:
        body = await request.body()
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == FORM_CONTENT_TYPE:
            return await self._oauth_token(body, request)
        try:
            grant = Grant.model_validate_json(body)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
            ) from exc
        pair: TokenPair = await self._security.grant(grant, _source(request))
        return JSONResponse(pair.model_dump(mode="json"))

    async def _oauth_token(self, body: bytes, request: Request) -> Response:
        """RFC 6749 token endpoint: form in, JSON out, OAuth2 error bodies."""
        try:
            grant = parse_token_form(body, request.headers.get("authorization"))
            try:
                if grant.grant_type == "client_credentials":
                    token: AccessToken = await self._security.client_token(grant, _source(request))
                else:
                    token = await self._security.grant(grant, _source(request))
            except RayTaskError as exc:
                cause = exc.cause
                mapped = (
                    oauth_error_of(cause, grant.grant_type)
                    if isinstance(cause, SecurityError)
                    else None
                )
                if mapped is None:
                    raise
                raise mapped from exc
        except OAuthError as exc:
            return JSONResponse(exc.body.model_dump(), exc.status, headers=exc.headers)
        no_store = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        return JSONResponse(token.model_dump(mode="json"), headers=no_store)

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
