"""OAuth2 token requests (RFC 6749): form parsing, Basic client auth, error mapping, and the
metrics-only scope a Prometheus identity gets."""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import quote_plus, urlencode

import pytest

from actors.security.core import SecurityCore
from actors.security.models import WRITE_SCOPES, Claims, Grant, NewAgent, Scope
from actors.security.tokens import TokenVerifier
from cluster.base.errors import CredentialsRejected, RateLimited, TokenRejected
from cluster.base.settings import SecuritySettings
from deployments.security.oauth import OAuthError, oauth_error_of, parse_token_form


def basic(client_id: str, secret: str) -> str:
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def form(**fields: str) -> bytes:
    return urlencode(fields).encode()


def test_client_credentials_in_the_basic_header_as_prometheus_sends_them() -> None:
    grant = parse_token_form(
        form(grant_type="client_credentials", scope="metrics:read"),
        basic("prom:etheus", "s3cr+t/="),
    )
    assert grant.grant_type == "client_credentials"
    assert grant.client_id == "prom:etheus"
    assert grant.client_secret is not None and grant.client_secret.get_secret_value() == "s3cr+t/="
    assert grant.scope == "metrics:read"


def test_client_credentials_in_the_form_and_unknown_parameters_ignored() -> None:
    grant = parse_token_form(
        form(grant_type="client_credentials", client_id="p", client_secret="x", audience="a"),
        None,
    )
    assert grant.client_id == "p" and grant.scope is None


@pytest.mark.parametrize(
    ("body", "authorization", "error", "status"),
    [
        (form(scope="read"), None, "invalid_request", 400),
        (form(grant_type="authorization_code"), None, "unsupported_grant_type", 400),
        (form(grant_type="client_credentials"), None, "invalid_client", 401),
        (form(grant_type="client_credentials"), "Bearer abc", "invalid_client", 401),
        (form(grant_type="client_credentials"), "Basic !!notbase64", "invalid_client", 401),
        (
            form(grant_type="client_credentials", client_secret="x"),
            basic("p", "x"),
            "invalid_request",
            400,
        ),
        (b"grant_type=password&grant_type=password", None, "invalid_request", 400),
        (b"x" * 9000, None, "invalid_request", 400),
        (
            form(grant_type="password", username="u", password="p" * 2000),
            None,
            "invalid_request",
            400,
        ),
    ],
)
def test_malformed_requests_get_oauth_errors(
    body: bytes, authorization: str | None, error: str, status: int
) -> None:
    with pytest.raises(OAuthError) as caught:
        parse_token_form(body, authorization)
    assert caught.value.body.error == error
    assert caught.value.status == status
    assert caught.value.body.error_description
    assert caught.value.headers["Cache-Control"] == "no-store"


def test_service_errors_map_to_oauth_codes() -> None:
    bad_client = oauth_error_of(CredentialsRejected("p"), "client_credentials")
    assert bad_client is not None and (bad_client.body.error, bad_client.status) == (
        "invalid_client",
        401,
    )
    assert "WWW-Authenticate" in bad_client.headers
    bad_user = oauth_error_of(CredentialsRejected("u"), "password")
    assert bad_user is not None and bad_user.body.error == "invalid_grant"
    scope = oauth_error_of(TokenRejected("scopes ['admin'] are not granted"), "client_credentials")
    assert scope is not None and scope.body.error == "invalid_scope"
    reused = oauth_error_of(TokenRejected("refresh token already used"), "refresh_token")
    assert reused is not None and reused.body.error == "invalid_grant"
    limited = oauth_error_of(RateLimited("failed logins", "'p'", 2.2), "client_credentials")
    assert limited is not None and limited.status == 429
    assert limited.headers["Retry-After"] == "3"


class Clock:
    now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def claims(core: SecurityCore, token: str) -> Claims:
    feed = core.feed()
    verifier = TokenVerifier("aisys", "aisys", leeway_s=10**10)
    verifier.update(feed.jwks.keys, feed.revoked)
    return verifier.verify(token)


def test_a_metrics_only_agent_gets_an_access_token_without_a_refresh_token(
    tmp_path: Path,
) -> None:
    core = SecurityCore(SecuritySettings(access_ttl_s=60), tmp_path, Clock())
    created = core.create_agent(NewAgent(agent_id="prometheus", scopes=[Scope.METRICS_READ]))
    grant = parse_token_form(
        form(grant_type="client_credentials"), basic("prometheus", created.client_secret)
    )
    token = core.client_token(grant)
    assert token.expires_in == 60 and token.token_type == "Bearer"
    assert "refresh_token" not in token.model_dump()
    seen = claims(core, token.access_token)
    assert seen.scopes == {"metrics:read"}
    assert seen.allows(Scope.METRICS_READ)
    assert not seen.allows(Scope.READ)
    with pytest.raises(TokenRejected):
        core.client_token(
            Grant(
                grant_type="client_credentials",
                client_id="prometheus",
                client_secret=created.client_secret,
                scope="read",
            )
        )


def test_read_implies_metrics_read_and_a_read_agent_may_narrow_to_it(tmp_path: Path) -> None:
    core = SecurityCore(SecuritySettings(), tmp_path, Clock())
    created = core.create_agent(NewAgent(agent_id="viewer", scopes=[Scope.READ]))
    grant = Grant.model_validate(
        {
            "grant_type": "client_credentials",
            "client_id": "viewer",
            "client_secret": created.client_secret,
            "scope": "metrics:read",
        }
    )
    narrowed = claims(core, core.grant(grant).access_token)
    assert narrowed.scopes == {"metrics:read"}
    full = claims(core, core.client_token(grant.model_copy(update={"scope": None})).access_token)
    assert full.allows(Scope.METRICS_READ) and full.allows(Scope.READ)


def test_metrics_read_is_not_a_write_scope() -> None:
    assert Scope.METRICS_READ not in WRITE_SCOPES
