"""AuthenticationAgent (7116, health 8116) and AgentTrustScorer (5626, and 7122) on the gateway.

The legacy agents kept opaque tokens and unsalted SHA-256 passwords in memory and scored trust
without history (``docs/legacy-protocol.md`` 4.15-4.16). Here every action goes to the
SecurityGateway: ``register`` creates a *legacy identity* (scrypt hash, 8+ characters, at most
``security.legacy_identities_max`` of them), not an HTTP user; ``login`` returns an aisys access
JWT of kind ``legacy`` that ``validate_token`` accepts (checked locally, revocations included)
and that carries no HTTP/gRPC scope until an admin promotes the identity; ``logout`` revokes it.
Failed logins are rate-limited per name and per sender address. Trust outcomes feed the
decayed Beta score, at most ``security.trust_reports_per_reporter`` per sender per window.
``get_agent_scores``, which a legacy client sends but the old scorer never implemented, answers
every agent's score.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from actors.security.models import LegacySession, NewLegacyIdentity, TrustOutcome
from cluster.base.errors import IdentityExists, TokenRejected
from deployments.auth import Authenticator
from legacy_gateway._codec import Dialect, LegacyRequest, Reply, error_reply, iso_time
from legacy_gateway._ports import ActionPort, Fields
from legacy_gateway.server import Outcome, Received

__all__ = ["AuthenticationPort", "SecurityHealthPort", "TrustScorerPort"]

#: NIST SP 800-63B's minimum for memorised secrets (the legacy agent took any password).
LEGACY_PASSWORD_MIN: Final = 8

Handler = Callable[[dict[str, Any], Received], Awaitable[Reply]]


def _text(fields: dict[str, Any], key: str) -> str | None:
    value = fields.get(key)
    return value if isinstance(value, str) and value else None


def _health(service: str, security: Authenticator) -> Reply:
    ready = security.follower.synced_within(60)
    return Reply(
        status="ok" if ready else "degraded",
        service=service,
        ready=ready,
        message=f"{service} is healthy" if ready else f"{service}: SecurityGateway not reached",
        timestamp=iso_time(time.time()),
    )


class SecurityHealthPort:
    """A dedicated health port (8116): any request gets the health dict."""

    def __init__(self, service: str, security: Authenticator) -> None:
        self.service = service
        self._security = security

    def handle(self, request: LegacyRequest, received: Received) -> Reply:  # noqa: ARG002
        return _health(self.service, self._security)


class _SecurityPort(ActionPort):
    """A legacy ``action`` port whose actions go to the SecurityGateway (its handlers are
    given the request's connection, for per-sender limits)."""

    def __init__(self, security: Authenticator) -> None:
        super().__init__()
        self._security = security
        self._client = security.security

    def health(self) -> Reply:
        return _health(self.service, self._security)

    @abc.abstractmethod
    def handlers(self) -> dict[str, Handler]:
        """The port's legacy actions and their handlers."""

    def action(self, name: str, received: Received) -> Callable[[Fields], Outcome] | None:
        handler = self.handlers().get(name)
        if handler is None:
            return None
        return lambda fields: handler(fields, received)


class AuthenticationPort(_SecurityPort):
    """The legacy AuthenticationAgent's ``action`` dialect."""

    service = "AuthenticationAgent"

    def handlers(self) -> dict[str, Handler]:
        return {
            "register": self._register,
            "login": self._login,
            "logout": self._logout,
            "validate_token": self._validate,
        }

    async def _register(self, fields: dict[str, Any], received: Received) -> Reply:  # noqa: ARG002
        user, password = _text(fields, "user_id"), _text(fields, "password")
        if user is None or password is None:
            return error_reply(Dialect.ACTION, "Missing user_id or password")
        if len(password) < LEGACY_PASSWORD_MIN:
            return error_reply(
                Dialect.ACTION, f"Password must be at least {LEGACY_PASSWORD_MIN} characters"
            )
        new = NewLegacyIdentity.model_validate({"name": user, "password": password})
        try:
            await self._client.register_legacy(new)
        except IdentityExists:
            return error_reply(Dialect.ACTION, "User already exists")
        return Reply(status="success", message="User registered successfully")

    async def _login(self, fields: dict[str, Any], received: Received) -> Reply:
        user, password = _text(fields, "user_id"), _text(fields, "password")
        if user is None or password is None:
            return error_reply(Dialect.ACTION, "Missing user_id or password")
        session: LegacySession = await self._client.legacy_login(user, password, received.peer())
        reply = {"token": session.token, "expires_at": iso_time(session.expires_at)}
        return Reply(status="success", message="Login successful", session=reply)

    async def _logout(self, fields: dict[str, Any], received: Received) -> Reply:  # noqa: ARG002
        token = _text(fields, "token")
        if token is None:
            return error_reply(Dialect.ACTION, "Missing token")
        try:
            await self._client.revoke_visible(token)
        except TokenRejected:
            return error_reply(Dialect.ACTION, "Invalid token")
        return Reply(status="success", message="Logout successful")

    async def _validate(self, fields: dict[str, Any], received: Received) -> Reply:  # noqa: ARG002
        token = _text(fields, "token")
        if token is None:
            return error_reply(Dialect.ACTION, "Missing token")
        try:
            await self._security.authenticate(f"Bearer {token}")
        except TokenRejected:
            return Reply(status="success", valid=False)
        return Reply(status="success", valid=True)


class TrustScorerPort(_SecurityPort):
    """The legacy AgentTrustScorer's ``action`` dialect (``model_id`` is the agent)."""

    service = "AgentTrustScorer"

    def handlers(self) -> dict[str, Handler]:
        return {
            "log_performance": self._log,
            "get_trust_score": self._score,
            "get_performance_history": self._history,
            "get_agent_scores": self._scores,
        }

    async def _log(self, fields: dict[str, Any], received: Received) -> Reply:
        agent = _text(fields, "model_id")
        if agent is None:
            return error_reply(Dialect.ACTION, "Missing model_id")
        outcome = TrustOutcome.model_validate(
            {
                "success": fields.get("success", True),
                "latency_s": fields.get("response_time", 0.0),
            }
        )
        # Bounded per sender: one reporter cannot talk an agent's score up (or down) at will.
        report = await self._client.record_outcome(agent, outcome, received.peer())
        return Reply(status="success", new_trust_score=report.score)

    async def _score(self, fields: dict[str, Any], received: Received) -> Reply:  # noqa: ARG002
        agent = _text(fields, "model_id")
        if agent is None:
            return error_reply(Dialect.ACTION, "Missing model_id")
        report = await self._client.trust_report(agent, 0)
        return Reply(status="success", trust_score=report.score)

    async def _history(self, fields: dict[str, Any], received: Received) -> Reply:  # noqa: ARG002
        agent = _text(fields, "model_id")
        if agent is None:
            return error_reply(Dialect.ACTION, "Missing model_id")
        limit = fields.get("limit", 10)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1000:
            return error_reply(Dialect.ACTION, "limit must be an integer from 1 to 1000")
        report = await self._client.trust_report(agent, limit)
        history = [
            {
                "success": item["success"],
                "response_time": item["latency_s"],
                "timestamp": iso_time(float(item["at"])),
            }
            for item in report.history
        ]
        return Reply(status="success", history=history)

    async def _scores(self, fields: dict[str, Any], received: Received) -> Reply:  # noqa: ARG002
        scores: dict[str, float] = await self._client.scores()
        agent = _text(fields, "agent")
        if agent is not None:
            scores = {agent: scores.get(agent, 0.5)}
        return Reply(status="success", scores=scores)
