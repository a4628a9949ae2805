"""Asking a model's owner to unload it, in the protocol the owner speaks.

ZeroMQ owners are legacy ModelManagerAgents (``command`` dialect, REQ with a timeout and
``linger=0`` so a dead peer never wedges the caller); HTTP owners registered a callback URL.
Both are blocking calls: the actor runs them in a thread.
"""

from __future__ import annotations

import logging

import httpx
import zmq
from pydantic import BaseModel, ConfigDict, ValidationError

from actors.resources.models import UnloadEndpoint

__all__ = ["ask_to_unload"]

logger = logging.getLogger(__name__)


class _CommandReply(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: str
    message: str | None = None


def ask_to_unload(endpoint: UnloadEndpoint, model_name: str, timeout_s: float) -> bool:
    """Send ``{"command": "UNLOAD_MODEL", "model_name": ...}``; True when the owner agreed."""
    body = {"command": "UNLOAD_MODEL", "model_name": model_name}
    if endpoint.protocol == "http":
        try:
            response = httpx.post(endpoint.address, json=body, timeout=timeout_s)
        except httpx.HTTPError as exc:
            logger.warning("unload %s via %s failed: %s", model_name, endpoint.address, exc)
            return False
        return response.is_success
    return _zmq_command(endpoint.address, body, timeout_s) == "SUCCESS"


def _zmq_command(address: str, body: dict[str, str], timeout_s: float) -> str | None:
    timeout_ms = max(1, int(timeout_s * 1000))
    socket: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.REQ)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.SNDTIMEO, timeout_ms)
    socket.setsockopt(zmq.RCVTIMEO, timeout_ms)
    try:
        socket.connect(address)
        socket.send_json(body)
        reply = _CommandReply.model_validate_json(socket.recv())
    except zmq.Again:
        logger.warning("%s did not answer %s within %.1f s", address, body["command"], timeout_s)
        return None
    except ValidationError as exc:
        logger.warning("%s answered %s with an unreadable reply: %s", address, body, exc)
        return None
    finally:
        socket.close()
    if reply.status != "SUCCESS":
        logger.info("%s refused %s: %s", address, body, reply.message)
    return reply.status
