"""CoreOrchestrator (``/core``): the agent registry over HTTP."""

__all__: list[str] = []
