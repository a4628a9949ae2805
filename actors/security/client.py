"""SecurityClient: typed calls of the security actor (identities, tokens, revocations, trust).

Every caller of the SecurityGateway's state goes through this class instead of the actor's
untyped handle. A replica that verifies tokens gives the client its follower of the security
feed; :meth:`SecurityClient.revoke_visible` then returns once that follower applied the
revocation, and names the replica among the ``pending`` ones when it did not in time.

Example::

    security = SecurityClient(handle, follower)
    pair = await security.grant(grant, source="10.0.0.5")
    what, version, spread = await security.revoke_visible(pair.access_token)
"""

from __future__ import annotations

from typing import Any, Protocol

import ray

from actors.calls import Call
from actors.security.followers import Propagation
from actors.security.models import (
    AccessToken,
    AgentIdentity,
    Grant,
    IdentityCreated,
    ImportedAggregate,
    ImportedOutcome,
    LegacyIdentity,
    LegacySession,
    NewAgent,
    NewLegacyIdentity,
    NewUser,
    Role,
    SecurityFeed,
    TokenPair,
    TrustOutcome,
    TrustReport,
    UserIdentity,
)
from cluster.base.constants import RAY_NAMESPACE, SECURITY_ACTOR_NAME
from cluster.base.tally import ImportTally

__all__ = ["Revocation", "SecurityClient"]

#: What ``revoke`` answers: what was revoked, the security state's version, who applied it.
Revocation = tuple[str, int, Propagation]


class FeedReader(Protocol):
    """What the client needs of this replica's follower of the security feed."""

    name: str

    @property
    def version(self) -> int: ...

    async def wait_for(self, version: int, timeout_s: float = 5.0) -> bool: ...


class SecurityClient:
    """The security actor's calls, typed.

    Args:
        handle: the actor's handle (:func:`actors.security.actor.get_or_create_security`, or
            :meth:`named`).
        follower: this replica's follower of the security feed, if it verifies tokens.
        write_timeout_s: how long :meth:`revoke_visible` waits for that follower.
    """

    def __init__(
        self, handle: Any, follower: FeedReader | None = None, write_timeout_s: float = 5.0
    ) -> None:
        self.handle = handle
        self.follower = follower
        self.write_timeout_s = write_timeout_s

    @classmethod
    def named(cls) -> SecurityClient:
        """The client of the running security actor, found by name (sync).

        Raises:
            ValueError: no security actor runs (the system is not up).
        """
        return cls(ray.get_actor(SECURITY_ACTOR_NAME, namespace=RAY_NAMESPACE))

    # Identities
    def ensure_admin(self, password: str | None) -> Call[str | None]:
        """Create ``admin`` if missing; its generated password when one was made."""
        return Call(self.handle.ensure_admin.remote(password))

    def create_user(self, user: NewUser) -> Call[UserIdentity]:
        return Call(self.handle.create_user.remote(user))

    def create_agent(self, agent: NewAgent) -> Call[IdentityCreated]:
        return Call(self.handle.create_agent.remote(agent))

    def forget_agent(self, agent_id: str) -> Call[None]:
        return Call(self.handle.forget_agent.remote(agent_id))

    def agent_identity(self, agent_id: str) -> Call[AgentIdentity]:
        return Call(self.handle.agent_identity.remote(agent_id))

    def register_legacy(self, identity: NewLegacyIdentity) -> Call[LegacyIdentity]:
        return Call(self.handle.register_legacy.remote(identity))

    def legacy_login(self, name: str, password: str, source: str = "") -> Call[LegacySession]:
        return Call(self.handle.legacy_login.remote(name, password, source))

    def legacy_identities(self) -> Call[list[LegacyIdentity]]:
        return Call(self.handle.legacy_identities.remote())

    def promote_legacy(self, name: str, roles: list[Role]) -> Call[LegacyIdentity]:
        return Call(self.handle.promote_legacy.remote(name, roles))

    def delete_legacy(self, name: str) -> Call[None]:
        return Call(self.handle.delete_legacy.remote(name))

    # Tokens and keys
    def grant(self, grant: Grant, source: str = "") -> Call[TokenPair]:
        """Log in, authenticate an agent or refresh; ``source`` is the caller's address."""
        return Call(self.handle.grant.remote(grant, source))

    def client_token(self, grant: Grant, source: str = "") -> Call[AccessToken]:
        """An OAuth2 client-credentials access token (no refresh token) for an agent."""
        return Call(self.handle.client_token.remote(grant, source))

    def revoke(self, token: str) -> Call[Revocation]:
        """Revoke; answered once every live replica applied it (or after the age limit)."""
        return Call(self.handle.revoke.remote(token))

    async def revoke_visible(self, token: str) -> Revocation:
        """:meth:`revoke`, then wait until this replica's follower applied it too.

        A follower that did not within ``write_timeout_s`` is named in ``pending`` (it rejects
        the revoked token only once it has applied it), whatever the actor saw.
        """
        what, version, spread = await self.revoke(token)
        follower = self.follower
        if follower is None or await follower.wait_for(version, self.write_timeout_s):
            return what, version, spread
        applied = [name for name in spread.applied if name != follower.name]
        pending = sorted({*spread.pending, follower.name})
        return what, version, Propagation(applied=applied, pending=pending)

    def rotate_key(self) -> Call[tuple[str, int]]:
        return Call(self.handle.rotate_key.remote())

    def wait_changes(
        self, since: int, timeout_s: float, follower: str | None = None
    ) -> Call[SecurityFeed]:
        return Call(self.handle.wait_changes.remote(since, timeout_s, follower))

    # Trust
    def record_outcome(
        self, agent: str, outcome: TrustOutcome, reporter: str | None = None
    ) -> Call[TrustReport]:
        return Call(self.handle.record_outcome.remote(agent, outcome, reporter))

    def record_outcomes(self, outcomes: dict[str, list[TrustOutcome]]) -> Call[None]:
        """Fold a batch of outcomes per agent (the coordinator's trust link)."""
        return Call(self.handle.record_outcomes.remote(outcomes))

    def import_trust(self, items: list[ImportedOutcome | ImportedAggregate]) -> Call[ImportTally]:
        """Fold legacy trust evidence in (``aisys import-legacy``)."""
        return Call(self.handle.import_trust.remote(items))

    def trust_report(self, agent: str, history: int) -> Call[TrustReport]:
        return Call(self.handle.trust_report.remote(agent, history))

    def scores(self) -> Call[dict[str, float]]:
        return Call(self.handle.scores.remote())
