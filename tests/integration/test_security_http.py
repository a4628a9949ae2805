"""SecurityGateway over Serve HTTP: grants, verification, refresh, revocation, identities."""

from __future__ import annotations

import uuid

import httpx
import pytest

from cluster.base.settings import Settings
from tests.conftest import wait_for_condition
from tests.integration.conftest import ADMIN_PASSWORD

pytestmark = pytest.mark.integration


def grant(client: httpx.Client, **body: str) -> httpx.Response:
    return client.post("/security/token", json=body)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_login_verify_refresh_and_revoke(
    aisys_system: Settings, anonymous_http: httpx.Client
) -> None:
    client = anonymous_http
    response = grant(
        client, grant_type="password", username="admin", password=ADMIN_PASSWORD, scope="read"
    )
    assert response.status_code == 200, response.text
    pair = response.json()
    assert pair["token_type"] == "Bearer" and pair["scope"] == "read"
    assert pair["expires_in"] == aisys_system.security.access_ttl_s

    verified = client.get("/security/verify", headers=bearer(pair["access_token"]))
    assert verified.status_code == 200
    claims = verified.json()["claims"]
    assert (claims["sub"], claims["iss"], claims["aud"]) == ("admin", "aisys", "aisys")

    refreshed = client.post("/security/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200
    reused = client.post("/security/refresh", json={"refresh_token": pair["refresh_token"]})
    assert reused.status_code == 401 and "already used" in reused.json()["detail"]

    new_access = refreshed.json()["access_token"]
    revoked = client.post("/security/revoke", json={"token": new_access})
    assert revoked.json()["revoked"] == "access token revoked"
    assert revoked.json()["pending"] == [] and revoked.json()["applied_by"]
    after = client.get("/security/verify", headers=bearer(new_access))
    assert after.status_code == 401
    assert after.json()["detail"] == "security: token rejected: revoked"
    assert 'error="invalid_token"' in after.headers["www-authenticate"]


def test_bad_credentials_and_bad_grants(anonymous_http: httpx.Client) -> None:
    wrong = grant(anonymous_http, grant_type="password", username="admin", password="nope")
    assert wrong.status_code == 401
    assert wrong.json()["detail"] == "security: invalid credentials for 'admin'"
    unknown = grant(anonymous_http, grant_type="magic")
    assert unknown.status_code == 422
    garbage = anonymous_http.post("/security/revoke", json={"token": "garbage"})
    assert garbage.status_code == 401


def test_admin_creates_agent_which_gets_client_credential_tokens(
    http: httpx.Client, anonymous_http: httpx.Client
) -> None:
    agent_id = f"agent-{uuid.uuid4().hex[:8]}"
    created = http.post("/security/agents", json={"agent_id": agent_id, "scopes": ["read"]})
    assert created.status_code == 200, created.text
    secret = created.json()["client_secret"]
    again = http.post("/security/agents", json={"agent_id": agent_id})
    assert again.status_code == 409

    pair = grant(
        anonymous_http, grant_type="client_credentials", client_id=agent_id, client_secret=secret
    ).json()
    assert pair["scope"] == "read"
    # The agent's read-only token cannot create identities.
    forbidden = anonymous_http.post(
        "/security/agents", json={"agent_id": "x-" + agent_id}, headers=bearer(pair["access_token"])
    )
    assert forbidden.status_code == 403
    assert "lacks the 'admin' scope" in forbidden.json()["detail"]

    report = http.get(f"/security/trust/{agent_id}").json()
    assert report["score"] == 0.5
    for _ in range(3):
        http.post(f"/security/trust/{agent_id}/outcomes", json={"success": False})
    assert http.get(f"/security/trust/{agent_id}").json()["score"] < 0.5
    assert agent_id in http.get("/security/trust").json()


def test_jwks_publishes_eddsa_keys(anonymous_http: httpx.Client) -> None:
    keys = anonymous_http.get("/security/.well-known/jwks.json").json()["keys"]
    assert keys and all(k["alg"] == "EdDSA" and k["crv"] == "Ed25519" and k["kid"] for k in keys)
    assert all("d" not in k for k in keys)  # never the private part


def test_user_created_by_admin_can_log_in(http: httpx.Client, anonymous_http: httpx.Client) -> None:
    name = f"user-{uuid.uuid4().hex[:6]}"
    weak = http.post("/security/users", json={"name": name, "password": "short"})
    assert weak.status_code == 422 and "at least 12" in weak.text
    made = http.post(
        "/security/users", json={"name": name, "password": "long enough pw", "roles": ["viewer"]}
    )
    assert made.status_code == 200, made.text

    def logged_in() -> bool:
        r = grant(anonymous_http, grant_type="password", username=name, password="long enough pw")
        return r.status_code == 200 and r.json()["scope"] == "read"

    wait_for_condition(logged_in, timeout_s=10)
