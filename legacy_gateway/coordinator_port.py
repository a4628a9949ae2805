"""RequestCoordinator (26002) translated to CoreOrchestrator's request coordinator.

The legacy main port dispatched on ``type`` (text/audio/vision, ``docs/legacy-protocol.md`` 4.3);
its clients also send actions RequestCoordinator never implemented, which are implemented here:
ProactiveAgent's ``execute_task`` and ``send_reminder`` (queued as text requests) and
VRAMOptimizer's ``get_queue_status`` and ``ping``. Requests go to the CoreOrchestrator replica
through a Serve handle; every reply is JSON (the legacy ``AgentResponse`` carried a datetime).

Example::

    port = CoordinatorPort(CoordinatorLink())
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable
from typing import Any, Final

from pydantic import JsonValue, TypeAdapter, ValidationError
from ray import serve
from ray.exceptions import RayError

from cluster.base.constants import APP_CORE
from cluster.base.errors import AisysError
from deployments.core.models import QueueView, SubmitReceipt, UserRequest
from legacy_gateway._codec import (
    HEALTH_VERBS,
    ActionRequest,
    Dialect,
    InvalidRequest,
    LegacyRequest,
    RawRequest,
    Reply,
    TypedRequest,
    error_reply,
    iso_time,
    unknown,
)
from legacy_gateway.server import Outcome, Received

__all__ = ["CoordinatorHealthPort", "CoordinatorLink", "CoordinatorPort", "legacy_queue_entry"]

SERVICE: Final = "RequestCoordinator"
#: A health reply reuses a queue reading this recent instead of asking CoreOrchestrator again.
HEALTH_READING_MAX_AGE_S: Final = 1.0
_USER_REQUEST: Final = TypeAdapter(UserRequest)
_COMMON_FIELDS: Final = ("context", "user_id", "session_id")
#: Fields of the legacy text/audio/vision requests that aisys takes; the rest are ignored.
_REQUEST_FIELDS: Final = {
    "text": frozenset({"data", *_COMMON_FIELDS}),
    "audio": frozenset({"audio_data", "format", "sample_rate", *_COMMON_FIELDS}),
    "vision": frozenset({"image_data", "format", *_COMMON_FIELDS}),
}
_METADATA_FIELDS: Final = frozenset({"user_type", "urgency", "source"})
#: The task types VRAMOptimizer reads from ``get_queue_status`` (section 4.3).
_LEGACY_TASK_TYPES: Final = {"text": "chat", "audio": "asr", "vision": "image_generation"}
_QUEUED: Final = {
    "text": "Text request queued",
    "audio": "Audio request queued",
    "vision": "Vision request queued",
}


class CoordinatorLink:
    """Calls into the CoreOrchestrator replica (resolved lazily: ``core`` may deploy later)."""

    def __init__(self, deployment: str = "CoreOrchestrator", app: str = APP_CORE) -> None:
        self._deployment = deployment
        self._app = app
        self._handle: Any = None
        self._last_queue: tuple[float, QueueView] | None = None

    def _core(self) -> Any:
        if self._handle is None:
            self._handle = serve.get_deployment_handle(self._deployment, app_name=self._app)
        return self._handle

    async def submit(self, request: Any) -> SubmitReceipt:
        receipt: SubmitReceipt = await self._core().submit.remote(request)
        return receipt

    async def queue(self) -> QueueView:
        view: QueueView = await self._core().queue.remote()
        self._last_queue = (time.monotonic(), view)
        return view

    def recent_queue(self) -> QueueView | None:
        """The last queue reading if it is under ``HEALTH_READING_MAX_AGE_S`` old."""
        last = self._last_queue
        if last is None or time.monotonic() - last[0] > HEALTH_READING_MAX_AGE_S:
            return None
        return last[1]


def legacy_queue_entry(kind: str, request_id: str, priority: int) -> dict[str, JsonValue]:
    """One entry of ``get_queue_status``'s ``queue`` list."""
    return {
        "task_type": _LEGACY_TASK_TYPES.get(kind, kind),
        "request_id": request_id,
        "priority": priority,
    }


def _user_request(kind: str, fields: dict[str, JsonValue]) -> Any:
    body: dict[str, Any] = {k: v for k, v in fields.items() if k in _REQUEST_FIELDS[kind]}
    metadata = fields.get("metadata")
    if isinstance(metadata, dict):
        body["metadata"] = {k: v for k, v in metadata.items() if k in _METADATA_FIELDS}
    return _USER_REQUEST.validate_python({"type": kind, **body})


def _text_of(item: JsonValue, keys: tuple[str, ...]) -> str:
    if isinstance(item, dict):
        for key in keys:
            value = item.get(key)
            if isinstance(value, str) and value:
                return value
    return json.dumps(item, sort_keys=True)


class CoordinatorPort:
    """The legacy RequestCoordinator main port."""

    service = SERVICE

    def __init__(self, link: CoordinatorLink) -> None:
        self._link = link

    def handle(self, request: LegacyRequest, received: Received) -> Outcome:  # noqa: ARG002
        if isinstance(request, InvalidRequest):
            return error_reply(request.dialect, request.reason)
        if isinstance(request, TypedRequest):
            if request.type not in _QUEUED:
                return unknown(request)
            try:
                user_request = _user_request(request.type, request.fields)
            except ValidationError as exc:
                return error_reply(Dialect.ACTION, f"Invalid {request.type} request: {exc}")
            return self._submit(user_request, _QUEUED[request.type])
        if isinstance(request, RawRequest) and request.text in HEALTH_VERBS:
            return self.health()
        if not isinstance(request, ActionRequest):
            return unknown(request)
        return self._action(request)

    def _action(self, request: ActionRequest) -> Outcome:
        action, fields = request.action, request.fields
        if action == "ping":
            return Reply(status="success", message="pong", service=SERVICE)
        if action in ("health", "health_check"):
            return self.health()
        if action == "get_queue_status":
            return self._queue_status()
        if action == "execute_task":
            task = fields.get("task", {})
            text = _text_of(task, ("description", "text", "command", "task"))
            context: dict[str, JsonValue] = {"legacy_action": "execute_task", "task": task}
            return self._submit(self._text(text, context), "Task queued")
        if action == "send_reminder":
            reminder = fields.get("reminder", {})
            text = _text_of(reminder, ("text", "message", "content"))
            context = {"legacy_action": "send_reminder", "reminder": reminder}
            return self._submit(self._text(text, context), "Reminder queued")
        return unknown(request)

    @staticmethod
    def _text(text: str, context: dict[str, JsonValue]) -> Any:
        return _user_request(
            "text", {"data": text, "context": context, "metadata": {"source": "legacy-gateway"}}
        )

    async def _submit(self, user_request: Any, message: str) -> Reply:
        try:
            receipt = await self._link.submit(user_request)
        except AisysError as exc:
            return error_reply(Dialect.ACTION, str(exc))
        except RayError as exc:
            return error_reply(Dialect.ACTION, f"{SERVICE} unavailable: {type(exc).__name__}")
        return Reply(
            status="success",
            message=message,
            data=None,
            speak=None,
            memory_entry=None,
            error=None,
            metadata={
                "request_id": receipt.request_id,
                "priority": receipt.priority,
                "queue_position": receipt.queue_position,
            },
            timestamp=iso_time(time.time()),
        )

    def _queue_status(self) -> Awaitable[Reply]:
        async def answer() -> Reply:
            try:
                view = await self._link.queue()
            except RayError as exc:
                return error_reply(Dialect.ACTION, f"{SERVICE} unavailable: {type(exc).__name__}")
            queue = [legacy_queue_entry(e.type, e.request_id, e.priority) for e in view.entries]
            return Reply(status="success", queue=queue, size=view.size, max_size=view.max_size)

        return answer()

    def health(self) -> Reply | Awaitable[Reply]:
        """The health dict; from a recent queue reading at once, else after reading the queue."""
        recent = self._link.recent_queue()
        if recent is not None:
            return _healthy(recent)

        async def answer() -> Reply:
            try:
                view = await self._link.queue()
            except RayError as exc:
                return Reply(
                    status="degraded",
                    service=SERVICE,
                    message=f"{SERVICE} cannot reach CoreOrchestrator: {type(exc).__name__}",
                )
            return _healthy(view)

        return answer()


def _healthy(view: QueueView) -> Reply:
    return Reply(
        status="ok",
        service=SERVICE,
        message=f"{SERVICE} is healthy",
        queue_size=view.size,
        timestamp=iso_time(time.time()),
    )


class CoordinatorHealthPort:
    """RequestCoordinator's health port (26003): any request gets the main port's health dict."""

    service = SERVICE

    def __init__(self, main: CoordinatorPort) -> None:
        self._main = main

    def handle(self, request: LegacyRequest, received: Received) -> Outcome:  # noqa: ARG002
        return self._main.health()
