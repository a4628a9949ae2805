"""SecurityCore hardening with a fake clock: legacy identities, login rate limits, equal work
for unknown names, refresh-token reuse, bounded trust reports, and the follower ledger."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from actors.security import core as core_module
from actors.security.actor import SecurityActor
from actors.security.core import SecurityCore
from actors.security.followers import FollowerLedger
from actors.security.limits import WindowCounter
from actors.security.models import (
    Claims,
    Grant,
    NewAgent,
    NewLegacyIdentity,
    NewUser,
    Role,
    Scope,
    TrustOutcome,
)
from actors.security.passwords import verify_secret
from actors.security.tokens import TokenVerifier
from cluster.base.errors import (
    CredentialsRejected,
    IdentityExists,
    IdentityLimitReached,
    IdentityNotFound,
    RateLimited,
    TokenRejected,
)
from cluster.base.settings import SecuritySettings


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


SETTINGS = SecuritySettings(
    legacy_identities_max=3,
    login_failures_per_subject=3,
    login_failures_per_source=5,
    login_window_s=60,
    trust_reports_per_reporter=4,
    trust_report_window_s=30,
)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def core(tmp_path: Path, clock: Clock) -> SecurityCore:
    return SecurityCore(SETTINGS, tmp_path, clock)


def claims(core: SecurityCore, token: str) -> Claims:
    feed = core.feed()
    verifier = TokenVerifier("aisys", "aisys", leeway_s=10**10)  # the fake clock is ahead
    verifier.update(feed.jwks.keys, feed.revoked)
    return verifier.verify(token)


def password(user: str, secret: str) -> Grant:
    return Grant.model_validate({"grant_type": "password", "username": user, "password": secret})


def legacy(name: str, secret: str = "legacy-pw") -> NewLegacyIdentity:
    return NewLegacyIdentity.model_validate({"name": name, "password": secret})


# 1. legacy identities


def test_a_legacy_identity_has_no_scope_until_an_admin_promotes_it(core: SecurityCore) -> None:
    created = core.register_legacy(legacy("alice"))
    assert created.roles == []
    session = core.legacy_login("alice", "legacy-pw", "10.0.0.5")
    first = claims(core, session.token)
    assert (first.sub, first.kind, first.scope) == ("alice", "legacy", "")
    assert not any(first.allows(scope) for scope in Scope)
    # It is not an HTTP user: the password grant does not know it.
    with pytest.raises(CredentialsRejected):
        core.grant(password("alice", "legacy-pw"))

    assert core.promote_legacy("alice", [Role.VIEWER]).roles == [Role.VIEWER]
    assert claims(core, session.token).scope == ""  # a promotion revokes nothing
    viewer = core.legacy_login("alice", "legacy-pw").token
    promoted = claims(core, viewer)
    assert promoted.scope == "read" and promoted.allows(Scope.READ)
    assert not promoted.allows(Scope.REGISTRY_WRITE)
    assert [i.roles for i in core.legacy_identities()] == [[Role.VIEWER]]

    version = core.version
    core.promote_legacy("alice", [])  # demoted: its live tokens are revoked at once
    assert core.version == version + 1
    with pytest.raises(TokenRejected, match="revoked"):
        claims(core, viewer)
    later = core.legacy_login("alice", "legacy-pw").token
    assert claims(core, later).scope == ""
    core.delete_legacy("alice")  # deleted: revoked too, and it cannot log in
    with pytest.raises(TokenRejected, match="revoked"):
        claims(core, later)
    with pytest.raises(CredentialsRejected):
        core.legacy_login("alice", "legacy-pw")
    with pytest.raises(IdentityNotFound):
        core.promote_legacy("nobody", [Role.ADMIN])


def test_legacy_identities_are_capped_and_share_no_name_with_users(core: SecurityCore) -> None:
    core.create_user(NewUser.model_validate({"name": "bob", "password": "b" * 12}))
    with pytest.raises(IdentityExists, match="user 'bob'"):
        core.register_legacy(legacy("bob"))
    for name in ("a", "b", "c"):
        core.register_legacy(legacy(name))
    with pytest.raises(IdentityExists, match="legacy identity 'a'"):
        core.register_legacy(legacy("a"))
    with pytest.raises(IdentityExists, match="legacy identity 'c'"):
        core.create_user(NewUser.model_validate({"name": "c", "password": "c" * 12}))
    with pytest.raises(IdentityLimitReached, match=r"limit is reached \(3\).*LEGACY_IDENTITIES"):
        core.register_legacy(legacy("d"))
    core.delete_legacy("a")
    core.register_legacy(legacy("d"))  # room again
    assert [i.name for i in core.legacy_identities()] == ["b", "c", "d"]


def test_legacy_passwords_need_nist_eight_characters() -> None:
    with pytest.raises(ValueError, match="at least 8"):
        legacy("short", "1234567")
    assert legacy("ok", "12345678").password.get_secret_value() == "12345678"


# 2 and 3. failed logins: rate-limited per name and per source, never held against an agent


def test_failed_logins_are_limited_per_name_then_the_window_slides(
    core: SecurityCore, clock: Clock
) -> None:
    core.create_user(NewUser.model_validate({"name": "bob", "password": "b" * 12}))
    for i in range(SETTINGS.login_failures_per_subject):
        clock.now += 1
        with pytest.raises(CredentialsRejected):
            core.grant(password("bob", "wrong"), source=f"10.0.0.{i}")
    # Even the right password is refused now: guessing gains nothing.
    with pytest.raises(RateLimited, match="too many failed logins for 'bob'") as limited:
        core.grant(password("bob", "b" * 12), source="10.0.0.99")
    assert 57 < limited.value.retry_after_s <= 59  # the first failure leaves the window
    clock.now += limited.value.retry_after_s
    assert core.grant(password("bob", "b" * 12)).scope == "read"


def test_failed_logins_are_limited_per_source_across_names(core: SecurityCore) -> None:
    core.create_user(NewUser.model_validate({"name": "bob", "password": "b" * 12}))
    for i in range(SETTINGS.login_failures_per_source):
        with pytest.raises(CredentialsRejected):
            core.grant(password(f"guess-{i}", "x" * 12), source="10.9.9.9")
    with pytest.raises(RateLimited, match="address 10.9.9.9"):
        core.grant(password("bob", "b" * 12), source="10.9.9.9")
    with pytest.raises(RateLimited, match="address 10.9.9.9"):
        core.legacy_login("anyone", "x" * 8, "10.9.9.9")  # the legacy port counts the same
    assert core.grant(password("bob", "b" * 12), source="10.0.0.1").scope == "read"


def test_client_credentials_floods_are_limited_not_scored(core: SecurityCore) -> None:
    core.create_agent(NewAgent.model_validate({"agent_id": "tts"}))
    bad = Grant.model_validate(
        {"grant_type": "client_credentials", "client_id": "tts", "client_secret": "no"}
    )
    for _ in range(SETTINGS.login_failures_per_subject):
        with pytest.raises(CredentialsRejected):
            core.grant(bad, source="10.0.0.7")
    with pytest.raises(RateLimited, match="'tts'"):
        core.grant(bad, source="10.0.0.8")
    assert core.trust_report("tts", 5).score == 0.5


def test_unknown_names_cost_the_same_scrypt_work(
    core: SecurityCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    core.create_user(NewUser.model_validate({"name": "bob", "password": "b" * 12}))
    core.register_legacy(legacy("carol"))
    checked: list[str] = []

    def counting(secret: str, encoded: str) -> bool:
        checked.append(encoded.split("$")[1])  # the scrypt cost parameter N
        return verify_secret(secret, encoded)

    monkeypatch.setattr(core_module, "verify_secret", counting)
    for name in ("bob", "nobody"):
        with pytest.raises(CredentialsRejected):
            core.grant(password(name, "wrong"))
    for name in ("carol", "nobody"):
        with pytest.raises(CredentialsRejected):
            core.legacy_login(name, "wrong-pw")
    assert len(checked) == 4 and len(set(checked)) == 1  # one full scrypt check each


# 3. refresh-token reuse revokes the whole login


def test_a_reused_refresh_token_revokes_every_token_of_its_login(core: SecurityCore) -> None:
    core.create_user(NewUser.model_validate({"name": "bob", "password": "b" * 12}))
    first = core.grant(password("bob", "b" * 12))
    other = core.grant(password("bob", "b" * 12))  # another login: a family of its own

    def refresh(token: str) -> Grant:
        return Grant.model_validate({"grant_type": "refresh_token", "refresh_token": token})

    second = core.grant(refresh(first.refresh_token))
    third = core.grant(refresh(second.refresh_token))
    version = core.version
    with pytest.raises(TokenRejected, match=r"already used.*every token of its login.*\(3 "):
        core.grant(refresh(first.refresh_token))  # a thief (or the victim) replays it
    assert core.version == version + 1
    for pair in (first, second, third):
        with pytest.raises(TokenRejected, match="revoked"):
            claims(core, pair.access_token)
    with pytest.raises(TokenRejected, match="unknown, revoked or expired"):
        core.grant(refresh(third.refresh_token))  # the newest refresh token is gone too
    assert claims(core, other.access_token).sub == "bob"
    assert core.grant(refresh(other.refresh_token)).scope == "read"


# 2. legacy trust reports are bounded per reporter


def test_trust_reports_are_bounded_per_reporter(core: SecurityCore, clock: Clock) -> None:
    for _ in range(SETTINGS.trust_reports_per_reporter):
        score = core.record_outcome("phi-2", TrustOutcome(success=True), "10.0.0.5").score
    with pytest.raises(RateLimited, match="too many trust reports for reporter 10.0.0.5"):
        core.record_outcome("other-model", TrustOutcome(success=True), "10.0.0.5")
    assert core.trust_report("phi-2", 0).score == score  # the excess added nothing
    assert "other-model" not in core.scores()
    core.record_outcome("phi-2", TrustOutcome(success=False), "10.0.0.6")  # another reporter
    core.record_outcome("phi-2", TrustOutcome(success=False))  # an admin (no reporter): free
    clock.now += SETTINGS.trust_report_window_s
    core.record_outcome("phi-2", TrustOutcome(success=True), "10.0.0.5")


# the pieces


def test_window_counter_forgets_the_oldest_keys_beyond_its_bound() -> None:
    counter = WindowCounter(limit=1, window_s=10, max_keys=3)
    for i in range(5):
        counter.add(f"k{i}", 100.0)
    assert counter.retry_after("k4", 100.0) == 10.0
    assert counter.retry_after("k0", 100.0) is None  # forgotten, memory stays bounded
    assert counter.retry_after("k4", 110.0) is None


def test_follower_ledger_names_who_applied_a_version_and_forgets_the_silent() -> None:
    ledger = FollowerLedger(alive_s=10)
    ledger.report("core/Core/a", 4, now=0.0)
    ledger.report("security/SecurityGateway/b", 5, now=1.0)
    spread = ledger.propagation(5, now=2.0)
    assert (spread.applied, spread.pending) == (["security/SecurityGateway/b"], ["core/Core/a"])
    ledger.report("core/Core/a", 5, now=3.0)
    assert ledger.propagation(5, now=4.0).pending == []
    assert ledger.propagation(5, now=12.5).applied == ["core/Core/a"]  # b went silent


def test_revoke_waits_for_every_live_replica_and_names_the_laggards(tmp_path: Path) -> None:
    # The actor class itself, without Ray: replicas are simulated by their long-polls.
    settings = SecuritySettings(revocation_max_age_s=1.0)

    async def scenario() -> None:
        actor = SecurityActor(settings, str(tmp_path))
        admin = await actor.ensure_admin(None)
        assert admin is not None
        pair = await actor.grant(password("admin", admin))
        version = actor._core.version
        for replica in ("core/Core/a", "errors/ErrorBus/b", "gone/X/c"):
            await actor.wait_changes(version, 0, replica)
        revoking = asyncio.create_task(actor.revoke(pair.access_token))
        await asyncio.sleep(0.05)
        assert not revoking.done()  # waiting for the replicas to apply it
        # Each replica's next long-poll says what it applied; "gone" never polls again.
        await actor.wait_changes(version + 1, 0, "core/Core/a")
        await actor.wait_changes(version + 1, 0, "errors/ErrorBus/b")
        started = time.monotonic()
        what, new_version, spread = await revoking
        assert (what, new_version) == ("access token revoked", version + 1)
        assert spread.applied == ["core/Core/a", "errors/ErrorBus/b"]
        assert spread.pending == ["gone/X/c"]  # said, after waiting the age limit at most
        assert time.monotonic() - started <= settings.revocation_max_age_s + 0.5

        second = await actor.grant(password("admin", admin))
        await actor.wait_changes(new_version, 0, "core/Core/a")
        await actor.wait_changes(new_version, 0, "errors/ErrorBus/b")
        # With every live replica keeping up, revoke returns as soon as they have it.
        revoking = asyncio.create_task(actor.revoke(second.access_token))
        await asyncio.sleep(0)
        for replica in ("core/Core/a", "errors/ErrorBus/b", "gone/X/c"):
            await actor.wait_changes(new_version + 1, 0, replica)
        _, _, spread = await asyncio.wait_for(revoking, 0.5)
        assert spread.pending == [] and len(spread.applied) == 3

    asyncio.run(scenario())
