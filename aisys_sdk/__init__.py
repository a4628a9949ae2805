"""The aisys agent SDK: what a legacy agent needs to live on aisys, without Ray or ZeroMQ.

One client, blocking (:class:`AgentClient`) or asyncio (:class:`AsyncAgentClient`), over the
services' HTTP API: client-credentials tokens renewed before expiry and on a 401, registration
with a background heartbeat, discovery, coordinated requests, error events, and VRAM leases
held in a ``with`` block. ``docs/porting-guide.md`` maps the legacy calls to these.

Example::

    from aisys_sdk import AgentClient, ClientConfig, Registration

    with AgentClient(ClientConfig(url="http://mainpc:7000", client_id="NLUAgent",
                                  client_secret="...")) as client:
        client.register(Registration(agent_id="NLUAgent", host="10.0.0.5", port=5709))
"""

from aisys_sdk._heartbeat import HeartbeatLoop
from aisys_sdk._lease import Lease
from aisys_sdk.aio import AsyncAgentClient
from aisys_sdk.config import ClientConfig
from aisys_sdk.errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    InvalidRequest,
    LeaseLost,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RequestFailed,
    SdkError,
    ServerError,
    Timeout,
    TransportError,
    Unauthorized,
    Unavailable,
    WaitTimedOut,
)
from aisys_sdk.models import (
    AgentRecord,
    AgentResponse,
    AudioRequest,
    EndedLease,
    ErrorEvent,
    Health,
    Heartbeat,
    LeaseGrant,
    LeaseRequest,
    PublishResult,
    QueuedLease,
    Registration,
    RequestMetadata,
    RequestState,
    RequestStatus,
    SubmitReceipt,
    TextRequest,
    TokenPair,
    UnloadEndpoint,
    VisionRequest,
)
from aisys_sdk.sync import AgentClient, SyncLease

__all__ = [
    "AgentClient",
    "AgentRecord",
    "AgentResponse",
    "ApiError",
    "AsyncAgentClient",
    "AudioRequest",
    "BadRequest",
    "ClientConfig",
    "Conflict",
    "EndedLease",
    "ErrorEvent",
    "Forbidden",
    "Health",
    "Heartbeat",
    "HeartbeatLoop",
    "InvalidRequest",
    "Lease",
    "LeaseGrant",
    "LeaseLost",
    "LeaseRequest",
    "NotFound",
    "PayloadTooLarge",
    "PublishResult",
    "QueuedLease",
    "RateLimited",
    "Registration",
    "RequestFailed",
    "RequestMetadata",
    "RequestState",
    "RequestStatus",
    "SdkError",
    "ServerError",
    "SubmitReceipt",
    "SyncLease",
    "TextRequest",
    "Timeout",
    "TokenPair",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "UnloadEndpoint",
    "VisionRequest",
    "WaitTimedOut",
]
