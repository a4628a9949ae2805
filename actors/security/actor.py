"""The SecurityGateway's named detached actor: identities, keys, revocations and trust.

It lives on the SecurityGateway's host (the signing keys never leave that host's data dir) and
publishes :class:`SecurityFeed` (public keys and revoked token ids) for every service's
verifier to long-poll, so a revocation is enforced everywhere within a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any, cast

import ray

from actors._singleton import singleton_options
from actors._unusable import Unusable
from actors.security.core import SecurityCore
from actors.security.followers import FollowerLedger, Propagation
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
from cluster.base.constants import SECURITY_ACTOR_NAME
from cluster.base.errors import DatabaseUnusable, QuotaExceeded
from cluster.base.settings import SecuritySettings
from cluster.base.tally import ImportTally

logger = logging.getLogger(__name__)

__all__ = ["SecurityActor", "get_or_create_security"]

MAX_WAIT_S = 30.0


class SecurityActor:
    """Ray actor over :class:`SecurityCore`. Use :func:`get_or_create_security`.

    When ``security.sqlite3`` is not a usable database the actor still starts, and every call
    raises that :class:`~cluster.base.errors.DatabaseUnusable` (naming the file and the fix) rather
    than the constructor failing and Ray re-creating the actor.
    """

    def __init__(self, settings: SecuritySettings, data_dir: str) -> None:
        try:
            self._core = SecurityCore(settings, Path(data_dir), time.time)
        except DatabaseUnusable as exc:
            self._core = cast(SecurityCore, Unusable(exc))
        self._changed = asyncio.Event()
        self._reported = asyncio.Event()
        # A replica polls at least every revocation_max_age_s / 4; one silent for twice the
        # age limit is gone or rejects every token by itself (RevocationStale).
        self._max_age_s = settings.revocation_max_age_s
        self._followers = FollowerLedger(alive_s=2 * settings.revocation_max_age_s)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _changed_since(self, version: int) -> None:
        if self._core.version != version:
            self._notify()

    async def ensure_admin(self, password: str | None) -> str | None:
        return self._core.ensure_admin(password)

    async def create_user(self, user: NewUser) -> UserIdentity:
        return self._core.create_user(user)

    async def create_agent(self, agent: NewAgent) -> IdentityCreated:
        return self._core.create_agent(agent)

    async def forget_agent(self, agent_id: str) -> None:
        self._core.forget_agent(agent_id)

    async def agent_identity(self, agent_id: str) -> AgentIdentity:
        return self._core.agent_identity(agent_id)

    async def grant(self, grant: Grant, source: str = "") -> TokenPair:
        # Password hashing is CPU-bound (scrypt); keep the actor's event loop responsive.
        version = self._core.version
        try:
            return await asyncio.to_thread(self._core.grant, grant, source)
        finally:
            await self._changed_since(version)  # a reused refresh token revoked its family

    async def client_token(self, grant: Grant, source: str = "") -> AccessToken:
        return await asyncio.to_thread(self._core.client_token, grant, source)

    async def register_legacy(self, identity: NewLegacyIdentity) -> LegacyIdentity:
        return await asyncio.to_thread(self._core.register_legacy, identity)

    async def legacy_login(self, name: str, password: str, source: str = "") -> LegacySession:
        return await asyncio.to_thread(self._core.legacy_login, name, password, source)

    async def legacy_identities(self) -> list[LegacyIdentity]:
        return self._core.legacy_identities()

    async def promote_legacy(self, name: str, roles: list[Role]) -> LegacyIdentity:
        version = self._core.version
        promoted = self._core.promote_legacy(name, roles)
        await self._changed_since(version)  # a demotion revoked its tokens
        return promoted

    async def delete_legacy(self, name: str) -> None:
        version = self._core.version
        self._core.delete_legacy(name)
        await self._changed_since(version)

    async def revoke(self, token: str) -> tuple[str, int, Propagation]:
        """Revoke; return once every live replica applied it (or after the age limit).

        The third item names the replicas that have applied the revocation and those that
        had not when the wait ended (they reject every token once their view is too old).
        """
        outcome = self._core.revoke(token)
        self._notify()
        version = self._core.version
        return outcome, version, await self.propagation(version, self._max_age_s)

    async def propagation(self, version: int, timeout_s: float) -> Propagation:
        """Wait up to ``timeout_s`` for every live replica to report ``version``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            state = self._followers.propagation(version, time.monotonic())
            remaining = deadline - loop.time()
            if not state.pending or remaining <= 0:
                return state
            reported = self._reported
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reported.wait(), remaining)

    async def rotate_key(self) -> tuple[str, int]:
        kid = self._core.rotate_key()
        self._notify()
        return kid, self._core.version

    async def record_outcome(
        self, agent: str, outcome: TrustOutcome, reporter: str | None = None
    ) -> TrustReport:
        return self._core.record_outcome(agent, outcome, reporter)

    async def record_outcomes(self, outcomes: dict[str, list[TrustOutcome]]) -> None:
        """Fold each agent's batch (the coordinator's TrustLink): one commit per agent; an
        agent over a trust quota is logged and skipped, the others are recorded."""
        for agent, batch in outcomes.items():
            try:
                self._core.record_outcomes(agent, batch)
            except QuotaExceeded as exc:
                logger.warning("trust outcomes of %s not recorded: %s", agent, exc)

    async def import_trust(self, items: list[ImportedOutcome | ImportedAggregate]) -> ImportTally:
        """Fold legacy trust evidence in (``aisys import-legacy``); keyed, so repeatable."""
        return self._core.import_evidence(items)

    async def trust_report(self, agent: str, history: int) -> TrustReport:
        return self._core.trust_report(agent, history)

    async def scores(self) -> dict[str, float]:
        return self._core.scores()

    async def wait_changes(
        self, since: int, timeout_s: float = MAX_WAIT_S, follower: str | None = None
    ) -> SecurityFeed:
        """Return the feed once its version passed ``since`` or after ``timeout_s``.

        ``follower`` names the calling replica: ``since`` is the version it has applied, which
        :meth:`revoke` waits for.
        """
        if follower is not None:
            self._followers.report(follower, since, time.monotonic())
            self._reported.set()
            self._reported = asyncio.Event()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(timeout_s, MAX_WAIT_S)
        while self._core.version == since:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                break
        return self._core.feed()


def get_or_create_security(settings: SecuritySettings, data_dir: Path, host_tag: str) -> Any:
    """Return the security actor's handle, creating it pinned to ``host_tag`` if absent."""
    return (
        ray.remote(SecurityActor)
        .options(**singleton_options(SECURITY_ACTOR_NAME, host_tag))
        .remote(settings, str(data_dir))
    )
