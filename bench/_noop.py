"""The baseline Serve application of the benchmarks: one FastAPI route that does no work.

It answers ``GET /`` (and ``POST /`` of a JSON body) with a fixed JSON body shaped and sized
like an agent record, so a request to it costs what Serve itself costs (proxy, router, replica,
FastAPI, JSON) and nothing more. The benchmark deploys it next to the aisys applications, pinned
to the same host tag with the same replica options, and compares an aisys route against it.
"""

from typing import Any

from fastapi import Body, FastAPI
from ray import serve
from ray.serve import Application

__all__ = ["NOOP_BODY", "Noop", "build_app"]

#: What ``GET /`` answers: the fields and sizes of an ``AgentRecord``.
NOOP_BODY: dict[str, Any] = {
    "agent_id": "bench-agent-0001",
    "agent_type": "bench-agent-0001",
    "host": "127.0.0.1",
    "port": 5555,
    "health_check_port": None,
    "capabilities": ["bench"],
    "tags": ["bench"],
    "metadata": {},
    "check": "none",
    "ttl_s": None,
    "deregister_critical_after_s": 600.0,
    "health": "unknown",
    "health_note": "",
    "registered_at": 1767225600.0,
    "last_seen_at": 1767225600.0,
    "critical_since": None,
}

api = FastAPI(title="aisys bench no-op")


@serve.deployment
@serve.ingress(api)
class Noop:
    """Answers every request with :data:`NOOP_BODY`."""

    @api.get("/")
    async def record(self) -> dict[str, Any]:
        return NOOP_BODY

    @api.post("/")
    async def write(self, body: dict[str, Any] = Body()) -> dict[str, Any]:  # noqa: B008
        """The floor of a write: parse a JSON body, answer the record."""
        return {**NOOP_BODY, "agent_id": body.get("agent_id", NOOP_BODY["agent_id"])}


def build_app(args: dict[str, Any]) -> Application:  # noqa: ARG001 (Serve passes the args block)
    """Serve application builder named by the benchmark's ``bench._noop:build_app``."""
    return Noop.bind()  # type: ignore[attr-defined,no-any-return]
