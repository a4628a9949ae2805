"""An asyncio ZeroMQ ROUTER server for one legacy port.

Legacy clients are REQ sockets with one request outstanding each; a REQ socket that never gets
a reply is wedged for good. So the server answers **every** request exactly once: what cannot
be decoded gets an error reply from :mod:`legacy_gateway._codec`, a handler that raises or
exceeds ``reply_timeout_s`` gets an error reply in the caller's dialect, and past
``max_pending`` outstanding slow requests new ones are refused at once with a "busy" reply.
Handlers answer hot reads synchronously, on the port's own thread; only writes return
awaitables, which run on the event loop.

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
import secrets
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import psutil
import zmq

from cluster.base.aio import cancel_and_wait
from cluster.base.errors import PortInUse
from legacy_gateway._codec import (
    Dialect,
    LegacyRequest,
    Reply,
    decode,
    dialect_of,
    encode,
    error_reply,
)
from legacy_gateway._curve import CurveServer
from legacy_gateway.usage import CallCounter, call_action, call_agent, lookup_action, source_agent

__all__ = [
    "LegacyServer",
    "Outcome",
    "PortHandler",
    "Received",
    "ServerLimits",
    "hard_frame_limit",
    "listener_cmdline",
    "port_listened",
    "port_owner",
]

logger = logging.getLogger(__name__)

#: Control frame the event loop sends the port's thread through the relay to end it.
_STOP = b"\x00stop"
_STOP_WAIT_S = 5.0
_RCVMORE = int(zmq.RCVMORE)
#: Most routing frames kept for the reply to a message over ``max_message_bytes``.
_MAX_ENVELOPE = 8
#: Longest routing frame kept for that reply (libzmq's routing ids are at most 255 bytes).
_MAX_ROUTING_BYTES = 255
#: Most connections whose peer address the call counter remembers (then it starts afresh).
_MAX_PEERS = 10_000
_NOBLOCK = int(zmq.NOBLOCK)
_MORE = int(zmq.SNDMORE) | _NOBLOCK
#: libzmq's send without pyzmq's Python-level wrapper (which only adds routing-id/group).
_send_frame = zmq.backend.Socket.send

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


#: Optional handler attribute ``replay``: the encoded reply to a request frame seen before,
#: answered without decoding it, or None to take the normal path.
Replay = Callable[[bytes], bytes | None]


@dataclass(frozen=True)
class ServerLimits:
    """Bounds every port enforces (``legacy_gateway`` settings)."""

    max_frame_bytes: int
    reply_timeout_s: float
    max_pending: int
    #: CurveZMQ key pair of the port (its context runs the ZAP authenticator); None: plaintext.
    curve: CurveServer | None = None
    #: Largest total of all frames of one request; frames past it are read and dropped.
    max_message_bytes: int = 2 * 1024 * 1024


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


def port_listened(port: int) -> bool:
    """Whether some process listens on TCP ``port`` (True when the socket table is denied)."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return True
    return any(
        conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port
        for conn in connections
    )


def listener_cmdline(port: int) -> str | None:
    """The command line of the process listening on TCP ``port``, if it can be read."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid is None:
                return None
            try:
                return " ".join(psutil.Process(conn.pid).cmdline())
            except psutil.Error:
                return None
    return None


def hard_frame_limit(max_frame_bytes: int) -> int:
    """The size past which a frame is refused unread: well above the answered limit."""
    return max(16 * max_frame_bytes, 1 << 20)


def _split_envelope(
    identity: bytes, frames: list[zmq.Frame]
) -> tuple[list[bytes], list[zmq.Frame]]:
    """Routing frames up to the first empty delimiter (or just the identity), and the body."""
    split = next((i for i, f in enumerate(frames) if len(f) == 0), None)
    if split is None:
        return [identity], frames
    return [identity, *(f.bytes for f in frames[: split + 1])], frames[split + 1 :]


def _internal_message(exc: Exception) -> str:
    return f"Internal server error: {type(exc).__name__}: {exc}"


def _internal_error(request: LegacyRequest, exc: Exception) -> Reply:
    return error_reply(dialect_of(request), _internal_message(exc))


class LegacyServer:
    """A ROUTER socket on one port, answering every REQ client through ``handler``.

    A thread per port blocks in ``recv`` on the ROUTER and answers hot reads inline, so a
    lookup costs what a bare REP server's round trip costs: one receive, one send, no event-loop
    wake-up. Handlers that return an awaitable (writes, calls into other services) run on the
    event loop; their replies come back to the port's thread through an internal DEALER
    connected over ``inproc`` with a random routing id, so the thread never polls two sockets
    and is the only one that touches the ROUTER.
    """

    def __init__(
        self,
        ctx: zmq.Context[Any],
        bind: str,
        port: int,
        handler: PortHandler,
        limits: ServerLimits,
        counter: CallCounter | None = None,
    ) -> None:
        self.port = port
        #: Calls per action and caller (``aisys migrate status``); None: not counted.
        self.counter = counter
        self._peers: dict[bytes, str] = {}  # routing id -> peer address, for the counter
        self._ctx = ctx
        self._address = f"tcp://{bind}:{port}"
        self._relay_address = f"inproc://aisys-legacy-{port}-{secrets.token_hex(8)}"
        self._relay_id = secrets.token_bytes(16)  # unguessable: no remote peer can claim it
        self._handler = handler
        self._replay: Replay | None = getattr(handler, "replay", None)
        self._limits = limits
        self._sock = self._router()
        self._relay: zmq.Socket[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failed: BaseException | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._slow = 0  # requests handed to the event loop and not answered yet
        self._slow_lock = threading.Lock()
        self.answered = 0

    def _router(self) -> zmq.Socket[bytes]:
        sock: zmq.Socket[bytes] = zmq.Socket(self._ctx, zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        # Frames up to this size are read and answered with "too large"; a larger one is not
        # buffered at all (libzmq drops that peer's connection), so no client can make the
        # replica hold gigabytes. The REQ client sees a timeout, as if the gateway were down.
        sock.setsockopt(zmq.MAXMSGSIZE, hard_frame_limit(self._limits.max_frame_bytes))
        if self._limits.curve is not None:
            self._limits.curve.apply(sock)
        return sock

    @property
    def handler(self) -> PortHandler:
        return self._handler

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive() and self._failed is None

    def start(self) -> None:
        """Bind the port and start its thread; needs a running event loop (for slow replies).

        Raises:
            PortInUse: the port is bound by another process (named in the message).
        """
        if self._sock.closed:  # an earlier start() found the port taken: try afresh
            self._sock = self._router()
        try:
            self._sock.bind(self._address)
        except zmq.ZMQError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            self._sock.close(linger=0)
            raise PortInUse(self.port, port_owner(self.port)) from exc
        self._sock.bind(self._relay_address)
        self._loop = asyncio.get_running_loop()
        relay: zmq.Socket[bytes] = zmq.Socket(self._ctx, zmq.DEALER)
        relay.setsockopt(zmq.LINGER, 0)
        relay.setsockopt(zmq.ROUTING_ID, self._relay_id)
        relay.setsockopt(zmq.SNDHWM, 0)  # bounded by max_pending, never dropped
        relay.connect(self._relay_address)
        self._relay = relay
        self._thread = threading.Thread(
            target=self._serve, name=f"legacy-port-{self.port}", daemon=True
        )
        self._thread.start()

    def abort(self) -> None:
        """Stop at once (a failed start of the host's gateway); waits only for the thread."""
        for task in self._pending:
            task.cancel()
        self._signal_stop()
        if self._thread is not None:
            self._thread.join(_STOP_WAIT_S)
        self._close_sockets()

    async def close(self) -> None:
        await cancel_and_wait(list(self._pending))
        self._signal_stop()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, _STOP_WAIT_S)
        self._close_sockets()

    def _signal_stop(self) -> None:
        relay = self._relay
        if relay is not None and not relay.closed and self.running:
            relay.send(_STOP)

    def _close_sockets(self) -> None:
        if self._relay is not None:
            self._relay.close(linger=0)
        thread = self._thread
        if thread is None or not thread.is_alive():  # the ROUTER is the thread's until it ends
            self._sock.close(linger=0)

    def _serve(self) -> None:
        # Hand-rolled recv/send loops with int flags: recv_multipart/send_multipart cost about
        # a third more per message (Frame objects, enum arithmetic), and this is the hot path.
        # Each part's own ``more`` flag saves a getsockopt call per frame.
        sock, relay_id = self._sock, self._relay_id
        recv, option = sock.recv, sock.get
        limit = self._limits.max_message_bytes
        try:
            while True:
                identity = recv()  # blocks with the GIL released
                frames: list[zmq.Frame] = []
                more = option(_RCVMORE)
                total = count = 0
                while more:
                    frame = recv(copy=False)
                    more = frame.more
                    total += len(frame)
                    count += 1
                    # Past the limit a frame is dropped at once (only an empty delimiter is
                    # kept, for the reply's envelope): a message of many large frames is
                    # never held whole by this loop.
                    if total <= limit or (len(frame) == 0 and len(frames) < _MAX_ENVELOPE):
                        frames.append(frame)
                if identity != relay_id:
                    if total > limit:
                        self._too_large(identity, frames, count, total)
                    else:
                        self._answer(identity, frames)
                    continue
                if len(frames) == 1 and frames[0].bytes == _STOP:
                    return
                # A slow request's reply, computed on the event loop: [envelope..., reply].
                *envelope, reply = [f.bytes for f in frames]
                self._send(envelope, reply)
        except zmq.ZMQError as exc:  # the socket itself broke: stop, check_health reports it
            logger.exception("legacy port %d stopped", self.port)
            self._failed = exc

    def _too_large(self, identity: bytes, kept: list[zmq.Frame], count: int, total: int) -> None:
        """Answer a request whose frames add up to more than ``max_message_bytes``."""
        limit = self._limits.max_message_bytes
        routing = [f for f in kept[:_MAX_ENVELOPE] if len(f) <= _MAX_ROUTING_BYTES]
        envelope, _ = _split_envelope(identity, routing)
        message = (
            f"Request too large: {count} frames of {total} bytes in all; the limit is "
            f"{limit} bytes per message (legacy_gateway.max_message_bytes)"
        )
        self._send(envelope, error_reply(Dialect.ACTION, message))

    def _answer(self, identity: bytes, frames: list[zmq.Frame]) -> None:
        if len(frames) == 2 and len(frames[0]) == 0:  # what a REQ client sends
            envelope = [identity, b""]
            body = frames[1:]
        else:  # a DEALER, with or without the empty delimiter, or extra frames
            envelope, body = _split_envelope(identity, frames)
        try:
            self._reply(envelope, body)
        except zmq.ZMQError:
            raise
        except Exception as exc:  # loop boundary: the port lives on and the client is answered
            logger.exception("legacy port %d: request failed", self.port)
            self._send(envelope, error_reply(Dialect.ACTION, _internal_message(exc)))

    def _peer(self, identity: bytes, frame: zmq.Frame) -> str:
        """The address of the connection ``identity`` names, asked of libzmq once per
        connection (a routing id is never reused for another connection)."""
        peer = self._peers.get(identity)
        if peer is None:
            if len(self._peers) >= _MAX_PEERS:
                self._peers.clear()
            peer = self._peers[identity] = Received(frame).peer()
        return peer

    def _reply(self, envelope: list[bytes], body: list[zmq.Frame]) -> None:
        if len(body) != 1:
            reply: Reply = error_reply(
                Dialect.ACTION, f"Invalid request: expected one frame, got {len(body)}"
            )
            self._send(envelope, reply)
            return
        data = body[0].bytes
        counter = self.counter
        if self._replay is not None:
            cached = self._replay(data)
            if cached is not None:
                if counter is not None:
                    peer = self._peer(envelope[0], body[0])
                    counter.count(lookup_action(data), source_agent(data), peer)
                self._send(envelope, cached)
                return
        request = decode(data, self._limits.max_frame_bytes)
        if counter is not None:
            peer = self._peer(envelope[0], body[0])
            counter.count(call_action(request), call_agent(request, data), peer)
        try:
            outcome = self._handler.handle(request, Received(body[0]))
        except Exception as exc:  # the one reply the client waits for must still be sent
            logger.exception("legacy port %d: handler failed", self.port)
            outcome = _internal_error(request, exc)
        if isinstance(outcome, bytes | Reply):
            self._send(envelope, outcome)
            return
        dialect = dialect_of(request)
        with self._slow_lock:
            busy = self._slow >= self._limits.max_pending
            if not busy:
                self._slow += 1
        if busy:
            if inspect.iscoroutine(outcome):
                outcome.close()
            message = f"{self._handler.service} is busy: {self._slow} requests pending"
            self._send(envelope, error_reply(dialect, message))
            return
        loop = self._loop
        assert loop is not None  # set by start() before the thread runs
        asyncio.run_coroutine_threadsafe(self._finish(envelope, dialect, outcome), loop)

    async def _finish(
        self, envelope: list[bytes], dialect: Dialect, outcome: Awaitable[Reply | bytes]
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._pending.add(task)
        reply: Reply | bytes
        try:
            reply = await asyncio.wait_for(outcome, self._limits.reply_timeout_s)
        except TimeoutError:
            reply = error_reply(
                dialect,
                f"{self._handler.service} did not answer within {self._limits.reply_timeout_s}s",
            )
        except asyncio.CancelledError:  # close(): the port is going away with the client
            raise
        except Exception as exc:  # the one reply the client waits for must still be sent
            logger.exception("legacy port %d: handler failed", self.port)
            reply = error_reply(dialect, _internal_message(exc))
        finally:
            with self._slow_lock:
                self._slow -= 1
            if task is not None:
                self._pending.discard(task)
        relay = self._relay
        if relay is None or relay.closed:
            return
        frame = reply if isinstance(reply, bytes) else encode(reply)
        relay.send_multipart([*envelope, frame], flags=zmq.NOBLOCK)

    def _send(self, envelope: list[bytes], reply: Reply | bytes) -> None:
        frame = reply if isinstance(reply, bytes) else encode(reply)
        # ROUTER never blocks on send: an unroutable (vanished) peer's reply is dropped. The
        # backend's send skips the sugar layer's routing-id/group checks (a third of a send).
        sock = self._sock
        for part in envelope:
            _send_frame(sock, part, _MORE)
        _send_frame(sock, frame, _NOBLOCK)
        self.answered += 1
