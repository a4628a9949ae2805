"""SecurityCore: identities, token grants, revocation and trust scores, with no Ray in it."""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import jwt

from actors.security.keys import KeyRing
from actors.security.limits import WindowCounter
from actors.security.models import (
    WRITE_SCOPES,
    AccessToken,
    AgentIdentity,
    Grant,
    IdentityCreated,
    ImportedAggregate,
    ImportedOutcome,
    Jwks,
    LegacyIdentity,
    LegacySession,
    NewAgent,
    NewLegacyIdentity,
    NewUser,
    Role,
    Scope,
    SecurityFeed,
    TokenPair,
    TrustOutcome,
    TrustReport,
    UserIdentity,
    scopes_of_roles,
)
from actors.security.passwords import hash_secret, verify_secret
from actors.security.store import SecurityStore, TrustEvent
from actors.security.tokens import ALGORITHMS, TokenIssuer
from actors.security.trust import (
    TrustState,
    add_counts,
    decayed,
    merged,
    observe,
    score_of,
)
from cluster.base.errors import (
    CredentialsRejected,
    IdentityExists,
    IdentityLimitReached,
    IdentityNotFound,
    QuotaExceeded,
    RateLimited,
    TokenRejected,
    ValidationFailed,
)
from cluster.base.settings import SecuritySettings
from cluster.base.tally import ImportTally

__all__ = ["SecurityCore"]

Clock = Callable[[], float]
Imported = ImportedOutcome | ImportedAggregate


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _legacy_family(name: str) -> str:
    """The token family of a legacy identity's logins (they have no refresh tokens)."""
    return f"legacy:{name}"


class SecurityCore:
    """All SecurityGateway state transitions.

    Args:
        settings: the ``security`` section.
        data_dir: holds ``security.sqlite3`` and the signing keys.
        clock: seconds since the epoch.
    """

    def __init__(self, settings: SecuritySettings, data_dir: Path, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        self._store = SecurityStore(data_dir / "security.sqlite3")
        self._keys = KeyRing(data_dir / "security" / "keys")
        self._issuer = TokenIssuer(
            self._keys, settings.issuer, settings.audience, settings.access_ttl_s, clock
        )
        self.version = max(self._store.version(), 1)
        self._version_lock = threading.Lock()
        # Unknown names are checked against this hash, so they cost the same scrypt work as
        # known ones and a login's timing does not tell whether the name exists.
        self._absent_hash = hash_secret(secrets.token_urlsafe(16))
        window = settings.login_window_s
        self._failures_by_subject = WindowCounter(settings.login_failures_per_subject, window)
        self._failures_by_source = WindowCounter(settings.login_failures_per_source, window)
        self._reports = WindowCounter(
            settings.trust_reports_per_reporter, settings.trust_report_window_s
        )

    # identities

    def ensure_admin(self, password: str | None) -> str | None:
        """Create the first admin if there is no user; return a generated password, once."""
        if self._store.users():
            return None
        generated = password is None
        secret = password or secrets.token_urlsafe(18)
        self.create_user(
            NewUser.model_validate(
                {"name": self._settings.admin_user, "password": secret, "roles": [Role.ADMIN]}
            )
        )
        return secret if generated else None

    def create_user(self, user: NewUser) -> UserIdentity:
        if self._store.user(user.name) is not None:
            raise IdentityExists("user", user.name)
        if self._store.legacy_identity(user.name) is not None:
            raise IdentityExists("legacy identity", user.name)
        now = self._clock()
        digest = hash_secret(user.password.get_secret_value())
        self._store.add_user(user.name, digest, [r.value for r in user.roles], now)
        return UserIdentity(name=user.name, roles=user.roles, created_at=now)

    def create_agent(self, agent: NewAgent) -> IdentityCreated:
        if self._store.agent(agent.agent_id) is not None:
            raise IdentityExists("agent", agent.agent_id)
        secret = secrets.token_urlsafe(32)
        scopes = sorted(set(agent.scopes))
        self._store.add_agent(
            agent.agent_id, hash_secret(secret), [s.value for s in scopes], self._clock()
        )
        return IdentityCreated(agent_id=agent.agent_id, client_secret=secret, scopes=scopes)

    def agent_identity(self, agent_id: str) -> AgentIdentity:
        stored = self._store.agent(agent_id)
        if stored is None:
            raise IdentityNotFound("agent", agent_id)
        return AgentIdentity(
            agent_id=agent_id, scopes=[Scope(s) for s in stored[1]], created_at=stored[2]
        )

    def forget_agent(self, agent_id: str) -> None:
        """Remove an agent's identity, refresh tokens and trust record (e.g. a throw-away one).

        Its access tokens stay valid until they expire unless revoked: they are not recorded.

        Raises:
            IdentityNotFound: nothing is stored under that name.
        """
        if not self._store.delete_agent(agent_id):
            raise IdentityNotFound("agent", agent_id)

    # legacy identities (the AuthenticationAgent's `register`/`login`, legacy ports only)

    def register_legacy(self, identity: NewLegacyIdentity) -> LegacyIdentity:
        """Create a legacy identity without roles (its tokens carry no HTTP/gRPC scope).

        Raises:
            IdentityExists: a legacy identity or an HTTP user has that name.
            IdentityLimitReached: ``legacy_identities_max`` exist already.
        """
        name = identity.name
        if self._store.legacy_identity(name) is not None:
            raise IdentityExists("legacy identity", name)
        if self._store.user(name) is not None:
            raise IdentityExists("user", name)
        now = self._clock()
        limit = self._settings.legacy_identities_max
        if len(self._store.legacy_identities()) >= limit:  # before paying for the hash
            raise IdentityLimitReached(
                "legacy identity", limit, "AISYS_SECURITY__LEGACY_IDENTITIES_MAX"
            )
        digest = hash_secret(identity.password.get_secret_value())
        if not self._store.add_legacy_identity(name, digest, now, limit):
            raise IdentityLimitReached(
                "legacy identity", limit, "AISYS_SECURITY__LEGACY_IDENTITIES_MAX"
            )
        return LegacyIdentity(name=name, roles=[], created_at=now)

    def legacy_login(self, name: str, password: str, source: str = "") -> LegacySession:
        """An access token of a legacy identity: its promoted roles' scopes, else none.

        Raises:
            RateLimited: too many failed logins for this name or from this source.
            CredentialsRejected: unknown name or wrong password (the same work for both).
        """
        stored = self._check_secret(name, password, self._store.legacy_identity(name), source)
        scopes = [s.value for s in scopes_of_roles([Role(r) for r in stored[1]])]
        token, claims = self._issuer.mint(name, "legacy", scopes)
        self._store.prune_refresh(self._clock())
        self._store.add_family_access(_legacy_family(name), claims.jti, claims.exp)
        return LegacySession(token=token, expires_at=claims.exp, scope=claims.scope)

    def legacy_identities(self) -> list[LegacyIdentity]:
        return [
            LegacyIdentity(name=name, roles=[Role(r) for r in roles], created_at=at)
            for name, (_, roles, at) in self._store.legacy_identities().items()
        ]

    def promote_legacy(self, name: str, roles: list[Role]) -> LegacyIdentity:
        """Give a legacy identity ``roles`` (``[]`` takes them away) from its next login on.

        When a scope is taken away, the identity's unexpired tokens are revoked at once.

        Raises:
            IdentityNotFound: no legacy identity has that name.
        """
        stored = self._store.legacy_identity(name)
        if stored is None:
            raise IdentityNotFound("legacy identity", name)
        wanted = sorted(set(roles))
        self._store.set_legacy_roles(name, [r.value for r in wanted])
        before = set(scopes_of_roles([Role(r) for r in stored[1]]))
        if before - set(scopes_of_roles(wanted)):
            self._revoke_family(_legacy_family(name))
        return LegacyIdentity(name=name, roles=wanted, created_at=stored[2])

    def delete_legacy(self, name: str) -> None:
        """Delete a legacy identity and revoke its unexpired tokens.

        Raises:
            IdentityNotFound: no legacy identity has that name.
        """
        if not self._store.delete_legacy_identity(name):
            raise IdentityNotFound("legacy identity", name)
        self._revoke_family(_legacy_family(name))

    def _revoke_family(self, family: str) -> int:
        with self._version_lock:  # the version moves only once the change is stored
            revoked = self._store.revoke_family(family, self.version + 1)
            self.version += 1
            return revoked

    # tokens

    def grant(self, grant: Grant, source: str = "") -> TokenPair:
        """Issue an access/refresh pair for a password, client-credentials or refresh grant.

        ``source`` is the caller's address: failed logins are counted per name and per source,
        and either over its limit refuses every attempt until the window slides.

        Raises:
            RateLimited: too many failed logins for this name or from this source.
            CredentialsRejected: unknown subject or wrong secret (one message for both).
            TokenRejected: an unknown, reused or expired refresh token (a reused one revokes
                every token of its login).
        """
        if grant.grant_type == "password":
            name = grant.username or ""
            password = grant.password.get_secret_value() if grant.password else ""
            user = self._check_secret(name, password, self._store.user(name), source)
            allowed = [s.value for s in scopes_of_roles([Role(r) for r in user[1]])]
            return self._pair(name, "user", self._narrow(allowed, grant.scope))
        if grant.grant_type == "client_credentials":
            client, scopes = self._client_scopes(grant, source)
            return self._agent_pair(client, scopes)
        return self._refresh(grant.refresh_token.get_secret_value() if grant.refresh_token else "")

    def client_token(self, grant: Grant, source: str = "") -> AccessToken:
        """An access token, and no refresh token, for a client-credentials grant.

        What an OAuth2 client (Prometheus' ``oauth2`` scrape option) asks for: it fetches a new
        token with its secret when the last one expires (RFC 6749 section 4.4.3).

        Raises:
            ValidationFailed: ``grant`` is not a client-credentials grant.
            RateLimited: too many failed attempts for this client or from this source.
            CredentialsRejected: unknown client or wrong secret.
            TokenRejected: a requested scope is not granted to the client.
        """
        if grant.grant_type != "client_credentials":
            raise ValidationFailed("security: client_token takes client_credentials grants only")
        client, scopes = self._client_scopes(grant, source)
        kept, note = self._agent_scopes(client, scopes)
        access, claims = self._issuer.mint(client, "agent", kept)
        return AccessToken(
            access_token=access, expires_in=claims.exp - claims.iat, scope=claims.scope, note=note
        )

    def _client_scopes(self, grant: Grant, source: str) -> tuple[str, list[str]]:
        client = grant.client_id or ""
        secret = grant.client_secret.get_secret_value() if grant.client_secret else ""
        # A failed attempt is not the agent's doing (anyone can send its id): it is
        # rate-limited, never counted against the agent's trust.
        agent = self._check_secret(client, secret, self._store.agent(client), source)
        return client, self._narrow(agent[1], grant.scope)

    def _check_secret(
        self, name: str, secret: str, stored: tuple[str, list[str], float] | None, source: str
    ) -> tuple[str, list[str], float]:
        """``stored`` if ``secret`` matches its hash; the same scrypt work when it is None."""
        now = self._clock()
        subject_key, source_key = f"id:{name}", f"source:{source}"
        wait = self._failures_by_subject.retry_after(subject_key, now)
        if wait is not None:
            raise RateLimited("failed logins", f"'{name}'", wait)
        wait = self._failures_by_source.retry_after(source_key, now)
        if wait is not None:
            raise RateLimited("failed logins", f"address {source or 'unknown'}", wait)
        matches = verify_secret(secret, stored[0] if stored is not None else self._absent_hash)
        if stored is None or not matches:
            self._failures_by_subject.add(subject_key, now)
            self._failures_by_source.add(source_key, now)
            raise CredentialsRejected(name)
        self._failures_by_subject.reset(subject_key)
        return stored

    def _refresh(self, token: str) -> TokenPair:
        spent = self._store.spend_refresh(_digest(token))
        if spent is None:
            raise TokenRejected("refresh token is unknown, revoked or expired")
        (subject, kind, scopes, expires_at), family, used_before = spent
        if used_before:
            count = self._revoke_family(family)
            raise TokenRejected(
                "refresh token already used: it may have been stolen, so every token of its "
                f"login is revoked ({count} access token(s)); log in again"
            )
        if expires_at < self._clock():
            raise TokenRejected("refresh token expired")
        if kind == "agent":
            return self._agent_pair(subject, scopes, family)
        return self._pair(subject, "user", scopes, family=family)

    def _narrow(self, allowed: list[str], requested: str | None) -> list[str]:
        if requested is None:
            return sorted(allowed)
        wanted = set(requested.split())
        implied = {s.value for s in Scope} if "admin" in allowed else set()
        if Scope.READ.value in allowed:
            implied.add(Scope.METRICS_READ.value)
        extra = wanted - set(allowed) - implied
        if extra:
            raise TokenRejected(f"scopes {sorted(extra)} are not granted to this identity")
        return sorted(wanted)

    def _agent_pair(self, agent_id: str, scopes: list[str], family: str = "") -> TokenPair:
        kept, note = self._agent_scopes(agent_id, scopes)
        return self._pair(agent_id, "agent", kept, note, family)

    def _agent_scopes(self, agent_id: str, scopes: list[str]) -> tuple[list[str], str]:
        """The scopes an agent's token carries now, and a note when its trust withheld some."""
        score = self.trust_report(agent_id, 0).score
        if score < self._settings.trust.write_floor:
            kept = [s for s in scopes if Scope(s) not in WRITE_SCOPES]
            note = (
                f"trust score {score:.2f} is below {self._settings.trust.write_floor}: write "
                "scopes withheld until it recovers"
            )
            return kept or [Scope.READ.value], note
        return scopes, ""

    def _pair(
        self,
        subject: str,
        kind: Literal["user", "agent"],
        scopes: list[str],
        note: str = "",
        family: str = "",
    ) -> TokenPair:
        """A new pair; ``family`` is the login it descends from (a new one when empty)."""
        access, claims = self._issuer.mint(subject, kind, scopes)
        refresh = secrets.token_urlsafe(32)
        now = self._clock()
        self._store.prune_refresh(now)
        self._store.add_refresh(
            _digest(refresh),
            (subject, kind, scopes, now + self._settings.refresh_ttl_s),
            family or secrets.token_hex(16),
            (claims.jti, claims.exp),
        )
        return TokenPair(
            access_token=access,
            expires_in=claims.exp - claims.iat,
            refresh_token=refresh,
            scope=claims.scope,
            note=note,
        )

    def revoke(self, token: str) -> str:
        """Revoke a refresh token or an access token (by its ``jti``); say which it was.

        Raises:
            TokenRejected: the token is neither a known refresh token nor one we signed.
        """
        if self._store.delete_refresh(_digest(token)):
            return "refresh token revoked"
        try:
            header = jwt.get_unverified_header(token)
            key = next(k for k in self._keys.jwks() if k["kid"] == header.get("kid"))
            payload = jwt.decode(
                token,
                jwt.PyJWK(key).key,
                algorithms=ALGORITHMS,
                options={
                    "verify_exp": False,
                    "verify_aud": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": ["jti", "exp"],
                },
            )
        except (jwt.InvalidTokenError, StopIteration) as exc:
            raise TokenRejected("not a token issued by this gateway") from exc
        with self._version_lock:
            self._store.revoke(str(payload["jti"]), int(payload["exp"]), self.version + 1)
            self.version += 1
        return "access token revoked"

    def rotate_key(self) -> str:
        kid = self._keys.rotate()
        with self._version_lock:
            self._store.set_version(self.version + 1)
            self.version += 1
        return kid

    def feed(self) -> SecurityFeed:
        return SecurityFeed(
            version=self.version,
            jwks=Jwks(keys=self._keys.jwks()),
            revoked=self._store.revoked(self._clock()),
        )

    # trust

    def record_outcome(
        self, agent: str, outcome: TrustOutcome, reporter: str | None = None
    ) -> TrustReport:
        """Fold one outcome into ``agent``'s score.

        ``reporter`` (a legacy ``log_performance`` sender's address) may add at most
        ``trust_reports_per_reporter`` outcomes per ``trust_report_window_s``.

        Raises:
            RateLimited: the reporter is over its bound; nothing was recorded.
            QuotaExceeded: ``agent`` is longer than ``trust.model_id_max_length``, or it is
                new and ``trust.models_max`` agents have a trust row already.
        """
        self._check_trust_quotas(agent)
        now = self._clock()
        if reporter is not None:
            key = f"reporter:{reporter}"
            wait = self._reports.retry_after(key, now)
            if wait is not None:
                raise RateLimited("trust reports", f"reporter {reporter or 'unknown'}", wait)
            self._reports.add(key, now)
        state = observe(
            self._store.trust(agent) or TrustState(at=now), outcome, now, self._settings.trust
        )
        event = (outcome.kind, outcome.success, outcome.latency_s, score_of(state))
        self._store.put_trust(agent, state, event, self._settings.trust.history_limit)
        return self.trust_report(agent, 10)

    def record_outcomes(self, agent: str, outcomes: Sequence[TrustOutcome]) -> None:
        """Fold a batch of ``agent``'s outcomes into its score in one commit (the coordinator's
        reports, sent together); each is folded as :meth:`record_outcome` folds it, now.

        Raises:
            QuotaExceeded: as :meth:`record_outcome`; nothing of the batch was recorded.
        """
        if not outcomes:
            return
        self._check_trust_quotas(agent)
        now, settings = self._clock(), self._settings.trust
        state = self._store.trust(agent) or TrustState(at=now)
        events: list[TrustEvent] = []
        for outcome in outcomes:
            state = observe(state, outcome, now, settings)
            events.append((now, outcome.kind, outcome.success, outcome.latency_s, score_of(state)))
        # The state and every history row in one transaction (no import keys: live outcomes).
        self._store.put_imported(agent, state, events, [], settings.history_limit)

    def _check_trust_quotas(self, agent: str) -> None:
        trust = self._settings.trust
        if len(agent) > trust.model_id_max_length:
            raise QuotaExceeded(
                f"model_id of {len(agent)} characters",
                trust.model_id_max_length,
                "AISYS_SECURITY__TRUST__MODEL_ID_MAX_LENGTH",
            )
        if self._store.trust(agent) is None and self._store.trust_count() >= trust.models_max:
            raise QuotaExceeded(
                f"{self._store.trust_count()} agents have trust scores already, so a new "
                f"model_id is not taken",
                trust.models_max,
                "AISYS_SECURITY__TRUST__MODELS_MAX",
            )

    def import_evidence(self, items: Sequence[Imported]) -> ImportTally:
        """Fold legacy outcomes in at their own times; skip those folded in before.

        Each item's key is stored with the agent's new state in one transaction, so an import
        that is run again (or resumed after a failure) adds each legacy row exactly once.
        """
        tally = ImportTally()
        seen = self._store.imported_keys([item.key for item in items])
        fresh: dict[str, list[Imported]] = {}
        for item in items:
            if item.key in seen:
                tally.skip("already imported", f"{item.agent} {item.key}")
                continue
            seen.add(item.key)
            fresh.setdefault(item.agent, []).append(item)
        for agent, batch in fresh.items():
            batch.sort(key=lambda item: (item.at, item.key))
            state, events = self._fold(self._store.trust(agent), batch)
            keys = [(item.key, item.at) for item in batch]
            self._store.put_imported(agent, state, events, keys, self._settings.trust.history_limit)
            for item in batch:
                tally.add("outcomes" if isinstance(item, ImportedOutcome) else "aggregates")
        return tally

    def _fold(
        self, stored: TrustState | None, batch: list[Imported]
    ) -> tuple[TrustState, list[TrustEvent]]:
        """The agent's state with ``batch`` (sorted by time) folded in, and its history rows.

        When the stored evidence is older than the batch, the batch simply continues it (the
        usual case: legacy rows first, and batches in time order). Otherwise the batch is folded
        on its own and merged; its history scores then leave out the stored evidence.
        """
        settings = self._settings.trust
        in_order = stored is not None and stored.at <= batch[0].at
        chain = stored if stored is not None and in_order else TrustState(at=batch[0].at)
        events: list[TrustEvent] = []
        for item in batch:
            if isinstance(item, ImportedOutcome):
                chain = observe(chain, item.outcome, item.at, settings)
                outcome = item.outcome
                events.append(
                    (item.at, outcome.kind, outcome.success, outcome.latency_s, score_of(chain))
                )
            else:
                chain = add_counts(chain, item.successes, item.failures, item.at, settings)
        if stored is not None and not in_order:
            chain = merged(stored, chain, settings)
        return chain, events

    def trust_report(self, agent: str, history: int) -> TrustReport:
        now = self._clock()
        state = decayed(self._store.trust(agent) or TrustState(at=now), now, self._settings.trust)
        return TrustReport(
            agent=agent,
            score=score_of(state),
            evidence=state.alpha + state.beta - 2.0,
            history=self._store.trust_history(agent, history) if history else [],
        )

    def scores(self) -> dict[str, float]:
        now = self._clock()
        return {
            agent: score_of(decayed(state, now, self._settings.trust))
            for agent, state in self._store.trust_all().items()
        }
