"""Stateful Ray actors that hold aisys's shared state (the agent registry, ...)."""

__all__: list[str] = []
