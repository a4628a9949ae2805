"""Server-Sent Events of ``GET /observability/logs/stream``, and how long a stream may last.

Serve's proxy bounds a whole HTTP request, a streamed one included, by ``request_timeout_s``
(``ray.request_timeout_s``, 40 s) unless the client sends ``X-Request-Timeout-Seconds``: a
positive value replaces the bound, zero or less lifts it. When the bound is reached the proxy
cancels the replica's generator and drops the connection mid-body. So a follow ends itself,
cleanly, a little before that bound; the ``retry:`` hint of its first event makes a browser's
``EventSource`` reconnect a second later with ``Last-Event-ID``, and the stream resumes after
the last line it sent. Clients that can (``aisys logs -f``) send ``X-Request-Timeout-Seconds: 0``
and keep one stream open.

Example::

    limit_s = stream_limit_s(request.headers.get("x-request-timeout-seconds"), 40.0)
    StreamingResponse(sse(await reader.follow(flt, None), limit_s), media_type=...)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Final

from deployments.observability.log_models import LogEntry

__all__ = ["RETRY_MS", "sse", "stream_limit_s"]

#: The reconnection delay a client is told (the SSE ``retry:`` field).
RETRY_MS: Final = 1000
#: How long before Serve's bound a stream ends itself, at most.
_MARGIN_S: Final = 3.0


def stream_limit_s(header: str | None, request_timeout_s: float | None) -> float | None:
    """How long a follow may stream: a little less than Serve lets the request run.

    Args:
        header: the request's ``X-Request-Timeout-Seconds``, read the way Serve's proxy reads
            it (a positive number replaces the bound, zero or less lifts it, anything else is
            ignored).
        request_timeout_s: Serve's configured bound; None when there is none.

    Returns:
        Seconds, or None for no limit.
    """
    bound = request_timeout_s
    if header is not None:
        try:
            value = float(header)
        except ValueError:
            value = None
        if value is not None:
            bound = value if value > 0 else None
    if bound is None:
        return None
    return max(bound - min(_MARGIN_S, bound / 4), 0.0)


async def sse(
    entries: AsyncIterator[LogEntry | None],
    limit_s: float | None,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[bytes]:
    """The SSE body: an opening comment, one ``log`` event per line, keep-alive comments.

    Each event's ``id`` is the line's stream sequence number. The first chunk goes out at once
    so the client sees the headers before any line. After ``limit_s`` the stream ends with a
    comment saying why.
    """
    yield f"retry: {RETRY_MS}\n: following\n\n".encode()
    deadline = None if limit_s is None else clock() + limit_s
    iterator = aiter(entries)
    try:
        while True:
            timeout = None if deadline is None else max(deadline - clock(), 0.0)
            try:
                item = await asyncio.wait_for(anext(iterator), timeout)
            except TimeoutError:
                break
            except StopAsyncIteration:
                return
            if item is None:
                yield b": keep-alive\n\n"
            else:
                yield f"id: {item.seq}\nevent: log\ndata: {item.model_dump_json()}\n\n".encode()
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
    yield b": the request timeout is near; reconnect with Last-Event-ID to go on\n\n"
