"""ZeroMQ REQ client with the Lazy Pirate pattern: time out, close the socket, retry afresh.

A REQ socket that sent a request and got no reply is stuck (it may not send again), so on a
timeout the socket is closed with ``linger=0`` and a new one is opened for the next attempt
(zguide chapter 4). Sockets that completed a round trip go back to a small per-endpoint pool,
so a steady stream of requests does not pay a TCP connect each.

Example::

    client = LazyPirateClient(zmq.asyncio.Context(), timeout_s=5.0, attempts=2)
    reply = await client.request("tcp://10.0.0.5:5709", b'{"action": "ping"}')
"""

from __future__ import annotations

import logging

import zmq
import zmq.asyncio

from cluster.base.errors import DispatchFailed

__all__ = ["LazyPirateClient", "tcp_endpoint"]

logger = logging.getLogger(__name__)

_MAX_IDLE_PER_ENDPOINT = 16


def tcp_endpoint(host: str, port: int) -> str:
    """ZeroMQ endpoint of ``host:port`` (IPv6 literals in brackets)."""
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


class LazyPirateClient:
    """Request/reply over REQ sockets with a per-attempt timeout and fresh-socket retries.

    Args:
        context: the asyncio ZeroMQ context the sockets are made from.
        timeout_s: how long one attempt waits for the reply.
        attempts: how many times a request is sent before giving up.
    """

    def __init__(self, context: zmq.asyncio.Context, timeout_s: float, attempts: int) -> None:
        self._context = context
        self._timeout_ms = max(1, int(timeout_s * 1000))
        self._attempts = attempts
        self._idle: dict[str, list[zmq.asyncio.Socket]] = {}

    async def request(
        self, endpoint: str, payload: bytes, *, timeout_s: float | None = None, attempts: int = 0
    ) -> bytes:
        """Send ``payload`` and return the reply frame.

        Args:
            endpoint: ``tcp://host:port`` of a REP (or ROUTER) socket.
            payload: one frame, sent as is.
            timeout_s: overrides the client's per-attempt timeout.
            attempts: overrides the client's attempt count when positive.

        Raises:
            DispatchFailed: no reply after every attempt, or the endpoint is invalid.
        """
        timeout_ms = self._timeout_ms if timeout_s is None else max(1, int(timeout_s * 1000))
        tries = attempts if attempts > 0 else self._attempts
        for attempt in range(1, tries + 1):
            socket = self._checkout(endpoint)
            try:
                await socket.send(payload)
                if await socket.poll(timeout_ms):  # POLLIN is the default flag
                    reply: bytes = await socket.recv()
                    self._checkin(endpoint, socket)
                    return reply
            except zmq.ZMQError as exc:
                socket.close(linger=0)
                raise DispatchFailed(endpoint, f"ZeroMQ error: {exc}") from exc
            except BaseException:
                # Cancelled mid-request: the socket's state is unknown, so it is not reused.
                socket.close(linger=0)
                raise
            socket.close(linger=0)
            logger.info("no reply from %s (attempt %d of %d)", endpoint, attempt, tries)
        raise DispatchFailed(
            endpoint, f"no reply within {timeout_ms / 1000:g}s, {tries} attempt(s)"
        )

    def close(self) -> None:
        """Close every pooled socket."""
        for sockets in self._idle.values():
            for socket in sockets:
                socket.close(linger=0)
        self._idle.clear()

    def _checkout(self, endpoint: str) -> zmq.asyncio.Socket:
        pool = self._idle.get(endpoint)
        if pool:
            return pool.pop()
        socket = self._context.socket(zmq.REQ)
        socket.setsockopt(zmq.LINGER, 0)
        try:
            socket.connect(endpoint)
        except zmq.ZMQError as exc:
            socket.close(linger=0)
            raise DispatchFailed(endpoint, f"cannot connect: {exc}") from exc
        return socket

    def _checkin(self, endpoint: str, socket: zmq.asyncio.Socket) -> None:
        pool = self._idle.setdefault(endpoint, [])
        if len(pool) < _MAX_IDLE_PER_ENDPOINT:
            pool.append(socket)
        else:
            socket.close(linger=0)
