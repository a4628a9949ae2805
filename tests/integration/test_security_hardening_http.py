"""Security hardening against the running system: authentication before parsing, login floods,
legacy identities (unpromoted vs promoted), and revocations confirmed by every replica."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import zmq

from actors.security.keys import KeyRing
from actors.security.tokens import TokenIssuer
from cluster.base.settings import LegacyService, Settings
from tests.conftest import wait_for_condition
from tests.integration._legacy_client import (  # noqa: F401 (fixtures)
    LegacyClient,
    ports_fixture,
    zctx_fixture,
)
from tests.integration.test_auth_enforcement import MUTATING_ROUTES

pytestmark = pytest.mark.integration

MALFORMED = b'{"agent_id": '


def test_no_token_is_refused_before_a_malformed_body_is_parsed(
    http: httpx.Client, anonymous_http: httpx.Client
) -> None:
    body_routes = sorted({(m, p) for _, m, p, body, _ in MUTATING_ROUTES if body is not None})
    for method, path in body_routes:
        refused = anonymous_http.request(
            method, path, content=MALFORMED, headers={"content-type": "application/json"}
        )
        assert refused.status_code == 401, (method, path, refused.text)
        assert "no bearer token" in refused.json()["detail"]
    # With the admin's token the same body reaches validation; open routes stay open.
    parsed = http.post(
        "/core/agents", content=MALFORMED, headers={"content-type": "application/json"}
    )
    assert parsed.status_code == 422
    open_route = anonymous_http.post(
        "/security/token", content=MALFORMED, headers={"content-type": "application/json"}
    )
    assert open_route.status_code == 422
    assert anonymous_http.get("/core/agents?health=bogus").status_code == 401  # query too


@pytest.fixture
def auth_port(
    zctx: zmq.Context[zmq.Socket[bytes]], ports: dict[str, int]
) -> Iterator[LegacyClient]:
    client = LegacyClient(zctx, ports[f"pc2/{LegacyService.AUTHENTICATION}"])
    yield client
    client.close()


def test_a_login_flood_gets_429_with_retry_after_and_an_error_reply_on_the_legacy_port(
    aisys_system: Settings, anonymous_http: httpx.Client, auth_port: LegacyClient
) -> None:
    limit = aisys_system.security.login_failures_per_subject
    name = f"flood-{uuid.uuid4().hex[:6]}"
    body = {"grant_type": "password", "username": name, "password": "not it at all"}
    for _ in range(limit):
        assert anonymous_http.post("/security/token", json=body).status_code == 401
    limited = anonymous_http.post("/security/token", json=body)
    assert limited.status_code == 429, limited.text
    assert f"too many failed logins for '{name}'" in limited.json()["detail"]
    assert 1 <= int(limited.headers["retry-after"]) <= aisys_system.security.login_window_s

    legacy_name = f"flood-{uuid.uuid4().hex[:6]}"
    wrong = {"action": "login", "user_id": legacy_name, "password": "wrong password"}
    for _ in range(limit):
        assert "invalid credentials" in auth_port.send_json(wrong)["message"]
    flooded = auth_port.send_json(wrong)
    assert flooded["status"] == "error"
    assert f"too many failed logins for '{legacy_name}'" in flooded["message"]


def test_a_legacy_identity_reaches_http_only_once_promoted(
    auth_port: LegacyClient, http: httpx.Client, anonymous_http: httpx.Client
) -> None:
    name, password = f"legacy-{uuid.uuid4().hex[:6]}", "eight ch"
    short = auth_port.send_json({"action": "register", "user_id": name, "password": "7 chars"})
    assert short["status"] == "error" and "at least 8 characters" in short["message"]
    registered = auth_port.send_json({"action": "register", "user_id": name, "password": password})
    assert registered["status"] == "success", registered

    def login() -> dict[str, str]:
        return {
            "Authorization": "Bearer "
            + auth_port.send_json({"action": "login", "user_id": name, "password": password})[
                "session"
            ]["token"]
        }

    unpromoted = login()
    refused = anonymous_http.get("/core/agents", headers=unpromoted)
    assert refused.status_code == 403 and "lacks the 'read' scope" in refused.text
    assert anonymous_http.get("/security/verify", headers=unpromoted).json()["claims"]["kind"] == (
        "legacy"
    )
    # It is no HTTP user: the password grant does not know it.
    grant = {"grant_type": "password", "username": name, "password": password}
    assert anonymous_http.post("/security/token", json=grant).status_code == 401

    listed = {i["name"]: i["roles"] for i in http.get("/security/legacy-identities").json()}
    assert listed[name] == []
    assert anonymous_http.get("/security/legacy-identities", headers=unpromoted).status_code == 403
    promoted = http.post(f"/security/legacy-identities/{name}/promote", json={"roles": ["viewer"]})
    assert promoted.status_code == 200 and promoted.json()["roles"] == ["viewer"]

    viewer = login()
    assert anonymous_http.get("/core/agents", headers=viewer).status_code == 200
    write = anonymous_http.post("/security/agents", json={"agent_id": "x"}, headers=viewer)
    assert write.status_code == 403
    demoted = http.post(f"/security/legacy-identities/{name}/promote", json={"roles": []})
    assert demoted.status_code == 200 and demoted.json()["roles"] == []
    wait_for_condition(  # taking the scope away revoked the viewer token everywhere
        lambda: anonymous_http.get("/core/agents", headers=viewer).status_code == 401, timeout_s=5
    )
    assert http.delete(f"/security/legacy-identities/{name}").status_code == 204


def test_revoke_returns_once_every_replica_of_every_app_enforces_it(
    aisys_system: Settings, http: httpx.Client, anonymous_http: httpx.Client
) -> None:
    sec = aisys_system.security
    keys = KeyRing(aisys_system.data_dir / "security" / "keys")
    token = TokenIssuer(keys, sec.issuer, sec.audience, 600, time.time).mint(
        "ops", "user", ["admin"]
    )[0]
    auth = {"Authorization": f"Bearer {token}"}
    probes = ["/core/agents", "/security/trust", "/resources/leases", "/errors/counts",
              "/legacy/error-bridge"]  # fmt: skip
    assert [anonymous_http.get(p, headers=auth).status_code for p in probes] == [200] * 5

    revoked = http.post("/security/revoke", json={"token": token})
    assert revoked.status_code == 200, revoked.text
    answer = revoked.json()
    assert answer["pending"] == [], answer
    apps = {name.split("/")[0] for name in answer["applied_by"]}
    assert {"core", "security", "resources", "errors", "legacy", "observability"} <= apps, answer
    # No waiting: every replica had it when /revoke returned.
    assert [anonymous_http.get(p, headers=auth).status_code for p in probes] == [401] * 5
