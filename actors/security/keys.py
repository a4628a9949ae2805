"""The signing keys: Ed25519, generated once into the data dir (mode 0600), rotated by ``kid``.

Files live in ``<data_dir>/security/keys/<kid>.pem``; the newest is the active signing key and
every key still on disk is published in the JWKS, so tokens signed before a rotation keep
verifying until their key file is removed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

__all__ = ["KeyRing"]


class KeyRing:
    """Ed25519 signing keys by ``kid``.

    Args:
        directory: where key files live; created with mode 0700.
    """

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._keys: dict[str, Ed25519PrivateKey] = {}
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._dir.chmod(0o700)  # mkdir's mode does nothing to a directory that was there
        for path in sorted(self._dir.glob("*.pem")):
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if isinstance(key, Ed25519PrivateKey):
                self._keys[path.stem] = key
        if not self._keys:
            self.rotate()

    @property
    def active_kid(self) -> str:
        return max(self._keys)  # kids sort by creation time

    @property
    def active_key(self) -> Ed25519PrivateKey:
        return self._keys[self.active_kid]

    def rotate(self) -> str:
        """Generate a new active key; older keys stay published. Returns the new ``kid``."""
        kid = f"{time.time_ns():020d}"
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path = self._dir / f"{kid}.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        self._keys[kid] = key
        return kid

    def jwks(self) -> list[dict[str, str]]:
        """Public keys as JWKs with ``kid``, ``alg`` and ``use``."""
        keys = []
        for kid, key in sorted(self._keys.items()):
            jwk = json.loads(OKPAlgorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "alg": "EdDSA", "use": "sig"})
        return keys
