"""Delegate mode: a legacy service's frames forwarded verbatim to its still-running legacy agent.

Lets a user move one service at a time: the gateway owns the port, and for a service listed in
``legacy_gateway.delegate_to`` it relays each request frame unchanged to the legacy agent and
its reply frame unchanged back. A legacy agent that does not answer within the port's reply
timeout gets the caller an error reply in its dialect (:mod:`legacy_gateway.server`), and the
REQ socket used for it is discarded (Lazy Pirate), so one lost reply never wedges the next.

Example::

    port = DelegatePort("ServiceRegistry", "tcp://10.0.0.7:7100", zmq.asyncio.Context())
"""

from __future__ import annotations

import zmq
import zmq.asyncio

from legacy_gateway._codec import InvalidRequest, LegacyRequest, error_reply
from legacy_gateway.server import Outcome, Received

__all__ = ["DelegatePort"]


class DelegatePort:
    """Forwards every request of one port to ``address`` and relays the reply verbatim.

    Args:
        service: the legacy service's name, used in error replies.
        address: the legacy agent's ZeroMQ endpoint, ``tcp://host:port``.
        ctx: an asyncio ZeroMQ context the forwarding sockets are made in.
    """

    def __init__(self, service: str, address: str, ctx: zmq.asyncio.Context) -> None:
        self.service = service
        self.address = address
        self._ctx = ctx

    def handle(self, request: LegacyRequest, received: Received) -> Outcome:
        # Frames over the size limit are refused here too; the rest is the agent's business.
        if isinstance(request, InvalidRequest) and request.reason.startswith("Request too large"):
            return error_reply(request.dialect, request.reason)
        return self._forward(received.data)

    async def _forward(self, frame: bytes) -> bytes:
        # One REQ socket per request: a timed-out one is closed, never reused.
        sock = self._ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(self.address)
            await sock.send(frame)
            reply: bytes = await sock.recv()
            return reply
        finally:
            sock.close(linger=0)
