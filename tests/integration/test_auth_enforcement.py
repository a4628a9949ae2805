"""Every mutating route of every service refuses requests without the right, valid token.

One parametrised test per route family: no token (401), a valid token without the scope (403),
and every kind of bad token (401 with the reason): expired, not yet valid, wrong audience,
wrong issuer, tampered, ``alg: none``, HS256 signed with the public key, and revoked.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable

import httpx
import jwt
import pytest

from actors.security.keys import KeyRing
from actors.security.tokens import TokenIssuer
from cluster.base.settings import Settings
from tests.conftest import wait_for_condition

pytestmark = pytest.mark.integration

#: (family, method, path, json body, scope the route needs)
MUTATING_ROUTES: list[tuple[str, str, str, object, str]] = [
    (
        "registry",
        "POST",
        "/core/agents",
        {"agent_id": "x", "host": "h", "port": 1},
        "registry:write",
    ),
    ("registry", "PUT", "/core/agents/x/heartbeat", {}, "registry:write"),
    ("registry", "DELETE", "/core/agents/x", None, "registry:write"),
    ("requests", "POST", "/core/requests", {"type": "text", "data": "hi"}, "requests:submit"),
    ("requests", "POST", "/core/requests/wait", {"type": "text", "data": "hi"}, "requests:submit"),
    ("requests", "POST", "/core/interrupt", {"session_id": "s"}, "requests:submit"),
    ("requests", "DELETE", "/core/interrupt", None, "requests:submit"),
    ("services", "POST", "/core/services/core/restart", None, "admin"),
    ("resources", "POST", "/resources/leases", {"owner": "o", "vram_mb": 1}, "resources:lease"),
    ("resources", "DELETE", "/resources/leases/x", None, "resources:lease"),
    ("resources", "PUT", "/resources/leases/x/heartbeat", {}, "resources:lease"),
    ("resources", "POST", "/resources/tasks", {"function": "m:f"}, "resources:lease"),
    ("resources", "PUT", "/resources/optimizer", {}, "admin"),
    ("resources", "POST", "/resources/workers", {"cls": "m:C", "vram_mb": 1}, "resources:lease"),
    ("resources", "POST", "/resources/workers/x/call", {"method": "m"}, "resources:lease"),
    ("resources", "DELETE", "/resources/workers/x", None, "resources:lease"),
    ("errors", "POST", "/errors/", {"agent": "a", "message": "m"}, "errors:publish"),
    ("security", "POST", "/security/users", {"name": "u", "password": "p" * 12}, "admin"),
    ("security", "POST", "/security/agents", {"agent_id": "a"}, "admin"),
    ("security", "POST", "/security/trust/a/outcomes", {"success": True}, "admin"),
]
FAMILIES = sorted({route[0] for route in MUTATING_ROUTES})


def _keys(settings: Settings) -> KeyRing:
    return KeyRing(settings.data_dir / "security" / "keys")


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def bad_tokens(settings: Settings, http: httpx.Client) -> dict[str, tuple[str, str]]:
    """Token kind -> (token, expected reason fragment)."""
    keys = _keys(settings)
    sec = settings.security
    now = time.time()

    def mint(clock: float = now, iss: str = sec.issuer, aud: str = sec.audience) -> str:
        issuer = TokenIssuer(keys, iss, aud, 60, lambda: clock)
        return issuer.mint("admin", "user", ["admin"])[0]

    valid = mint()
    head, body, sig = valid.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    tampered = f"{head}.{_b64({**claims, 'sub': 'root'})}.{sig}"
    alg_none = f"{_b64({'alg': 'none', 'kid': keys.active_kid})}.{body}."
    public_x = keys.jwks()[-1]["x"].encode()
    hs256 = jwt.encode(claims, public_x, algorithm="HS256", headers={"kid": keys.active_kid})
    revoked = mint()
    assert http.post("/security/revoke", json={"token": revoked}).status_code == 200
    return {
        "expired": (mint(clock=now - 3600), "expired"),
        "not-yet-valid": (mint(clock=now + 3600), "not valid yet"),
        "wrong-audience": (mint(aud="someone-else"), "wrong audience"),
        "wrong-issuer": (mint(iss="not-aisys"), "wrong issuer"),
        "tampered": (tampered, "bad signature"),
        "alg-none": (alg_none, "algorithm 'none' is not allowed"),
        "hs256-public-key": (hs256, "algorithm 'HS256' is not allowed"),
        "revoked": (revoked, "revoked"),
    }


def _call(client: httpx.Client, method: str, path: str, body: object, token: str | None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.request(method, path, json=body, headers=headers)


@pytest.fixture(scope="module")
def read_only_token(aisys_system: Settings) -> str:
    keys = _keys(aisys_system)
    sec = aisys_system.security
    return TokenIssuer(keys, sec.issuer, sec.audience, 600, time.time).mint(
        "viewer", "user", ["read"]
    )[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_mutating_routes_reject_missing_insufficient_and_bad_tokens(
    family: str,
    aisys_system: Settings,
    http: httpx.Client,
    anonymous_http: httpx.Client,
    read_only_token: str,
) -> None:
    tokens = bad_tokens(aisys_system, http)
    for _, method, path, body, scope in (r for r in MUTATING_ROUTES if r[0] == family):
        missing = _call(anonymous_http, method, path, body, None)
        assert missing.status_code == 401, (method, path, missing.text)
        assert "no bearer token" in missing.json()["detail"]
        weak = _call(anonymous_http, method, path, body, read_only_token)
        assert weak.status_code == 403, (method, path, weak.text)
        assert f"lacks the '{scope}' scope" in weak.json()["detail"]
        for kind, (token, reason) in tokens.items():
            response = _call(anonymous_http, method, path, body, token)
            assert response.status_code == 401, (kind, method, path, response.text)
            assert reason in response.json()["detail"], (kind, response.text)


def test_read_routes_need_the_read_scope(anonymous_http: httpx.Client, read_only_token: str):
    assert anonymous_http.get("/core/agents").status_code == 401
    ok = anonymous_http.get("/core/agents", headers={"Authorization": f"Bearer {read_only_token}"})
    assert ok.status_code == 200


def test_revocation_reaches_every_service_within_a_second(
    aisys_system: Settings, http: httpx.Client, anonymous_http: httpx.Client
) -> None:
    sec = aisys_system.security
    token = TokenIssuer(_keys(aisys_system), sec.issuer, sec.audience, 600, time.time).mint(
        "ops", "user", ["admin"]
    )[0]
    auth = {"Authorization": f"Bearer {token}"}
    probes: dict[str, Callable[[], httpx.Response]] = {
        "core": lambda: anonymous_http.get("/core/agents", headers=auth),
        "security": lambda: anonymous_http.get("/security/trust", headers=auth),
        "resources": lambda: anonymous_http.get("/resources/leases", headers=auth),
        "errors": lambda: anonymous_http.get("/errors/counts", headers=auth),
        "legacy": lambda: anonymous_http.get("/legacy/error-bridge", headers=auth),
    }
    for name, probe in probes.items():
        assert probe().status_code == 200, name
    started = time.monotonic()
    assert http.post("/security/revoke", json={"token": token}).status_code == 200

    def refused_everywhere() -> bool:
        return all(probe().status_code == 401 for probe in probes.values())

    wait_for_condition(refused_everywhere, timeout_s=5, interval_s=0.02)
    assert time.monotonic() - started < 1.0
