from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Registration(_message.Message):
    __slots__ = ("agent_id", "agent_type", "host", "port", "health_check_port", "capabilities", "tags", "metadata_json", "check", "ttl_s")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    HEALTH_CHECK_PORT_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    CHECK_FIELD_NUMBER: _ClassVar[int]
    TTL_S_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    agent_type: str
    host: str
    port: int
    health_check_port: int
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    metadata_json: str
    check: str
    ttl_s: float
    def __init__(self, agent_id: _Optional[str] = ..., agent_type: _Optional[str] = ..., host: _Optional[str] = ..., port: _Optional[int] = ..., health_check_port: _Optional[int] = ..., capabilities: _Optional[_Iterable[str]] = ..., tags: _Optional[_Iterable[str]] = ..., metadata_json: _Optional[str] = ..., check: _Optional[str] = ..., ttl_s: _Optional[float] = ...) -> None: ...

class AgentRecord(_message.Message):
    __slots__ = ("agent_id", "agent_type", "host", "port", "health_check_port", "capabilities", "tags", "metadata_json", "check", "health", "health_note", "registered_at", "last_seen_at")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    HEALTH_CHECK_PORT_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    CHECK_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    HEALTH_NOTE_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    agent_type: str
    host: str
    port: int
    health_check_port: int
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    metadata_json: str
    check: str
    health: str
    health_note: str
    registered_at: float
    last_seen_at: float
    def __init__(self, agent_id: _Optional[str] = ..., agent_type: _Optional[str] = ..., host: _Optional[str] = ..., port: _Optional[int] = ..., health_check_port: _Optional[int] = ..., capabilities: _Optional[_Iterable[str]] = ..., tags: _Optional[_Iterable[str]] = ..., metadata_json: _Optional[str] = ..., check: _Optional[str] = ..., health: _Optional[str] = ..., health_note: _Optional[str] = ..., registered_at: _Optional[float] = ..., last_seen_at: _Optional[float] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("agent_id", "status", "note")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    status: str
    note: str
    def __init__(self, agent_id: _Optional[str] = ..., status: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class LookupRequest(_message.Message):
    __slots__ = ("agent_id",)
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    def __init__(self, agent_id: _Optional[str] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("capability", "host", "health", "agent_type", "tag")
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    AGENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    capability: str
    host: str
    health: str
    agent_type: str
    tag: str
    def __init__(self, capability: _Optional[str] = ..., host: _Optional[str] = ..., health: _Optional[str] = ..., agent_type: _Optional[str] = ..., tag: _Optional[str] = ...) -> None: ...

class AgentList(_message.Message):
    __slots__ = ("version", "agents")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    version: int
    agents: _containers.RepeatedCompositeFieldContainer[AgentRecord]
    def __init__(self, version: _Optional[int] = ..., agents: _Optional[_Iterable[_Union[AgentRecord, _Mapping]]] = ...) -> None: ...

class SubmitRequest(_message.Message):
    __slots__ = ("type", "text", "media", "format", "context_json", "user_type", "urgency", "user_id", "session_id")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MEDIA_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_JSON_FIELD_NUMBER: _ClassVar[int]
    USER_TYPE_FIELD_NUMBER: _ClassVar[int]
    URGENCY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    type: str
    text: str
    media: bytes
    format: str
    context_json: str
    user_type: str
    urgency: str
    user_id: str
    session_id: str
    def __init__(self, type: _Optional[str] = ..., text: _Optional[str] = ..., media: _Optional[bytes] = ..., format: _Optional[str] = ..., context_json: _Optional[str] = ..., user_type: _Optional[str] = ..., urgency: _Optional[str] = ..., user_id: _Optional[str] = ..., session_id: _Optional[str] = ...) -> None: ...

class SubmitReply(_message.Message):
    __slots__ = ("request_id", "priority", "queue_position")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    priority: int
    queue_position: int
    def __init__(self, request_id: _Optional[str] = ..., priority: _Optional[int] = ..., queue_position: _Optional[int] = ...) -> None: ...

class SubmitAndWaitRequest(_message.Message):
    __slots__ = ("request", "timeout_s")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    request: SubmitRequest
    timeout_s: float
    def __init__(self, request: _Optional[_Union[SubmitRequest, _Mapping]] = ..., timeout_s: _Optional[float] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class RequestStatus(_message.Message):
    __slots__ = ("request_id", "type", "state", "priority", "downstream", "result_json", "error_json", "dispatch_seq")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    DOWNSTREAM_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_JSON_FIELD_NUMBER: _ClassVar[int]
    DISPATCH_SEQ_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    type: str
    state: str
    priority: int
    downstream: str
    result_json: str
    error_json: str
    dispatch_seq: int
    def __init__(self, request_id: _Optional[str] = ..., type: _Optional[str] = ..., state: _Optional[str] = ..., priority: _Optional[int] = ..., downstream: _Optional[str] = ..., result_json: _Optional[str] = ..., error_json: _Optional[str] = ..., dispatch_seq: _Optional[int] = ...) -> None: ...
