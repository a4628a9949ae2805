"""An asyncio ZeroMQ ROUTER server for one legacy port.

Legacy clients are REQ sockets with one request outstanding each; a REQ socket that never gets
a reply is wedged for good. So the server answers **every** request exactly once: what cannot
be decoded gets an error reply from :mod:`legacy_gateway._codec`, a handler that raises or
exceeds ``reply_timeout_s`` gets an error reply in the caller's dialect, and past
``max_pending`` outstanding slow requests new ones are refused at once with a "busy" reply.
Handlers answer hot reads synchronously (no task per request); only writes return awaitables.

Example::

    server = LegacyServer(zmq.Context(), "0.0.0.0", 7100, handler, ServerLimits(1 << 20, 4.0, 1024))
    server.start()          # raises PortInUse naming the owner when 7100 is taken
    ...
    await server.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol

import psutil
import zmq

from cluster.errors import PortInUse
from legacy_gateway._codec import (
    Dialect,
    LegacyRequest,
    Reply,
    decode,
    dialect_of,
    encode,
    error_reply,
)

__all__ = ["LegacyServer", "Outcome", "PortHandler", "Received", "ServerLimits", "port_owner"]

logger = logging.getLogger(__name__)

#: What a handler returns: a reply, an already encoded reply frame, or an awaitable of either.
Outcome = Reply | bytes | Awaitable[Reply | bytes]


class Received:
    """The request frame as received: its bytes and, on demand, the sender's address."""

    __slots__ = ("_frame",)

    def __init__(self, frame: zmq.Frame) -> None:
        self._frame = frame

    @property
    def data(self) -> bytes:
        return self._frame.bytes

    def peer(self) -> str:
        """The sender's IP address ("" when ZeroMQ does not know it)."""
        with contextlib.suppress(zmq.ZMQError):
            return str(self._frame.get("Peer-Address"))
        return ""


class PortHandler(Protocol):
    """Answers the requests of one legacy port."""

    service: str

    def handle(self, request: LegacyRequest, received: Received) -> Outcome:
        """Reply at once (hot reads, possibly pre-encoded) or return an awaitable (writes)."""
        ...


@dataclass(frozen=True)
class ServerLimits:
    """Bounds every port enforces (``legacy_gateway`` settings)."""

    max_frame_bytes: int
    reply_timeout_s: float
    max_pending: int


def port_owner(port: int) -> str:
    """Describe the process listening on TCP ``port``, for the "port in use" error."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return "a process this user may not inspect (psutil was denied the socket table)"
    for conn in connections:
        if conn.status != psutil.CONN_LISTEN or not conn.laddr or conn.laddr.port != port:
            continue
        if conn.pid is None:
            return "a process of another user"
        try:
            proc = psutil.Process(conn.pid)
            command = " ".join(proc.cmdline())[:200]
            return f"pid {conn.pid} ({proc.name()}: {command})"
        except psutil.Error:
            return f"pid {conn.pid}"
    return "an unknown process (no listening socket found for it)"


def _split_envelope(frames: list[zmq.Frame]) -> tuple[list[bytes], list[zmq.Frame]]:
    """Routing frames up to the first empty delimiter (or just the identity), and the body."""
    split = next((i for i, f in enumerate(frames) if i > 0 and len(f) == 0), None)
    envelope = [f.bytes for f in frames[: (split + 1 if split is not None else 1)]]
    return envelope, frames[len(envelope) :]


def _internal_message(exc: Exception) -> str:
    return f"Internal server error: {type(exc).__name__}: {exc}"


def _internal_error(request: LegacyRequest, exc: Exception) -> Reply:
    return error_reply(dialect_of(request), _internal_message(exc))


class LegacyServer:
    """A ROUTER socket on one port, answering every REQ client through ``handler``.

    The socket is served from the running event loop by a reader callback on its file
    descriptor, which drains every queued request with non-blocking calls: no future or task
    per request on the hot path. ZeroMQ's descriptor is edge-triggered, so the socket is drained
    again after every send made outside the callback (replies of slow requests).
    """

    def __init__(
        self,
        ctx: zmq.Context[Any],
        bind: str,
        port: int,
        handler: PortHandler,
        limits: ServerLimits,
    ) -> None:
        self.port = port
        self._address = f"tcp://{bind}:{port}"
        self._handler = handler
        self._limits = limits
        self._sock: zmq.Socket[bytes] = zmq.Socket(ctx, zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failed: BaseException | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self.answered = 0

    @property
    def running(self) -> bool:
        return self._loop is not None and self._failed is None and not self._sock.closed

    def start(self) -> None:
        """Bind the port and start serving; needs a running event loop.

        Raises:
            PortInUse: the port is bound by another process (named in the message).
        """
        try:
            self._sock.bind(self._address)
        except zmq.ZMQError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            self._sock.close(linger=0)
            raise PortInUse(self.port, port_owner(self.port)) from exc
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.FD, self._drain)
        self._loop.call_soon(self._drain)  # requests queued before the reader was added

    def abort(self) -> None:
        """Stop at once without waiting (a failed start of the host's gateway)."""
        for task in self._pending:
            task.cancel()
        self._stop_reading()
        self._sock.close(linger=0)

    async def close(self) -> None:
        self._stop_reading()
        tasks = list(self._pending)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._sock.close(linger=0)

    def _stop_reading(self) -> None:
        if self._loop is not None and not self._sock.closed:
            self._loop.remove_reader(self._sock.FD)

    def _readable(self) -> bool:
        events = self._sock.getsockopt(zmq.EVENTS)
        return isinstance(events, int) and bool(events & zmq.POLLIN)

    def _drain(self) -> None:
        if self._sock.closed or self._failed is not None:
            return
        try:
            while self._readable():
                frames = self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
                try:
                    self._answer(frames)
                except zmq.ZMQError:
                    raise
                except Exception:  # loop boundary: one bad request must not stop the port
                    logger.exception("legacy port %d failed to answer a request", self.port)
        except zmq.ZMQError as exc:  # the socket itself broke: stop, check_health reports it
            logger.exception("legacy port %d stopped", self.port)
            self._failed = exc
            self._stop_reading()

    def _answer(self, frames: list[zmq.Frame]) -> None:
        if len(frames) == 3 and len(frames[1]) == 0:  # what a REQ client sends
            envelope = [frames[0].bytes, b""]
            body = frames[2:]
        else:  # a DEALER, with or without the empty delimiter, or extra frames
            envelope, body = _split_envelope(frames)
        if len(body) != 1:
            reply: Reply = error_reply(
                Dialect.ACTION, f"Invalid request: expected one frame, got {len(body)}"
            )
            self._send(envelope, reply)
            return
        request = decode(body[0].bytes, self._limits.max_frame_bytes)
        try:
            outcome = self._handler.handle(request, Received(body[0]))
        except Exception as exc:  # the one reply the client waits for must still be sent
            logger.exception("legacy port %d: handler failed", self.port)
            outcome = _internal_error(request, exc)
        if isinstance(outcome, bytes | Reply):
            self._send(envelope, outcome)
            return
        dialect = dialect_of(request)
        if len(self._pending) >= self._limits.max_pending:
            if inspect.iscoroutine(outcome):
                outcome.close()
            busy = f"{self._handler.service} is busy: {len(self._pending)} requests pending"
            self._send(envelope, error_reply(dialect, busy))
            return
        task = asyncio.get_running_loop().create_task(self._finish(envelope, dialect, outcome))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _finish(
        self, envelope: list[bytes], dialect: Dialect, outcome: Awaitable[Reply | bytes]
    ) -> None:
        reply: Reply | bytes
        try:
            reply = await asyncio.wait_for(outcome, self._limits.reply_timeout_s)
        except TimeoutError:
            reply = error_reply(
                dialect,
                f"{self._handler.service} did not answer within {self._limits.reply_timeout_s}s",
            )
        except Exception as exc:  # the one reply the client waits for must still be sent
            logger.exception("legacy port %d: handler failed", self.port)
            reply = error_reply(dialect, _internal_message(exc))
        if self._sock.closed:
            return
        self._send(envelope, reply)
        self._drain()  # the send may have consumed the descriptor's edge

    def _send(self, envelope: list[bytes], reply: Reply | bytes) -> None:
        frame = reply if isinstance(reply, bytes) else encode(reply)
        # ROUTER never blocks on send: an unroutable (vanished) peer's reply is dropped.
        self._sock.send_multipart([*envelope, frame], flags=zmq.NOBLOCK)
        self.answered += 1
