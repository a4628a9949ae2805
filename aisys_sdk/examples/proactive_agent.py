"""The legacy ProactiveAgent, ported to the SDK (the worked example of docs/porting-guide.md).

What it does is unchanged: other agents add scheduled tasks and reminders over its ZeroMQ REP
port (``add_task``, ``add_reminder``, ``get_tasks``, ``health_check``), it keeps them in a JSON
file, and when one is due it hands it to the request coordinator. What changed is how it lives
in the system: it registers with the CoreOrchestrator and heartbeats instead of the
SystemDigitalTwin ``register_agent`` frame; due items become coordinated text requests whose
result it waits for, instead of an ``execute_task`` frame to a discovered RequestCoordinator
(which never handled it); failures go to the ErrorBus instead of a PUB socket that reached no
one.

Run it with ``AISYS_AGENT_URL``, ``AISYS_AGENT_CLIENT_ID`` and ``AISYS_AGENT_CLIENT_SECRET`` set
(an identity with the scopes registry:write, requests:submit, errors:publish and read)::

    python -m aisys_sdk.examples.proactive_agent --port 5624 --tasks tasks.json
"""

from __future__ import annotations

import argparse
import logging
import socket
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import zmq
from pydantic import BaseModel, TypeAdapter, ValidationError

from aisys_sdk import (
    AgentClient,
    ClientConfig,
    Heartbeat,
    Registration,
    RequestMetadata,
    SdkError,
    TextRequest,
)

__all__ = ["ProactiveAgent", "ScheduledItem"]

logger = logging.getLogger(__name__)


class ScheduledItem(BaseModel):
    """A task or reminder; ``text`` is what the coordinator's agent is asked to do or say."""

    id: str
    kind: Literal["task", "reminder"]
    text: str
    scheduled_time: datetime
    status: Literal["pending", "completed", "failed"] = "pending"
    completion_time: datetime | None = None
    result: str | None = None


_ITEMS = TypeAdapter(list[ScheduledItem])


class ProactiveAgent:
    """Args:
    client: the SDK client (its identity is the agent's).
    port: the ZeroMQ REP port other agents call, as before.
    tasks_file: where the items are kept.
    capability: send requests to agents with this capability (None: the text route).
    """

    def __init__(
        self,
        client: AgentClient,
        port: int,
        tasks_file: Path,
        capability: str | None = None,
        check_every_s: float = 60.0,
        name: str = "ProactiveAgent",
    ) -> None:
        self.client, self.port, self.name = client, port, name
        self._file, self._capability, self._every_s = tasks_file, capability, check_every_s
        self._lock = threading.Lock()
        self.items = _ITEMS.validate_json(tasks_file.read_bytes()) if tasks_file.exists() else []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._zmq = zmq.Context()

    def start(self) -> None:
        self.client.register(
            Registration(
                agent_id=self.name,
                host=socket.gethostname(),
                port=self.port,
                capabilities=["proactive"],
                ttl_s=30,
            ),
            health=self._health,
        )
        rep = self._zmq.socket(zmq.REP)
        rep.setsockopt(zmq.LINGER, 0)
        rep.bind(f"tcp://*:{self.port}")
        for target, args in ((self._serve, (rep,)), (self._monitor, ())):
            thread = threading.Thread(target=target, args=args, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._zmq.term()

    def _health(self) -> Heartbeat:
        failed = sum(item.status == "failed" for item in self.items)
        if failed:
            return Heartbeat(status="warning", note=f"{failed} item(s) failed")
        return Heartbeat()

    def add(self, kind: Literal["task", "reminder"], fields: dict[str, Any]) -> ScheduledItem:
        item_id = f"{kind}_{uuid.uuid4().hex[:8]}"
        item = ScheduledItem.model_validate({**fields, "id": item_id, "kind": kind})
        with self._lock:
            self.items.append(item)
            self._save()
        return item

    def run_due(self, now: datetime | None = None) -> list[ScheduledItem]:
        """Hand every due pending item to the coordinator and wait for its result."""
        now = now or datetime.now(UTC)
        due = [i for i in self.items if i.status == "pending" and i.scheduled_time <= now]
        for item in due:
            request = TextRequest(
                data=item.text,
                context={"kind": item.kind, "item_id": item.id},
                metadata=RequestMetadata(source=self.name),
                capability=self._capability,
            )
            try:
                status = self.client.submit_and_wait(request, timeout_s=30)
                result = status.result.message if status.result else None
                update: dict[str, Any] = {"status": "completed", "result": result}
            except SdkError as exc:
                update = {"status": "failed", "result": str(exc)}
                try:
                    self.client.publish_error(
                        f"{item.kind}_failed", exc=exc, correlation_id=item.id
                    )
                except SdkError:
                    logger.exception("could not publish the failure of %s", item.id)
            with self._lock:
                index = self.items.index(item)
                self.items[index] = item.model_copy(
                    update={**update, "completion_time": datetime.now(UTC)}
                )
                self._save()
        return [i for i in self.items if i.id in {d.id for d in due}]

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """The legacy REP protocol, unchanged for the agents that call it."""
        action = request.get("action")
        try:
            if action in ("health_check", "health"):
                return {"status": "ok", "message": f"{self.name} healthy"}
            if action in ("add_task", "add_reminder"):
                kind: Literal["task", "reminder"] = "task" if action == "add_task" else "reminder"
                item = self.add(kind, dict(request[kind]))
                return {"status": "success", f"{kind}_id": item.id}
            if action == "get_tasks":
                return {"status": "success", "tasks": _ITEMS.dump_python(self.items, mode="json")}
        except (KeyError, TypeError, ValidationError) as exc:
            return {"status": "error", "message": f"bad {action} request: {exc}"}
        return {"status": "error", "message": f"Unknown action: {action}"}

    def _save(self) -> None:
        self._file.write_bytes(_ITEMS.dump_json(self.items, indent=2))

    def _serve(self, rep: zmq.Socket[bytes]) -> None:
        try:
            while not self._stop.is_set():
                if rep.poll(100):
                    try:
                        reply = self.handle(rep.recv_json())  # type: ignore[arg-type]
                    except ValueError as exc:
                        reply = {"status": "error", "message": f"Invalid JSON request: {exc}"}
                    rep.send_json(reply)
        finally:
            rep.close(linger=0)

    def _monitor(self) -> None:
        while not self._stop.wait(self._every_s):
            self.run_due()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5624)
    parser.add_argument("--tasks", type=Path, default=Path("tasks.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    with AgentClient(ClientConfig()) as client:  # from the AISYS_AGENT_* environment
        agent = ProactiveAgent(client, args.port, args.tasks)
        agent.start()
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            agent.stop()


if __name__ == "__main__":
    main()
