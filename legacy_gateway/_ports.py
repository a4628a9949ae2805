"""What the legacy ports of the monitoring, resource and system agents share.

:class:`ActionPort` is the dispatch every such port uses: health verbs on the main port (raw
``ping`` too), the port's ``action`` table, its ``command`` table, and error replies in the
caller's dialect when the owning service refuses or is down. :class:`Services` reaches the
aisys services those ports translate to, resolved lazily because the gateway may start before
them. Every handler runs on its port's thread (:mod:`legacy_gateway.server`): anything that
calls a service returns a coroutine, which the server runs on the event loop.

Example::

    class HealthMonitorPort(ActionPort):
        service = "HealthMonitor"

        def actions(self) -> ActionTable:
            return {"get_status": self._status}
"""

from __future__ import annotations

import abc
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from pydantic import JsonValue, ValidationError
from ray import serve
from ray.exceptions import RayError
from ray.serve.exceptions import RayServeException

from cluster.constants import RAY_NAMESPACE, RESOURCES_ACTOR_NAME
from cluster.errors import AisysError
from legacy_gateway._codec import (
    CommandRequest,
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

__all__ = [
    "HEALTH_VERBS",
    "ActionPort",
    "ActionTable",
    "HealthOnlyPort",
    "Services",
    "guarded",
    "number",
    "text",
]

HEALTH_VERBS: Final = frozenset({"ping", "health", "health_check"})

Fields = dict[str, JsonValue]
ActionTable = dict[str, Callable[[Fields], Outcome]]


def text(fields: Fields, key: str) -> str | None:
    """A non-empty string field, else None."""
    value = fields.get(key)
    return value if isinstance(value, str) and value else None


def number(fields: Fields, key: str) -> float | None:
    """A numeric field (not a bool), else None."""
    value = fields.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


async def guarded(service: str, dialect: Dialect, call: Awaitable[Reply | bytes]) -> Reply | bytes:
    """Await a service call; a refusal or an unreachable service becomes an error reply."""
    try:
        return await call
    except (AisysError, ValidationError) as exc:
        cause = getattr(exc, "cause", None)
        return error_reply(dialect, str(cause if isinstance(cause, AisysError) else exc))
    except (RayError, RayServeException) as exc:
        return error_reply(dialect, f"{service}: the aisys service is unavailable ({exc!s:.200})")


class Services:
    """Lazily resolved handles of the aisys services the legacy ports translate to."""

    def __init__(self) -> None:
        self._handles: dict[tuple[str, str], Any] = {}
        self._resources: Any = None

    def deployment(self, name: str, app: str) -> Any:
        """A Serve handle of deployment ``name`` of application ``app``."""
        key = (name, app)
        handle = self._handles.get(key)
        if handle is None:
            handle = self._handles[key] = serve.get_deployment_handle(name, app_name=app)
        return handle

    def resources(self) -> Any:
        """The ResourceScheduler's actor (created by its deployment)."""
        if self._resources is None:
            import ray

            self._resources = ray.get_actor(RESOURCES_ACTOR_NAME, namespace=RAY_NAMESPACE)
        return self._resources


class ActionPort(abc.ABC):
    """A legacy main port: health verbs, ``action`` and ``command`` tables.

    Subclasses set ``service`` and implement :meth:`health` and :meth:`actions`; ports that
    speak the ``command`` dialect or RequestCoordinator-style ``type`` requests override
    :meth:`commands` or :meth:`typed`. Handlers may return a reply or a coroutine; coroutines
    are wrapped by :func:`guarded`.
    """

    service: str
    #: Health verbs this port answers with :meth:`health` on its main port.
    health_verbs: frozenset[str] = HEALTH_VERBS

    def __init__(self) -> None:
        self.started_at = time.time()

    def health(self) -> Outcome:
        """The port's health dict (legacy H1/H3 shape); may be a coroutine."""
        return Reply(
            status="ok",
            service=self.service,
            ready=True,
            initialized=True,
            message=f"{self.service} is healthy",
            timestamp=iso_time(time.time()),
            uptime=round(time.time() - self.started_at, 3),
        )

    @abc.abstractmethod
    def actions(self) -> ActionTable:
        """The ``action`` dialect: action name -> handler of the request's other fields."""

    def commands(self) -> ActionTable:
        """The ``command`` dialect: upper-case command -> handler of payload + fields."""
        return {}

    def typed(self, request: TypedRequest) -> Outcome:
        return unknown(request)

    def handle(self, request: LegacyRequest, received: Received) -> Outcome:  # noqa: ARG002
        if isinstance(request, InvalidRequest):
            return error_reply(request.dialect, request.reason)
        if isinstance(request, RawRequest):
            return self.health() if request.text in self.health_verbs else unknown(request)
        if isinstance(request, TypedRequest):
            return self._wrap(Dialect.ACTION, self.typed(request))
        if isinstance(request, CommandRequest):
            handler = self.commands().get(request.command.upper())
            if handler is None:
                return unknown(request)
            merged: Fields = {**request.fields, **request.payload}
            return self._wrap(Dialect.COMMAND, handler(merged))
        if request.action in self.health_verbs:
            return self._wrap(Dialect.ACTION, self.health())
        handler = self.actions().get(request.action)
        if handler is None:
            return unknown(request)
        return self._wrap(Dialect.ACTION, handler(request.fields))

    def _wrap(self, dialect: Dialect, outcome: Outcome) -> Outcome:
        if inspect.isawaitable(outcome):
            return guarded(self.service, dialect, outcome)
        return outcome


class HealthOnlyPort:
    """A dedicated health port: any request gets the main port's health dict."""

    def __init__(self, main: ActionPort) -> None:
        self.service = main.service
        self._main = main

    def handle(self, request: LegacyRequest, received: Received) -> Outcome:  # noqa: ARG002
        return self._main._wrap(Dialect.ACTION, self._main.health())
