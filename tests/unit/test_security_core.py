"""SecurityCore with a fake clock: grants, refresh rotation, revocation, trust, persistence."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.security.core import SecurityCore
from actors.security.models import Grant, NewAgent, NewUser, TrustOutcome
from actors.security.tokens import TokenVerifier
from cluster.base.errors import CredentialsRejected, IdentityExists, IdentityNotFound, TokenRejected
from cluster.base.settings import SecuritySettings, TrustSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


SETTINGS = SecuritySettings(trust=TrustSettings(half_life_s=3600, write_floor=0.3))


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(tmp_path: Path, clock: Clock) -> SecurityCore:
    return SecurityCore(SETTINGS, tmp_path, clock)


def verify(core: SecurityCore, token: str) -> str:
    feed = core.feed()
    v = TokenVerifier("aisys", "aisys", leeway_s=10**10)  # the fake clock is in the future
    v.update(feed.jwks.keys, feed.revoked)
    return v.verify(token).scope


def password(user: str, secret: str, scope: str | None = None) -> Grant:
    return Grant.model_validate(
        {"grant_type": "password", "username": user, "password": secret, "scope": scope}
    )


def test_first_admin_is_created_once_with_a_generated_password(
    tmp_path: Path, clock: Clock
) -> None:
    core = make(tmp_path, clock)
    generated = core.ensure_admin(None)
    assert generated is not None and len(generated) >= 20
    assert core.ensure_admin(None) is None
    pair = core.grant(password("admin", generated))
    assert "admin" in verify(core, pair.access_token).split()


def test_wrong_password_and_unknown_user_get_the_same_rejection(
    tmp_path: Path, clock: Clock
) -> None:
    core = make(tmp_path, clock)
    core.create_user(NewUser.model_validate({"name": "bob", "password": "a" * 12}))
    with pytest.raises(CredentialsRejected, match="invalid credentials for 'bob'"):
        core.grant(password("bob", "b" * 12))
    with pytest.raises(CredentialsRejected, match="invalid credentials for 'eve'"):
        core.grant(password("eve", "a" * 12))
    with pytest.raises(IdentityExists):
        core.create_user(NewUser.model_validate({"name": "bob", "password": "a" * 12}))


def test_scopes_follow_roles_and_can_be_narrowed_not_widened(tmp_path: Path, clock: Clock) -> None:
    core = make(tmp_path, clock)
    core.create_user(NewUser.model_validate({"name": "v", "password": "p" * 12}))
    assert verify(core, core.grant(password("v", "p" * 12)).access_token) == "read"
    with pytest.raises(TokenRejected, match="not granted"):
        core.grant(password("v", "p" * 12, scope="read admin"))
    core.create_user(
        NewUser.model_validate({"name": "op", "password": "p" * 12, "roles": ["operator"]})
    )
    narrowed = core.grant(password("op", "p" * 12, scope="registry:write"))
    assert narrowed.scope == "registry:write"


def test_refresh_tokens_are_single_use(tmp_path: Path, clock: Clock) -> None:
    core = make(tmp_path, clock)
    created = core.create_agent(NewAgent.model_validate({"agent_id": "tts", "scopes": ["read"]}))
    pair = core.grant(
        Grant.model_validate(
            {
                "grant_type": "client_credentials",
                "client_id": "tts",
                "client_secret": created.client_secret,
            }
        )
    )
    refresh = Grant.model_validate(
        {"grant_type": "refresh_token", "refresh_token": pair.refresh_token}
    )
    second = core.grant(refresh)
    assert second.refresh_token != pair.refresh_token
    with pytest.raises(TokenRejected, match="already used"):
        core.grant(refresh)
    clock.now += SETTINGS.refresh_ttl_s + 1
    with pytest.raises(TokenRejected, match="expired"):
        core.grant(
            Grant.model_validate(
                {"grant_type": "refresh_token", "refresh_token": second.refresh_token}
            )
        )


def test_revocation_bumps_version_and_survives_restart(tmp_path: Path, clock: Clock) -> None:
    core = make(tmp_path, clock)
    secret = core.ensure_admin(None)
    assert secret is not None
    pair = core.grant(password("admin", secret))
    version = core.version
    assert core.revoke(pair.access_token) == "access token revoked"
    assert core.version == version + 1
    with pytest.raises(TokenRejected, match="revoked"):
        verify(core, pair.access_token)
    reloaded = make(tmp_path, clock)
    assert reloaded.version == core.version
    with pytest.raises(TokenRejected, match="revoked"):
        verify(reloaded, pair.access_token)
    assert reloaded.revoke(pair.refresh_token) == "refresh token revoked"
    with pytest.raises(TokenRejected, match="not a token issued"):
        reloaded.revoke("garbage")


def test_trust_rises_with_success_falls_with_failure_and_decays_to_prior(
    tmp_path: Path, clock: Clock
) -> None:
    core = make(tmp_path, clock)
    assert core.trust_report("nlu", 0).score == 0.5
    for _ in range(10):
        report = core.record_outcome("nlu", TrustOutcome(success=True, latency_s=0.1))
    high, evidence = report.score, report.evidence
    assert high > 0.85
    slow = core.record_outcome("slow", TrustOutcome(success=True, latency_s=2.5)).score
    assert 0.5 < slow < 0.6  # a success half as slow as "slow" is three quarters of a success
    neutral = core.record_outcome("slower", TrustOutcome(success=True, latency_s=5.0)).score
    assert neutral == 0.5  # at slow_response_s a success counts half: no information
    for _ in range(10):
        report = core.record_outcome("bad", TrustOutcome(success=False))
    assert report.score < 0.15
    clock.now += 3600
    half_life_later = core.trust_report("nlu", 0)
    assert half_life_later.evidence == pytest.approx(evidence / 2)  # evidence halves
    assert 0.5 < half_life_later.score < high
    clock.now += 3600 * 20
    assert core.trust_report("nlu", 0).score == pytest.approx(0.5, abs=0.01)
    reloaded = make(tmp_path, clock)  # scores and history persist
    assert reloaded.trust_report("bad", 5).history[0]["success"] is False
    assert set(reloaded.scores()) == {"nlu", "slow", "slower", "bad"}


def test_agent_below_trust_floor_loses_write_scopes_until_it_recovers(
    tmp_path: Path, clock: Clock
) -> None:
    core = make(tmp_path, clock)
    created = core.create_agent(
        NewAgent.model_validate({"agent_id": "flaky", "scopes": ["read", "errors:publish"]})
    )
    grant = Grant.model_validate(
        {
            "grant_type": "client_credentials",
            "client_id": "flaky",
            "client_secret": created.client_secret,
        }
    )
    assert core.grant(grant).scope == "errors:publish read"
    for _ in range(5):
        core.record_outcome("flaky", TrustOutcome(success=False))
    limited = core.grant(grant)
    assert limited.scope == "read" and "withheld" in limited.note
    for _ in range(30):
        core.record_outcome("flaky", TrustOutcome(success=True))
    assert core.grant(grant).scope == "errors:publish read"


def test_failed_agent_authentication_does_not_touch_its_trust(tmp_path: Path, clock: Clock) -> None:
    # Anyone can send a known agent id with a wrong secret: that is no evidence about the agent.
    core = make(tmp_path, clock)
    created = core.create_agent(
        NewAgent.model_validate({"agent_id": "x", "scopes": ["read", "errors:publish"]})
    )
    bad = Grant.model_validate(
        {"grant_type": "client_credentials", "client_id": "x", "client_secret": "wrong"}
    )
    for _ in range(SETTINGS.login_failures_per_subject):
        with pytest.raises(CredentialsRejected):
            core.grant(bad, source="10.0.0.66")
    report = core.trust_report("x", 5)
    assert report.score == 0.5 and report.history == []
    clock.now += SETTINGS.login_window_s  # the failures age out of the rate limit
    good = Grant.model_validate(
        {
            "grant_type": "client_credentials",
            "client_id": "x",
            "client_secret": created.client_secret,
        }
    )
    assert core.grant(good).scope == "errors:publish read"  # write scopes kept


def test_a_forgotten_agent_leaves_no_identity_refresh_token_or_trust(
    tmp_path: Path, clock: Clock
) -> None:
    core = make(tmp_path, clock)
    created = core.create_agent(NewAgent.model_validate({"agent_id": "aisys-check-1"}))
    grant = Grant.model_validate(
        {
            "grant_type": "client_credentials",
            "client_id": "aisys-check-1",
            "client_secret": created.client_secret,
        }
    )
    pair = core.grant(grant)
    core.record_outcome("aisys-check-1", TrustOutcome(success=True))
    core.record_outcome("other", TrustOutcome(success=True))

    core.forget_agent("aisys-check-1")

    assert set(core.scores()) == {"other"}
    assert core.trust_report("aisys-check-1", 5).history == []
    with pytest.raises(IdentityNotFound):
        core.agent_identity("aisys-check-1")
    with pytest.raises(CredentialsRejected):
        core.grant(grant)
    refresh = Grant.model_validate(
        {"grant_type": "refresh_token", "refresh_token": pair.refresh_token}
    )
    with pytest.raises(TokenRejected):
        core.grant(refresh)
    with pytest.raises(IdentityNotFound):
        core.forget_agent("aisys-check-1")
    # The name is free again.
    core.create_agent(NewAgent.model_validate({"agent_id": "aisys-check-1"}))
