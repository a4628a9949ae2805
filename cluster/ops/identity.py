"""Identity commands of the CLI (`aisys user`, `aisys token`), run against the security actor."""

from __future__ import annotations

import time

from actors.security.client import SecurityClient
from actors.security.models import (
    Grant,
    IdentityCreated,
    NewAgent,
    NewUser,
    TokenPair,
    UserIdentity,
)
from cluster.base.errors import ClusterError
from cluster.base.settings import Settings
from cluster.ops.system import connect

__all__ = ["create_agent", "create_user", "ensure_admin", "forget_agent", "issue_token"]


def _actor(settings: Settings) -> SecurityClient:
    connect(settings)
    try:
        return SecurityClient.named()
    except ValueError as exc:
        raise ClusterError(
            "the SecurityGateway is not deployed; run `aisys up` or `aisys deploy` first"
        ) from exc


def ensure_admin(settings: Settings) -> str | None:
    """Create the first admin unless users exist; return its generated password, once."""
    configured = settings.security.admin_password
    password = configured.get_secret_value() if configured else None
    return _actor(settings).ensure_admin(password).get()


def create_user(settings: Settings, user: NewUser) -> UserIdentity:
    return _actor(settings).create_user(user).get()


def create_agent(settings: Settings, agent: NewAgent) -> IdentityCreated:
    return _actor(settings).create_agent(agent).get()


def issue_token(settings: Settings, grant: Grant) -> TokenPair:
    return _actor(settings).grant(grant).get()


def forget_agent(settings: Settings, agent_id: str, trust_settle_s: float = 0.0) -> None:
    """Remove an agent's identity, refresh tokens and trust record.

    Args:
        trust_settle_s: wait up to this long for a trust outcome already on its way (the
            coordinator reports outcomes without waiting), so none lands after the removal.
    """
    actor = _actor(settings)
    deadline = time.monotonic() + trust_settle_s
    while time.monotonic() < deadline:
        report = actor.trust_report(agent_id, 0).get(timeout_s=10)
        if report.evidence > 0:
            break
        time.sleep(0.05)
    actor.forget_agent(agent_id).get(timeout_s=30)
