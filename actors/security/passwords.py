"""Password and secret hashing with scrypt (memory-hard, in the standard library)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["hash_secret", "verify_secret"]

# scrypt cost: N=2**14, r=8 uses 16 MiB per hash (OWASP's minimum for scrypt).
_N, _R, _P = 2**14, 8, 1
_PREFIX = "scrypt"


def _derive(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024)


def hash_secret(secret: str) -> str:
    """Return ``scrypt$N$r$p$salt$hash`` for ``secret`` with a fresh random salt."""
    salt = secrets.token_bytes(16)
    digest = _derive(secret, salt, _N, _R, _P)
    b64 = base64.b64encode
    return f"{_PREFIX}${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_secret(secret: str, encoded: str) -> bool:
    """Check ``secret`` against an encoded hash in constant time; False for unknown formats."""
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != _PREFIX:
        return False
    n, r, p = (int(x) for x in parts[1:4])
    salt, expected = base64.b64decode(parts[4]), base64.b64decode(parts[5])
    return hmac.compare_digest(_derive(secret, salt, n, r, p), expected)
