"""A typed actor call: what every state actor's client returns.

Ray's handles are untyped (``handle.method.remote(...)`` is ``Any``); each state actor has a
client (``actors/<state>/client.py``) whose methods name their arguments and their result type
and return a :class:`Call`. Async code awaits it; sync code (the operator side) blocks on it
with a timeout.

Example::

    change = await registry.register(registration)  # async: a Change
    agents = registry.list_agents().get(timeout_s=10)  # sync: a list[AgentRecord]
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Generic, TypeVar, cast

import ray

__all__ = ["Call"]

T = TypeVar("T")


class Call(Generic[T]):
    """One actor call in flight (a Ray ``ObjectRef``) whose result is a ``T``."""

    def __init__(self, ref: Any) -> None:
        self.ref = ref

    def __await__(self) -> Generator[Any, None, T]:
        result = yield from self.ref.__await__()
        return cast(T, result)

    def get(self, timeout_s: float | None = None) -> T:
        """Block until the result is there (``ray.get``); raises what the actor raised, or
        ``ray.exceptions.GetTimeoutError`` after ``timeout_s``."""
        return cast(T, ray.get(self.ref, timeout=timeout_s))
