"""Identity commands of the CLI (`aisys user`, `aisys token`), run against the security actor."""

from __future__ import annotations

import time
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
    TrustReport,
    UserIdentity,
)

__all__ = ["create_agent", "create_user", "ensure_admin", "forget_agent", "issue_token"]


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


def forget_agent(settings: Settings, agent_id: str, trust_settle_s: float = 0.0) -> None:
    """Remove an agent's identity, refresh tokens and trust record.

    Args:
        trust_settle_s: wait up to this long for a trust outcome already on its way (the
            coordinator reports outcomes without waiting), so none lands after the removal.
    """
    actor = _actor(settings)
    deadline = time.monotonic() + trust_settle_s
    while time.monotonic() < deadline:
        report: TrustReport = ray.get(actor.trust_report.remote(agent_id, 0), timeout=10)
        if report.evidence > 0:
            break
        time.sleep(0.05)
    ray.get(actor.forget_agent.remote(agent_id), timeout=30)
