"""CoreOrchestrator's unified gRPC ingress: proto <-> model conversion and the RPC methods.

Serve's gRPC proxy (``grpc_options`` in the Serve config) routes an RPC of service
``aisys.core.v1.CoreOrchestrator`` with metadata ``application=core`` to the method of the same
name on the deployment; :class:`CoreGrpcMethods` supplies those methods and the deployment
inherits them. Each converts the proto to the model the HTTP route takes, calls the same code,
and maps :class:`AisysError` to a gRPC status (404 -> NOT_FOUND, 429 -> RESOURCE_EXHAUSTED ...).
Every RPC needs the scope its HTTP route needs, from ``authorization: Bearer <jwt>`` metadata.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf.message import Message
from pydantic import TypeAdapter, ValidationError
from ray.exceptions import RayTaskError

from actors.registry.models import AgentQuery, AgentRecord, Heartbeat, Registration
from actors.security.models import Scope
from cluster.base.errors import AisysError, PermissionDenied
from deployments.auth import Authenticator
from deployments.core.models import RequestStatus, SubmitReceipt, UserRequest
from deployments.core.proto import aisys_core_pb2 as pb

__all__ = ["CoreGrpcMethods", "grpc_code_for"]

_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
}
#: ``SubmitAndWait``'s wait when the request names none, and the longest it may name.
_WAIT_DEFAULT_S, _WAIT_MAX_S = 10.0, 30.0
_USER_REQUEST: TypeAdapter[UserRequest] = TypeAdapter(UserRequest)
M = TypeVar("M", bound=Message)
R = TypeVar("R", bound=Message)


def grpc_code_for(error: AisysError) -> grpc.StatusCode:
    return _CODES.get(error.http_status, grpc.StatusCode.INTERNAL)


def _json_object(text: str, field: str) -> dict[str, Any]:
    if not text:
        return {}
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"{field} must be a JSON object")
    return value


def registration_from_proto(msg: pb.Registration) -> Registration:
    return Registration.model_validate(
        {
            "agent_id": msg.agent_id,
            "agent_type": msg.agent_type or None,
            "host": msg.host,
            "port": msg.port,
            "health_check_port": msg.health_check_port or None,
            "capabilities": list(msg.capabilities),
            "tags": list(msg.tags),
            "metadata": _json_object(msg.metadata_json, "metadata_json"),
            "check": msg.check or "ttl",
            "ttl_s": msg.ttl_s or None,
        }
    )


def record_to_proto(record: AgentRecord) -> pb.AgentRecord:
    return pb.AgentRecord(
        agent_id=record.agent_id,
        agent_type=record.agent_type,
        host=record.host,
        port=record.port,
        health_check_port=record.health_check_port or 0,
        capabilities=record.capabilities,
        tags=record.tags,
        metadata_json=json.dumps(record.metadata),
        check=record.check,
        health=record.health.value,
        health_note=record.health_note,
        registered_at=record.registered_at,
        last_seen_at=record.last_seen_at,
    )


def submit_from_proto(msg: pb.SubmitRequest) -> UserRequest:
    body: dict[str, Any] = {
        "type": msg.type,
        "context": _json_object(msg.context_json, "context_json"),
        "metadata": {"user_type": msg.user_type or "standard", "urgency": msg.urgency or "normal"},
        "user_id": msg.user_id or None,
        "session_id": msg.session_id or None,
    }
    media = base64.b64encode(msg.media).decode()
    if msg.type == "text":
        body["data"] = msg.text
    elif msg.type == "audio":
        body.update(audio_data=media, format=msg.format or "wav")
    else:
        body.update(image_data=media, format=msg.format or "jpg")
    return _USER_REQUEST.validate_python(body)


def status_to_proto(status: RequestStatus) -> pb.RequestStatus:
    return pb.RequestStatus(
        request_id=status.request_id,
        type=status.type,
        state=status.state.value,
        priority=status.priority,
        downstream=status.downstream or "",
        result_json="" if status.result is None else status.result.model_dump_json(),
        error_json="" if status.error is None else json.dumps(status.error),
        dispatch_seq=-1 if status.dispatch_seq is None else status.dispatch_seq,
    )


async def _answer(context: Any, empty: type[M], call: Callable[[], Awaitable[M]]) -> M:
    """Run ``call``; map errors to the gRPC status on ``context`` and return an empty reply."""
    try:
        return await call()
    except (ValidationError, ValueError) as exc:
        context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
        context.set_details(str(exc))
    except (AisysError, RayTaskError) as exc:
        cause = exc.cause if isinstance(exc, RayTaskError) else exc
        if not isinstance(cause, AisysError):
            raise
        context.set_code(grpc_code_for(cause))
        context.set_details(str(cause))
    return empty()


class _CoreRoutes(Protocol):
    """The HTTP route methods of the deployment that the RPCs reuse."""

    async def register(self, registration: Registration) -> AgentRecord: ...
    async def heartbeat(self, agent_id: str, heartbeat: Heartbeat) -> AgentRecord: ...
    async def get_agent(self, agent_id: str) -> AgentRecord: ...
    async def _query(self, query: AgentQuery) -> tuple[int, list[AgentRecord]]: ...
    async def submit(self, request: UserRequest) -> SubmitReceipt: ...
    async def request_status(self, request_id: str) -> RequestStatus: ...
    async def _submit_and_wait(self, request: UserRequest, timeout_s: float) -> RequestStatus: ...

    @property
    def authenticator(self) -> Authenticator: ...


async def _authorize(routes: _CoreRoutes, context: Any, scope: Scope) -> None:
    """Check the ``authorization: Bearer <jwt>`` metadata of an RPC, as HTTP routes do."""
    metadata = dict(context.invocation_metadata())
    authenticator = routes.authenticator
    if scope is Scope.READ and authenticator.open_reads:
        return
    claims = await authenticator.authenticate(metadata.get("authorization"))
    if not claims.allows(scope):
        raise PermissionDenied(claims.sub, scope.value)


def _rpc(
    scope: Scope, empty: type[M]
) -> Callable[
    [Callable[[_CoreRoutes, R], Awaitable[M]]], Callable[[_CoreRoutes, R, Any], Awaitable[M]]
]:
    """An RPC method from ``body(self, request)``: the caller needs ``scope``, an error becomes
    the gRPC status (and an ``empty`` reply). The method keeps the ``grpc_context`` parameter by
    name, which is how Serve knows to pass the context."""

    def wrap(
        body: Callable[[_CoreRoutes, R], Awaitable[M]],
    ) -> Callable[[_CoreRoutes, R, Any], Awaitable[M]]:
        async def method(self: _CoreRoutes, request: R, grpc_context: Any) -> M:
            async def call() -> M:
                await _authorize(self, grpc_context, scope)
                return await body(self, request)

            return await _answer(grpc_context, empty, call)

        method.__name__ = body.__name__
        method.__qualname__ = body.__qualname__
        method.__doc__ = body.__doc__
        return method

    return wrap


class CoreGrpcMethods:
    """RPC methods of ``aisys.core.v1.CoreOrchestrator``; mixed into the Serve deployment."""

    @_rpc(Scope.REGISTRY_WRITE, pb.AgentRecord)
    async def Register(self: _CoreRoutes, request: pb.Registration) -> pb.AgentRecord:  # noqa: N802
        return record_to_proto(await self.register(registration_from_proto(request)))

    @_rpc(Scope.REGISTRY_WRITE, pb.AgentRecord)
    async def Heartbeat(self: _CoreRoutes, request: pb.HeartbeatRequest) -> pb.AgentRecord:  # noqa: N802
        beat = Heartbeat.model_validate(
            {"status": request.status or "passing", "note": request.note}
        )
        return record_to_proto(await self.heartbeat(request.agent_id, beat))

    @_rpc(Scope.READ, pb.AgentRecord)
    async def Lookup(self: _CoreRoutes, request: pb.LookupRequest) -> pb.AgentRecord:  # noqa: N802
        return record_to_proto(await self.get_agent(request.agent_id))

    @_rpc(Scope.READ, pb.AgentList)
    async def ListAgents(self: _CoreRoutes, request: pb.ListRequest) -> pb.AgentList:  # noqa: N802
        query = AgentQuery.model_validate(
            {
                "capability": request.capability or None,
                "host": request.host or None,
                "health": request.health or None,
                "agent_type": request.agent_type or None,
                "tag": request.tag or None,
            }
        )
        version, agents = await self._query(query)
        return pb.AgentList(version=version, agents=[record_to_proto(a) for a in agents])

    @_rpc(Scope.REQUESTS_SUBMIT, pb.SubmitReply)
    async def Submit(self: _CoreRoutes, request: pb.SubmitRequest) -> pb.SubmitReply:  # noqa: N802
        receipt = await self.submit(submit_from_proto(request))
        return pb.SubmitReply(
            request_id=receipt.request_id,
            priority=receipt.priority,
            queue_position=receipt.queue_position,
        )

    @_rpc(Scope.READ, pb.RequestStatus)
    async def Status(self: _CoreRoutes, request: pb.StatusRequest) -> pb.RequestStatus:  # noqa: N802
        return status_to_proto(await self.request_status(request.request_id))

    @_rpc(Scope.REQUESTS_SUBMIT, pb.RequestStatus)
    async def SubmitAndWait(  # noqa: N802
        self: _CoreRoutes, request: pb.SubmitAndWaitRequest
    ) -> pb.RequestStatus:
        timeout_s = request.timeout_s or _WAIT_DEFAULT_S
        if not 0 < timeout_s <= _WAIT_MAX_S:
            raise ValueError(f"timeout_s must be in (0, {_WAIT_MAX_S:g}], not {timeout_s:g}")
        user_request = submit_from_proto(request.request)
        return status_to_proto(await self._submit_and_wait(user_request, timeout_s))
