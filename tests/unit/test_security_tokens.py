"""Token verification rejects every forged or stale token with the reason; keys persist."""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from actors.security.keys import KeyRing
from actors.security.models import Scope
from actors.security.passwords import hash_secret, verify_secret
from actors.security.tokens import TokenIssuer, TokenVerifier
from cluster.base.errors import TokenRejected


@pytest.fixture
def keys(tmp_path: Path) -> KeyRing:
    return KeyRing(tmp_path / "keys")


def issuer(keys: KeyRing, clock: float | None = None, ttl: int = 60) -> TokenIssuer:
    return TokenIssuer(keys, "aisys", "aisys", ttl, lambda: clock or time.time())


def verifier(keys: KeyRing, revoked: dict[str, int] | None = None) -> TokenVerifier:
    v = TokenVerifier("aisys", "aisys", leeway_s=0)
    v.update(keys.jwks(), revoked or {})
    return v


def test_valid_token_round_trips_with_its_claims(keys: KeyRing) -> None:
    token, minted = issuer(keys).mint("alice", "user", ["read", "registry:write"])
    claims = verifier(keys).verify(token)
    assert claims == minted
    assert claims.allows(Scope.REGISTRY_WRITE) and not claims.allows(Scope.ADMIN)


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _forge(keys: KeyRing, kind: str) -> str:
    now = int(time.time())
    claims = {
        "sub": "mallory", "iss": "aisys", "aud": "aisys", "iat": now, "nbf": now,
        "exp": now + 60, "jti": "j", "scope": "admin", "kind": "user",
    }  # fmt: skip
    kid = keys.active_kid
    if kind == "alg-none":
        return f"{_b64({'alg': 'none', 'kid': kid})}.{_b64(claims)}."
    if kind == "hs256-with-public-key":
        public = keys.jwks()[0]["x"].encode()
        return jwt.encode(claims, public, algorithm="HS256", headers={"kid": kid})
    if kind == "foreign-key":
        return jwt.encode(claims, Ed25519PrivateKey.generate(), "EdDSA", headers={"kid": kid})
    if kind == "unknown-kid":
        return jwt.encode(claims, keys.active_key, "EdDSA", headers={"kid": "nope"})
    if kind == "missing-claim":
        del claims["jti"]
        return jwt.encode(claims, keys.active_key, "EdDSA", headers={"kid": kid})
    if kind == "tampered":
        token = issuer(keys).mint("alice", "user", ["read"])[0]
        head, body, sig = token.split(".")
        payload = json.loads(base64.urlsafe_b64decode(body + "=="))
        payload["scope"] = "admin"
        return f"{head}.{_b64(payload)}.{sig}"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("alg-none", "algorithm 'none' is not allowed"),
        ("hs256-with-public-key", "algorithm 'HS256' is not allowed"),
        ("foreign-key", "bad signature"),
        ("unknown-kid", "unknown key"),
        ("missing-claim", "missing claim 'jti'"),
        ("tampered", "bad signature"),
    ],
)
def test_forged_tokens_are_rejected(keys: KeyRing, kind: str, reason: str) -> None:
    with pytest.raises(TokenRejected, match=reason):
        verifier(keys).verify(_forge(keys, kind))


def test_expired_not_yet_valid_wrong_audience_and_issuer(keys: KeyRing) -> None:
    now = time.time()
    expired = issuer(keys, clock=now - 120, ttl=60).mint("a", "user", ["read"])[0]
    future = issuer(keys, clock=now + 600).mint("a", "user", ["read"])[0]
    other_aud = TokenIssuer(keys, "aisys", "elsewhere", 60, time.time).mint("a", "user", [])[0]
    other_iss = TokenIssuer(keys, "evil", "aisys", 60, time.time).mint("a", "user", [])[0]
    v = verifier(keys)
    for token, reason in [
        (expired, "expired"),
        (future, "not valid yet"),
        (other_aud, "wrong audience"),
        (other_iss, "wrong issuer"),
        ("not-a-jwt", "malformed"),
    ]:
        with pytest.raises(TokenRejected, match=reason):
            v.verify(token)


def test_revoked_token_is_rejected(keys: KeyRing) -> None:
    token, claims = issuer(keys).mint("a", "agent", ["read"])
    with pytest.raises(TokenRejected, match="revoked"):
        verifier(keys, revoked={claims.jti: claims.exp}).verify(token)


def test_a_checked_token_is_remembered_yet_still_expires_and_is_revoked(
    keys: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    token, claims = issuer(keys, ttl=60).mint("a", "user", ["read"])
    now = [time.time()]
    v = TokenVerifier("aisys", "aisys", leeway_s=0, clock=lambda: now[0])
    v.update(keys.jwks(), {})
    assert v.verify(token) == claims

    def no_decode(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the signature was checked again")

    with monkeypatch.context() as patched:
        patched.setattr(jwt, "decode", no_decode)
        assert v.verify(token) == claims  # remembered: no second signature check
        now[0] = claims.exp + 1.0
        with pytest.raises(TokenRejected, match="expired"):
            v.verify(token)
    now[0] = time.time()
    assert v.verify(token) == claims
    v.update(keys.jwks(), {claims.jti: claims.exp})
    with pytest.raises(TokenRejected, match="revoked"):
        v.verify(token)
    v.update([], {})  # its key is gone: nothing remembered outlives it
    with pytest.raises(TokenRejected, match="unknown key"):
        v.verify(token)


def test_keys_are_generated_once_private_and_rotation_keeps_old_tokens_valid(
    tmp_path: Path,
) -> None:
    ring = KeyRing(tmp_path / "keys")
    [pem] = list((tmp_path / "keys").glob("*.pem"))
    assert stat.S_IMODE(os.stat(pem).st_mode) == 0o600
    old_token = issuer(ring).mint("a", "user", ["read"])[0]
    assert KeyRing(tmp_path / "keys").active_kid == ring.active_kid  # reloaded, not regenerated
    new_kid = ring.rotate()
    assert ring.active_kid == new_kid
    new_token = issuer(ring).mint("a", "user", ["read"])[0]
    v = verifier(ring)
    assert v.verify(old_token).sub == v.verify(new_token).sub == "a"
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid


def test_password_hashes_are_salted_and_verify() -> None:
    first, second = hash_secret("correct horse"), hash_secret("correct horse")
    assert first != second and first.startswith("scrypt$")
    assert verify_secret("correct horse", first)
    assert not verify_secret("wrong horse", first)
    assert not verify_secret("x", "sha256$legacy")
