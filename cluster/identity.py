"""Identity commands of the CLI (`aisys user`, `aisys token`), run against the security actor."""

from __future__ import annotations

from typing import Any, cast

import ray

from cluster.constants import RAY_NAMESPACE, SECURITY_ACTOR_NAME
from cluster.errors import ClusterError
from cluster.settings import Settings
from cluster.system import connect
from deployments.security.models import (
    Grant,
    IdentityCreated,
    NewAgent,
    NewUser,
    TokenPair,
    UserIdentity,
)

__all__ = ["create_agent", "create_user", "ensure_admin", "issue_token"]


def _actor(settings: Settings) -> Any:
    connect(settings)
    try:
        return ray.get_actor(SECURITY_ACTOR_NAME, namespace=RAY_NAMESPACE)
    except ValueError as exc:
        raise ClusterError(
            "the SecurityGateway is not deployed; run `aisys up` or `aisys deploy` first"
        ) from exc


def ensure_admin(settings: Settings) -> str | None:
    """Create the first admin unless users exist; return its generated password, once."""
    configured = settings.security.admin_password
    password = configured.get_secret_value() if configured else None
    return cast(str | None, ray.get(_actor(settings).ensure_admin.remote(password)))


def create_user(settings: Settings, user: NewUser) -> UserIdentity:
    return cast(UserIdentity, ray.get(_actor(settings).create_user.remote(user)))


def create_agent(settings: Settings, agent: NewAgent) -> IdentityCreated:
    return cast(IdentityCreated, ray.get(_actor(settings).create_agent.remote(agent)))


def issue_token(settings: Settings, grant: Grant) -> TokenPair:
    return cast(TokenPair, ray.get(_actor(settings).grant.remote(grant)))
