"""SecurityGateway (``/security``): JWT for users and agents, revocation, trust scores."""

__all__: list[str] = []
