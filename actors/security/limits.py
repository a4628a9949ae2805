"""Sliding-window counters for failed logins and trust reports, bounded in memory."""

from __future__ import annotations

import threading
from collections import deque

__all__ = ["WindowCounter"]


class WindowCounter:
    """Counts events per key in the last ``window_s`` seconds; at ``limit`` the key is held.

    Args:
        limit: events per key allowed in one window.
        window_s: the window's length.
        max_keys: keys remembered at most (the oldest are forgotten first), so a flood of
            invented keys cannot grow memory without bound.
    """

    def __init__(self, limit: int, window_s: float, max_keys: int = 10_000) -> None:
        self._limit = limit
        self._window_s = window_s
        self._max_keys = max_keys
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, key: str, now: float) -> float | None:
        """Seconds until ``key`` may act again, or None when it is under its limit."""
        with self._lock:
            events = self._live(key, now)
            if events is None or len(events) < self._limit:
                return None
            return max(events[-self._limit] + self._window_s - now, 0.001)

    def add(self, key: str, now: float) -> None:
        with self._lock:
            events = self._live(key, now)
            if events is None:
                if len(self._events) >= self._max_keys:
                    self._prune(now)
                events = self._events[key] = deque(maxlen=self._limit)
            events.append(now)

    def reset(self, key: str) -> None:
        with self._lock:
            self._events.pop(key, None)

    def _live(self, key: str, now: float) -> deque[float] | None:
        events = self._events.get(key)
        if events is None:
            return None
        while events and events[0] <= now - self._window_s:
            events.popleft()
        if not events:
            del self._events[key]
            return None
        return events

    def _prune(self, now: float) -> None:
        for key in list(self._events):
            self._live(key, now)
        while len(self._events) >= self._max_keys:
            del self._events[next(iter(self._events))]
