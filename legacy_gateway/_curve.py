"""CurveZMQ on the legacy ports, switched on as the legacy ``secure_zmq`` module did it.

The legacy agents' secure mode (``docs/legacy-protocol.md`` 3.4) kept pyzmq ``zmq.auth`` certificate
files in one directory: ``server.key_secret`` (the server's key pair) and the clients' public
keys (``*.key``). With ``legacy_gateway.curve_certificates_dir`` set, every legacy port is a
CURVE server with that key pair, and a ZAP authenticator on the gateway's context lets in only
clients whose public key is in the directory. Without it the ports are plaintext, as every
deployed legacy path was.

Example::

    curve = CurveServer.load(Path("/opt/legacy/certificates"))
    auth = curve.start_authenticator(ctx)   # before any socket binds
    curve.apply(sock)
    ...
    auth.stop()
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from cluster.base.errors import ConfigError

__all__ = ["SERVER_SECRET_FILE", "CurveServer"]

#: The server's key pair in the certificates directory (pyzmq ``zmq.auth`` format).
SERVER_SECRET_FILE: Final = "server.key_secret"


@dataclass(frozen=True)
class CurveServer:
    """The server key pair every legacy port uses, and where the allowed client keys are."""

    public_key: bytes
    secret_key: bytes
    directory: Path

    @classmethod
    def load(cls, directory: Path) -> CurveServer:
        """Read ``server.key_secret`` from ``directory``.

        Raises:
            ConfigError: the directory or the server's secret key file is missing or unreadable.
        """
        path = directory / SERVER_SECRET_FILE
        try:
            public, secret = zmq.auth.load_certificate(path)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"legacy_gateway.curve_certificates_dir: cannot read {path} ({exc}); create the "
                "legacy certificates with zmq.auth.create_certificates or unset the setting"
            ) from exc
        if secret is None:
            raise ConfigError(
                f"legacy_gateway.curve_certificates_dir: {path} holds no secret key; it must be "
                "the server's .key_secret file"
            )
        return cls(public, secret, directory)

    def start_authenticator(self, ctx: zmq.Context[Any]) -> ThreadAuthenticator:
        """Start ZAP on ``ctx``, letting in clients whose public key file is in the directory."""
        auth = ThreadAuthenticator(ctx)
        auth.start()
        auth.configure_curve(domain="*", location=str(self.directory))
        return auth

    def apply(self, sock: zmq.Socket[Any]) -> None:
        """Make ``sock`` a CURVE server with this key pair (before it binds)."""
        sock.curve_secretkey = self.secret_key
        sock.curve_publickey = self.public_key
        sock.curve_server = True
