"""Who still calls each legacy port, and how often: the counts behind ``aisys migrate status``.

Every :class:`~legacy_gateway.server.LegacyServer` owns one :class:`CallCounter`, which only
its port's thread writes: a call costs a dict lookup and two stores, never a Ray call. The
caller is named as the gateway knows it: the ``source_agent`` BaseAgent adds to every request
(read from the frame's bytes, no second JSON decode), else the name a registration carries for
itself, and always the connection's address. The table is bounded: past ``max_keys`` distinct
(action, caller, address) keys, further new ones are counted together under ``(other)``.
:meth:`CallCounter.snapshot` copies the table (one C-level dict copy, safe beside the writer).

Example::

    counter = CallCounter(max_keys=1000)
    counter.count("register_agent", "NLUAgent", "10.0.0.7")
    counter.snapshot()      # [CallStat(action="register_agent", agent="NLUAgent", ...)]
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Final

from pydantic import BaseModel, ConfigDict

from legacy_gateway._codec import (
    ActionRequest,
    CommandRequest,
    InvalidRequest,
    LegacyRequest,
    RawRequest,
    TypedRequest,
    iso_time,
)

__all__ = [
    "OTHER",
    "CallCounter",
    "CallStat",
    "call_action",
    "call_agent",
    "lookup_action",
    "source_agent",
]

#: The key calls are counted under once the table is full.
OTHER: Final = "(other)"
_NAME_MAX: Final = 64
_SOURCE_AGENT: Final = re.compile(rb'"source_agent"\s*:\s*"([^"\\]{1,64})"')


class CallStat(BaseModel):
    """Calls of one action on one port by one caller."""

    model_config = ConfigDict(frozen=True)

    action: str
    agent: str | None  # None: the request did not say who sent it
    peer: str  # the connection's address ("" when ZeroMQ does not know it)
    calls: int
    last_seen: str  # ISO time of the latest call
    last_seen_at: float


def _short(text: str) -> str:
    return text if len(text) <= _NAME_MAX else text[:_NAME_MAX] + "..."


def call_action(request: LegacyRequest) -> str:
    """The action a request asked for, as ``migrate status`` lists it."""
    if isinstance(request, ActionRequest):
        return _short(request.action)
    if isinstance(request, CommandRequest):
        return _short(request.command.upper())
    if isinstance(request, TypedRequest):
        return _short(f"type:{request.type}")
    if isinstance(request, RawRequest):
        return _short(request.text.strip() or "(empty)")
    assert isinstance(request, InvalidRequest)
    return "(invalid)"


def lookup_action(frame: bytes) -> str:
    """The action of a lookup frame a port's replay cache answered (it reads only those)."""
    return "get_agent_endpoint" if b"get_agent_endpoint" in frame else "DISCOVER"


def source_agent(frame: bytes) -> str | None:
    """The ``source_agent`` BaseAgent puts in every request, read from the raw frame."""
    at = frame.find(b'"source_agent"')
    if at < 0:
        return None
    found = _SOURCE_AGENT.match(frame, at)  # anchored where the key is: no scan
    return found.group(1).decode("utf-8", "replace") if found else None


def call_agent(request: LegacyRequest, frame: bytes) -> str | None:
    """Who sent a request: its ``source_agent``, else the name a registration gives itself."""
    named = source_agent(frame)
    if named is not None:
        return named
    if isinstance(request, ActionRequest) and request.action == "register_agent":
        nested = request.fields.get("registration_data")
        fields = nested if isinstance(nested, dict) else request.fields
        agent = fields.get("agent_id")
        return _short(agent) if isinstance(agent, str) and agent else None
    if isinstance(request, CommandRequest) and request.command.upper() == "REGISTER":
        name = request.payload.get("name")
        return _short(name) if isinstance(name, str) and name else None
    return None


class CallCounter:
    """Counts calls per (action, caller, address); written by one thread only.

    Args:
        max_keys: most distinct keys kept; later new keys are counted under :data:`OTHER`.
        clock: wall-clock seconds (injected in tests).
    """

    def __init__(self, max_keys: int, clock: Callable[[], float] = time.time) -> None:
        self._max_keys = max_keys
        self._clock = clock
        # (action, agent, peer) -> [calls, last seen]
        self._counts: dict[tuple[str, str | None, str], list[float]] = {}
        self.overflowed = 0

    def count(self, action: str, agent: str | None, peer: str) -> None:
        key = (action, agent, peer)
        entry = self._counts.get(key)
        if entry is None:
            if len(self._counts) >= self._max_keys:
                self.overflowed += 1
                key = (OTHER, OTHER, "")
                entry = self._counts.get(key)
            if entry is None:
                entry = self._counts[key] = [0, 0.0]
        entry[0] += 1
        entry[1] = self._clock()

    def snapshot(self) -> list[CallStat]:
        """Every counted key, most calls first."""
        table = self._counts.copy()  # one C-level copy: the port's thread may be counting
        stats = [
            CallStat(
                action=action,
                agent=agent,
                peer=peer,
                calls=int(entry[0]),
                last_seen=iso_time(entry[1]),
                last_seen_at=entry[1],
            )
            for (action, agent, peer), entry in table.items()
        ]
        return sorted(stats, key=lambda s: (-s.calls, s.action, s.agent or "", s.peer))
