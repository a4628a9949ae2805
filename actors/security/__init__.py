"""SecurityGateway state: identities, signing keys, revocations and trust scores."""

from actors.security.core import SecurityCore

__all__ = ["SecurityCore"]
