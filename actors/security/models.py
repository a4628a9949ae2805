"""Pydantic models of the SecurityGateway: grants, tokens, claims, identities, trust."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

__all__ = [
    "AccessToken",
    "AgentIdentity",
    "Claims",
    "Grant",
    "IdentityCreated",
    "ImportedAggregate",
    "ImportedOutcome",
    "Jwks",
    "LegacyIdentity",
    "LegacySession",
    "NewLegacyIdentity",
    "Promotion",
    "NewAgent",
    "NewUser",
    "RevokeRequest",
    "Role",
    "Scope",
    "SecurityFeed",
    "TokenPair",
    "TrustOutcome",
    "TrustReport",
    "UserIdentity",
    "VerifyResponse",
    "WRITE_SCOPES",
    "scopes_of_roles",
]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")


class Scope(StrEnum):
    """What a token allows. ``admin`` implies every other scope, ``read`` implies
    ``metrics:read`` (the Prometheus exporter and nothing else)."""

    READ = "read"
    METRICS_READ = "metrics:read"
    REGISTRY_WRITE = "registry:write"
    REQUESTS_SUBMIT = "requests:submit"
    RESOURCES_LEASE = "resources:lease"
    ERRORS_PUBLISH = "errors:publish"
    ALERTS_WRITE = "alerts:write"
    ADMIN = "admin"


WRITE_SCOPES = frozenset(s for s in Scope if s not in (Scope.READ, Scope.METRICS_READ))


class Role(StrEnum):
    """User roles and the scopes they grant."""

    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"


def scopes_of_roles(roles: list[Role]) -> list[Scope]:
    scopes: set[Scope] = set()
    for role in roles:
        if role is Role.ADMIN:
            scopes |= set(Scope)
        elif role is Role.OPERATOR:
            scopes |= set(Scope) - {Scope.ADMIN}
        else:
            scopes.add(Scope.READ)
    return sorted(scopes)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(
            f"name {value!r} must be 1-128 characters: letters, digits and _ . : @ -, starting "
            "with a letter or digit"
        )
    return value


class NewUser(_Model):
    name: str
    password: SecretStr = Field(min_length=12, description="At least 12 characters.")
    roles: list[Role] = Field(default_factory=lambda: [Role.VIEWER], min_length=1)

    @field_validator("name")
    @classmethod
    def name_is_plain(cls, value: str) -> str:
        return _check_name(value)


class NewAgent(_Model):
    agent_id: str
    scopes: list[Scope] = Field(default_factory=lambda: [Scope.READ], min_length=1)

    @field_validator("agent_id")
    @classmethod
    def agent_id_is_plain(cls, value: str) -> str:
        return _check_name(value)


class NewLegacyIdentity(_Model):
    """What the legacy AuthenticationAgent's ``register`` creates: a legacy-port identity.

    The legacy agent took any password; here NIST SP 800-63B's minimum of 8 characters holds
    (aisys HTTP users need 12).
    """

    name: str
    password: SecretStr = Field(min_length=8, max_length=1024, description="8+ characters.")

    @field_validator("name")
    @classmethod
    def name_is_plain(cls, value: str) -> str:
        return _check_name(value)


class LegacyIdentity(_Model):
    """A legacy-port identity: no HTTP/gRPC scope until an admin gives it roles."""

    name: str
    roles: list[Role] = Field(description="Empty: the identity's tokens carry no scope.")
    created_at: float


class LegacySession(_Model):
    """A legacy ``login``'s access token (no refresh token: the legacy protocol has none)."""

    token: str
    expires_at: int = Field(description="Seconds since the epoch.")
    scope: str


class Promotion(_Model):
    """``POST /security/legacy-identities/{name}/promote`` body; ``[]`` takes every role away."""

    roles: list[Role]


class UserIdentity(_Model):
    name: str
    roles: list[Role]
    created_at: float


class AgentIdentity(_Model):
    agent_id: str
    scopes: list[Scope]
    created_at: float


class IdentityCreated(_Model):
    """Returned once when an agent identity is created: the secret is never shown again."""

    agent_id: str
    client_secret: str
    scopes: list[Scope]


class Grant(_Model):
    """``POST /security/token`` body (OAuth2-style grants)."""

    grant_type: Literal["password", "client_credentials", "refresh_token"]
    username: str | None = Field(default=None, max_length=128)
    password: SecretStr | None = Field(default=None, max_length=1024)
    client_id: str | None = Field(default=None, max_length=128)
    client_secret: SecretStr | None = Field(default=None, max_length=1024)
    refresh_token: SecretStr | None = Field(default=None, max_length=1024)
    scope: str | None = Field(
        default=None, max_length=512, description="Space-separated subset of allowed scopes."
    )


class AccessToken(_Model):
    """An OAuth2 access token response (RFC 6749 section 5.1) without a refresh token: what a
    form-encoded client-credentials request gets (section 4.4.3)."""

    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    scope: str
    note: str = ""


class TokenPair(AccessToken):
    refresh_token: str


class RevokeRequest(_Model):
    token: SecretStr = Field(max_length=8192, description="An access or a refresh token.")


class Claims(_Model):
    """The verified claims of an access token."""

    sub: str
    iss: str
    aud: str
    exp: int
    iat: int
    nbf: int
    jti: str
    scope: str
    kind: Literal["user", "agent", "legacy"]

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset(self.scope.split())

    def allows(self, scope: Scope) -> bool:
        held = self.scopes
        if scope is Scope.METRICS_READ and Scope.READ.value in held:
            return True
        return Scope.ADMIN.value in held or scope.value in held


class VerifyResponse(_Model):
    valid: Literal[True] = True
    claims: Claims


class Jwks(_Model):
    keys: list[dict[str, str]]


class SecurityFeed(_Model):
    """What verifiers follow: the public keys and every revoked, unexpired token id."""

    version: int
    jwks: Jwks
    revoked: dict[str, int] = Field(description="jti -> its exp (dropped once expired)")


class TrustOutcome(_Model):
    """One observed interaction with an agent."""

    kind: Literal["interaction", "error_reported", "failed_auth"] = "interaction"
    success: bool = True
    latency_s: float = Field(default=0.0, ge=0, le=3600)


class ImportedOutcome(_Model):
    """A legacy AgentTrustScorer ``performance_logs`` row, folded in at its own time."""

    key: str = Field(min_length=1, max_length=128, description="Unique per legacy row.")
    agent: str = Field(min_length=1, max_length=128)
    at: float
    outcome: TrustOutcome


class ImportedAggregate(_Model):
    """A legacy ``model_scores`` row without log rows: its counts, as evidence at last_updated."""

    key: str = Field(min_length=1, max_length=128)
    agent: str = Field(min_length=1, max_length=128)
    at: float
    successes: int = Field(ge=0)
    failures: int = Field(ge=0)


class TrustReport(_Model):
    agent: str
    score: float
    evidence: float = Field(description="Decayed number of observations behind the score.")
    history: list[dict[str, float | str | bool]]
