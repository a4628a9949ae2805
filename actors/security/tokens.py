"""Minting and verifying access JWTs: EdDSA only, every registered claim required.

The algorithm list is fixed here and never read from a token, so ``alg: none`` and HS256 tokens
signed with the public key as an HMAC secret are rejected before any signature check.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Collection, Mapping
from typing import Literal

import jwt

from actors.security.keys import KeyRing
from actors.security.models import Claims
from cluster.base.errors import TokenRejected

__all__ = ["ALGORITHMS", "TokenIssuer", "TokenVerifier"]

ALGORITHMS = ["EdDSA"]
_REQUIRED = ["exp", "iat", "nbf", "iss", "aud", "sub", "jti", "scope"]
#: Tokens whose signature and claims were checked, remembered per verifier at most.
_CHECKED_MAX = 4096

Clock = Callable[[], float]


class TokenIssuer:
    """Signs access tokens with the key ring's active key."""

    def __init__(self, keys: KeyRing, issuer: str, audience: str, ttl_s: int, clock: Clock):
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._ttl_s = ttl_s
        self._clock = clock

    def mint(
        self, subject: str, kind: Literal["user", "agent", "legacy"], scopes: Collection[str]
    ) -> tuple[str, Claims]:
        now = int(self._clock())
        claims = Claims(
            sub=subject,
            iss=self._issuer,
            aud=self._audience,
            iat=now,
            nbf=now,
            exp=now + self._ttl_s,
            jti=secrets.token_hex(16),
            scope=" ".join(sorted(scopes)),
            kind=kind,
        )
        token = jwt.encode(
            claims.model_dump(),
            self._keys.active_key,
            algorithm="EdDSA",
            headers={"kid": self._keys.active_kid},
        )
        return token, claims


class TokenVerifier:
    """Verifies access tokens locally with published public keys and a revocation set.

    A token whose signature and claims passed is remembered (at most ``_CHECKED_MAX``, all
    forgotten whenever the keys or the revocations change), so a client sending the same token
    again pays only the checks that can change with time: expiry and revocation.

    Args:
        issuer: required ``iss``.
        audience: required ``aud``.
        leeway_s: clock skew allowed on ``exp`` and ``nbf``.
        clock: what a remembered token's expiry is checked against.
    """

    def __init__(self, issuer: str, audience: str, leeway_s: int, clock: Clock = time.time) -> None:
        self._issuer = issuer
        self._audience = audience
        self._leeway_s = leeway_s
        self._keys: dict[str, jwt.PyJWK] = {}
        self._revoked: Mapping[str, int] = {}
        self._checked: dict[str, Claims] = {}
        self._clock = clock

    def update(self, jwks: list[dict[str, str]], revoked: Mapping[str, int]) -> None:
        """Replace the known public keys and the revoked token ids."""
        self._keys = {jwk["kid"]: jwt.PyJWK(jwk) for jwk in jwks}
        self._revoked = dict(revoked)
        self._checked = {}

    def verify(self, token: str) -> Claims:
        """Return the claims of a valid token.

        Raises:
            TokenRejected: the reason names the failed check (expired, audience, revoked, ...).
        """
        checked = self._checked.get(token)
        if checked is not None:
            # Signature, issuer, audience and nbf passed before; the clock only moves on.
            if checked.exp <= self._clock() - self._leeway_s:
                self._checked.pop(token, None)
                raise TokenRejected("expired")
            if checked.jti in self._revoked:
                raise TokenRejected("revoked")
            return checked
        claims = self._verify_fully(token)
        if len(self._checked) >= _CHECKED_MAX:
            self._checked.clear()
        self._checked[token] = claims
        return claims

    def _verify_fully(self, token: str) -> Claims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise TokenRejected(f"malformed token ({exc})") from exc
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise TokenRejected(f"algorithm {alg!r} is not allowed (only {ALGORITHMS})")
        key = self._keys.get(str(header.get("kid")))
        if key is None:
            raise TokenRejected("signed by an unknown key")
        try:
            payload = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway_s,
                options={"require": _REQUIRED},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenRejected("expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise TokenRejected("not valid yet (nbf/iat in the future)") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenRejected("wrong audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenRejected("wrong issuer") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected(f"missing claim '{exc.claim}'") from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenRejected("bad signature") from exc
        except jwt.InvalidTokenError as exc:
            raise TokenRejected(f"invalid ({exc})") from exc
        try:
            claims = Claims.model_validate(payload)
        except ValueError as exc:
            raise TokenRejected("claims do not match the aisys token format") from exc
        if claims.jti in self._revoked:
            raise TokenRejected("revoked")
        return claims
