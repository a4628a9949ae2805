"""ServiceRegistry (7100, health 8100) and SystemDigitalTwin (7120) translated to the registry.

Both legacy services are now the agent registry actor of CoreOrchestrator. Reads (endpoint
lookups, DISCOVER, ``list_agents``, health) come from the local :class:`RegistryView` that a
:class:`RegistryFollower` keeps current, with no Ray call per request; writes go to the actor and
wait until the local view has the change, so a client that registers and then looks itself up
on the same port finds itself (``docs/legacy-protocol.md`` 1.3, 2.2, 3.1, 3.2, 4.1, 4.2).

A lookup of a known agent is answered before the request is decoded into a typed request:
a byte-identical frame from the frame table, any other lookup (BaseAgent's carry a fresh
``request_id``) with one JSON decode and one lookup in the per-agent table of encoded replies.
A registrant's loopback address is published as the address other hosts reach it at.
"""

from __future__ import annotations

import abc
import ipaddress
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

from pydantic import JsonValue, ValidationError
from ray.exceptions import RayError

from actors.registry.client import RegistryClient
from actors.registry.core import check_quotas
from actors.registry.follower import RegistryFollower
from actors.registry.models import AgentRecord, Heartbeat, Registration
from cluster.base.errors import AisysError, ClusterError
from cluster.base.settings import RegistrySettings
from legacy_gateway._codec import (
    HEALTH_VERBS,
    ActionRequest,
    CommandRequest,
    Dialect,
    InvalidRequest,
    LegacyRequest,
    RawRequest,
    Reply,
    TypedRequest,
    dialect_of,
    encode,
    error_reply,
    iso_time,
    unknown,
)
from legacy_gateway.server import Outcome, Received
from legacy_gateway.twin_actions import TwinActions, agent_info, all_status, registered_agent

__all__ = [
    "DISCOVER",
    "ENDPOINT",
    "DigitalTwinPort",
    "FrameCache",
    "HealthPort",
    "RecordSource",
    "RegistryLink",
    "ServiceRegistryPort",
    "health_reply",
    "lookup_key",
    "reachable_host",
]

#: Tag of every registration made through the gateway.
LEGACY_TAG: Final = "legacy"
#: Registration fields the legacy ServiceRegistry took (``dependencies`` it dropped).
_REGISTRATION_FIELDS: Final = (
    *("agent_id", "agent_type", "host", "port"),
    *("health_check_port", "capabilities", "metadata"),
)


class RecordSource(Protocol):
    """Where a :class:`FrameCache` checks its records (the registry link's local view)."""

    @property
    def version(self) -> int: ...

    def peek(self, agent_id: str) -> AgentRecord | None: ...


#: Lookup frames longer than this are not read by the replay path (the smallest allowed
#: ``max_frame_bytes``, so the replay never answers a frame the normal path would refuse).
_LOOKUP_MAX_BYTES: Final = 1024
ENDPOINT: Final = "get_agent_endpoint"
DISCOVER: Final = "DISCOVER"
_ENDPOINT_BYTES: Final = ENDPOINT.encode()


def lookup_key(frame: bytes) -> tuple[str, str] | None:
    """``(ENDPOINT or DISCOVER, agent name)`` of a lookup frame, else None; one JSON decode.

    Reads what the normal path reads and nothing else: the enrichment fields BaseAgent adds
    to every request (a new ``request_id`` and ``timestamp`` each time) do not matter.
    """
    if len(frame) > _LOOKUP_MAX_BYTES or (
        _ENDPOINT_BYTES not in frame and b"ISCOVER" not in frame.upper()
    ):
        return None
    try:
        obj = json.loads(frame.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    if "command" in obj:
        command, payload = obj["command"], obj.get("payload", {})
        if not isinstance(command, str) or command.upper() != DISCOVER:
            return None
        name = payload.get("name") if isinstance(payload, dict) else None
        kind = DISCOVER
    elif obj.get("action") == ENDPOINT:
        name, kind = obj.get("agent_name"), ENDPOINT
    else:
        return None
    return (kind, name) if isinstance(name, str) and name else None


class FrameCache:
    """Encoded hot-read replies per agent name, and the small request frames that asked.

    A reply stays valid while the view holds the record it was built from (records are
    immutable and replaced on every change); it is checked against the view's version, so a
    lookup costs one dict lookup while the registry does not change. :meth:`replay` answers a
    byte-identical request frame without decoding it; frames over 1 KiB, or carrying a
    ``request_id`` (never sent twice), are not remembered, so the frame table holds at most
    ``_MAX_FRAMES`` KiB. Used from one port's thread only.
    """

    _MAX_FRAMES: Final = 4096
    _MAX_NAMES: Final = 10_000

    def __init__(self, build: Callable[[AgentRecord], Reply], link: RecordSource) -> None:
        self._build = build
        self._link = link
        # name -> (view version it was last checked at, record it was built from, reply)
        self._replies: dict[str, tuple[int, AgentRecord, bytes]] = {}
        self._requests: dict[bytes, str] = {}

    def frame(self, record: AgentRecord, request: bytes) -> bytes:
        """The reply for ``record``; ``request`` (the frame that asked) is remembered for it."""
        self._remember(request, record.agent_id)
        cached = self._replies.get(record.agent_id)
        if cached is not None and cached[1] is record:
            return cached[2]
        if len(self._replies) >= self._MAX_NAMES:
            self._replies.clear()
        encoded = encode(self._build(record))
        # Version -1: the first cached() checks the record against the view before trusting it.
        self._replies[record.agent_id] = (-1, record, encoded)
        return encoded

    def cached(self, name: str) -> bytes | None:
        """The reply for agent ``name`` if the view still holds the record it was built from."""
        entry = self._replies.get(name)
        if entry is None:
            return None
        version = self._link.version  # read before the record: a change in between shows
        if entry[0] == version:
            return entry[2]
        if self._link.peek(name) is not entry[1]:
            return None
        self._replies[name] = (version, entry[1], entry[2])
        return entry[2]

    def replay(self, request: bytes) -> bytes | None:
        """The cached reply to a request frame seen before, if its record is unchanged."""
        name = self._requests.get(request)
        return None if name is None else self.cached(name)

    def forget(self, name: str) -> None:
        """Drop the reply for ``name`` (it is answered from elsewhere now)."""
        self._replies.pop(name, None)

    def _remember(self, request: bytes, name: str) -> None:
        if len(request) > _LOOKUP_MAX_BYTES or b'"request_id"' in request:
            return
        if len(self._requests) >= self._MAX_FRAMES:
            self._requests.clear()
        self._requests[request] = name


class RegistryLink:
    """The gateway's access to the registry: the follower's view and the actor for writes.

    Args:
        actor: handle of the registry actor.
        follower: a started follower of that actor.
        write_timeout_s: how long a write waits for the local view to catch up.
        advertised_host: the address other hosts reach this host at (its host profile's
            ``node_ip``), published for agents on this host that register a loopback address;
            None: no such address is known (one machine), so theirs is kept.
        quotas: the registry's settings, to refuse a registration over a quota on the local
            view without a call to the actor (which checks again); None: the actor only.
        builtins: records every lookup finds when the registry holds no agent of that name
            (the consolidated services' legacy names,
            :func:`legacy_gateway.builtin_records.builtin_records`); a registration wins.
    """

    def __init__(
        self,
        actor: Any,
        follower: RegistryFollower,
        write_timeout_s: float,
        advertised_host: str | None = None,
        quotas: RegistrySettings | None = None,
        builtins: Mapping[str, AgentRecord] | None = None,
    ) -> None:
        self._registry = RegistryClient(actor, follower, write_timeout_s)
        self._builtins: dict[str, AgentRecord] = dict(builtins or {})
        self._quotas = quotas
        self._follower = follower
        self._advertised_host = advertised_host
        self.started_at = time.time()

    @property
    def advertised_host(self) -> str | None:
        """This host's address as other hosts reach it, if configured."""
        return self._advertised_host

    @property
    def version(self) -> int:
        """The registry version the local view is at."""
        return self._follower.view.version

    @property
    def healthy(self) -> bool:
        """The local view is loaded and still followed."""
        return self._follower.running and self._follower.last_sync > 0

    def lookup(self, agent_id: str) -> AgentRecord | None:
        """The agent's record from the local view.

        Raises:
            ClusterError: the view was never loaded, so "not found" would be a guess.
        """
        self._require_loaded()
        return self._follower.view.get(agent_id) or self._builtins.get(agent_id)

    def peek(self, agent_id: str) -> AgentRecord | None:
        """The agent's record as the view holds it now, without the loaded check."""
        return self._follower.view.get(agent_id) or self._builtins.get(agent_id)

    def registered(self, agent_id: str) -> AgentRecord | None:
        """The agent's registration, never a built-in record (same error as :meth:`lookup`)."""
        self._require_loaded()
        return self._follower.view.get(agent_id)

    @property
    def builtins(self) -> Mapping[str, AgentRecord]:
        """The built-in records (by name), whether or not a registration hides them."""
        return self._builtins

    def records(self) -> list[AgentRecord]:
        """Every record of the local view (same error as :meth:`lookup`)."""
        self._require_loaded()
        return self._follower.view.list_agents()

    def directory(self) -> list[AgentRecord]:
        """:meth:`records` and the built-in records no registration hides (status listings)."""
        records = self.records()
        view = self._follower.view
        return records + [r for name, r in self._builtins.items() if view.get(name) is None]

    def _require_loaded(self) -> None:
        if self._follower.last_sync <= 0:
            raise ClusterError("the agent registry is not loaded yet; retry in a moment")

    async def register(self, registration: Registration, source: str) -> AgentRecord:
        """Store ``registration`` and wait until the local view shows it.

        Args:
            registration: what the legacy agent sent.
            source: its connection's peer address, which the registry counts legacy
                registrations by ("unknown" when ZeroMQ does not know it).

        Raises:
            AisysError: the registry refused it (:class:`QuotaExceeded` over a quota), or
                :class:`ViewLagging`: it is stored but the local view did not catch up in time.
            ray.exceptions.RayError: the registry actor is unreachable.
        """
        source = source or "unknown"
        if self._quotas is not None:  # a flood over a cap costs no Ray call
            check_quotas(self._quotas, self._follower.view, registration, source)
        change = await self._registry.visible(self._registry.register(registration, source))
        assert change.record is not None  # an upsert always carries its record
        return change.record

    async def heartbeat(self, agent_id: str, heartbeat: Heartbeat) -> None:
        """Record a check result for a registered agent (same errors as :meth:`register`)."""
        await self._registry.heartbeat(agent_id, heartbeat)


def health_reply(name: str, link: RegistryLink) -> Reply:
    """The H1 health dict (``docs/legacy-protocol.md`` 1.2) of service ``name``."""
    return Reply(
        status="ok" if link.healthy else "degraded",
        ready=link.healthy,
        initialized=True,
        message=f"{name} is healthy" if link.healthy else f"{name} lost the registry feed",
        timestamp=iso_time(time.time()),
        uptime=round(time.time() - link.started_at, 3),
        active_threads=threading.active_count(),
    )


def endpoint_reply(record: AgentRecord) -> Reply:
    """ServiceRegistry's ``get_agent_endpoint`` success reply (section 1.3)."""
    return Reply(
        status="success",
        host=record.host,
        port=record.port,
        health_check_port=record.health_check_port,
        agent_type=record.agent_type,
        capabilities=record.capabilities,
        metadata=record.metadata,
        last_registered=iso_time(record.registered_at),
    )


def _is_local(host: str) -> bool:
    """Whether ``host`` means "this machine" (loopback, wildcard, ``localhost``)."""
    if host.lower() in ("", "localhost", "localhost.localdomain"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


def reachable_host(host: str | None, peer: str, link: RegistryLink) -> str:
    """The address other hosts reach a registrant at.

    A legacy agent registers with ``localhost:7120`` on its own host and names itself
    ``127.0.0.1`` (BaseAgent's fallback) or nothing at all (``register_service``): such an
    address is useless to an agent on the other host, so the connection's address stands in,
    and when that is loopback too (the agent runs on this host), this host's LAN address
    (:attr:`RegistryLink.advertised_host`; without one, the address sent, else ``127.0.0.1``).

    Args:
        host: the address the registrant sent, if any.
        peer: the address its connection came from ("" when unknown).
        link: knows this host's LAN address.
    """
    if host and not _is_local(host):
        return host
    if peer and not _is_local(peer):
        return peer
    return link.advertised_host or host or "127.0.0.1"


def _registration_from_fields(fields: dict[str, JsonValue]) -> dict[str, JsonValue]:
    nested = fields.get("registration_data")
    if nested is not None:
        if not isinstance(nested, dict):
            raise ValueError("Invalid registration_data, expected dictionary")
        source = nested
    else:
        source = fields
    data: dict[str, JsonValue] = {k: source[k] for k in _REGISTRATION_FIELDS if k in source}
    if "agent_id" not in data:
        raise ValueError("Missing 'agent_id' (in registration_data or at top level)")
    return data


def _legacy_registration(data: dict[str, Any]) -> Registration:
    return Registration.model_validate({**data, "check": "none", "tags": [LEGACY_TAG]})


def _validation_text(exc: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}" for e in exc.errors()]
    return "; ".join(parts)


async def _write(
    link: RegistryLink, registration: Registration, dialect: Dialect, peer: str
) -> Reply | None:
    """Register from ``peer``; None on success, else the error reply (quotas name theirs)."""
    try:
        await link.register(registration, peer)
    except AisysError as exc:
        return error_reply(dialect, str(exc))
    except RayError as exc:
        return error_reply(dialect, f"registry unavailable: {type(exc).__name__}")
    return None


async def register_agent(link: RegistryLink, fields: dict[str, JsonValue], peer: str) -> Reply:
    """``register_agent``, nested or flat, with or without ``agent_type`` (section 2.2, 3.1).

    A loopback ``host`` is replaced by :func:`reachable_host`.
    """
    try:
        data = _registration_from_fields(fields)
        if isinstance(data.get("host"), str):
            data["host"] = reachable_host(str(data["host"]), peer, link)
        registration = _legacy_registration(data)
    except ValidationError as exc:
        return error_reply(Dialect.ACTION, _validation_text(exc))
    except ValueError as exc:
        return error_reply(Dialect.ACTION, str(exc))
    failed = await _write(link, registration, Dialect.ACTION, peer)
    return failed or Reply(status="success")


def discover_reply(record: AgentRecord) -> Reply:
    """The old SDT's DISCOVER success reply: the stored fields plus ``ip``, ``host``, ``port``."""
    found: dict[str, JsonValue] = {
        **record.metadata,
        "name": record.agent_id,
        "ip": record.host,
        "host": record.host,
        "port": record.port,
        "capabilities": list(record.capabilities),
    }
    if record.health_check_port is not None:
        found["health_check_port"] = record.health_check_port
    return Reply(status="SUCCESS", payload=found)


def get_agent_endpoint(
    link: RegistryLink, fields: dict[str, JsonValue], cache: FrameCache, request: bytes
) -> Reply | bytes:
    name = fields.get("agent_name")
    if not isinstance(name, str) or not name:
        return error_reply(Dialect.ACTION, "Missing 'agent_name'")
    record = link.lookup(name)
    if record is None:
        return error_reply(Dialect.ACTION, f"Agent {name} not found")
    return cache.frame(record, request)


def list_agents(link: RegistryLink) -> Reply:
    return Reply(status="success", agents=[r.agent_id for r in link.directory()])


class HealthPort:
    """A dedicated health port: any request gets the H1 dict (8100)."""

    def __init__(self, service: str, link: RegistryLink) -> None:
        self.service = service
        self._link = link

    def handle(self, request: LegacyRequest, received: Received) -> Reply:  # noqa: ARG002
        return health_reply(self.service, self._link)


class _RegistryPort(abc.ABC):
    """A port answered from the registry's local view: a view not loaded yet (a
    :class:`ClusterError`) becomes an error reply in the request's dialect."""

    def handle(self, request: LegacyRequest, received: Received) -> Outcome:
        try:
            return self._dispatch(request, received)
        except ClusterError as exc:
            return error_reply(dialect_of(request), str(exc))

    @abc.abstractmethod
    def _dispatch(self, request: LegacyRequest, received: Received) -> Outcome:
        """Answer ``request``."""


class ServiceRegistryPort(_RegistryPort):
    """The ``action`` dialect of the legacy ServiceRegistry (section 4.1) on port 7100."""

    service = "ServiceRegistry"

    def __init__(self, link: RegistryLink) -> None:
        self._link = link
        self._endpoints = FrameCache(endpoint_reply, link)

    def replay(self, request: bytes) -> bytes | None:
        """A lookup of a known agent, answered from the cache of encoded replies."""
        cached = self._endpoints.replay(request)
        if cached is not None:
            return cached
        key = lookup_key(request)
        return self._endpoints.cached(key[1]) if key is not None and key[0] == ENDPOINT else None

    def _dispatch(self, request: LegacyRequest, received: Received) -> Outcome:
        if isinstance(request, InvalidRequest):
            return error_reply(request.dialect, request.reason)
        if isinstance(request, RawRequest) and request.text in HEALTH_VERBS:
            return health_reply(self.service, self._link)
        if not isinstance(request, ActionRequest):
            return unknown(request)
        action = request.action
        if action in HEALTH_VERBS:
            return health_reply(self.service, self._link)
        if action == ENDPOINT:
            return get_agent_endpoint(self._link, request.fields, self._endpoints, received.data)
        if action == "list_agents":
            return list_agents(self._link)
        if action == "register_agent":
            return register_agent(self._link, request.fields, received.peer())
        return unknown(request)


class DigitalTwinPort(_RegistryPort):
    """SystemDigitalTwin on 7120: the ``action`` (4.2) and old ``command`` (3.2) dialects.

    A ``command`` REGISTER needs only ``name`` (section 3.2). One without ``port`` cannot be an
    agent registry entry (the registry stores endpoints): its payload is kept here, as the old
    SDT kept every payload, and DISCOVER on this port returns it.
    """

    service = "SystemDigitalTwin"

    def __init__(
        self,
        link: RegistryLink,
        actions: TwinActions | None = None,
        *,
        held_max: int = 1000,
        held_max_bytes: int = 16 * 1024,
    ) -> None:
        self._link = link
        self._held_max = held_max
        self._held_max_bytes = held_max_bytes
        self._twin = actions
        self._endpoints = FrameCache(endpoint_reply, link)
        self._discovered = FrameCache(discover_reply, link)
        self._unaddressed: dict[str, dict[str, JsonValue]] = {}

    def replay(self, request: bytes) -> bytes | None:
        """A DISCOVER or endpoint lookup of a known agent, answered from the caches."""
        cached = self._discovered.replay(request) or self._endpoints.replay(request)
        if cached is not None:
            return cached
        key = lookup_key(request)
        if key is None:
            return None
        return (self._endpoints if key[0] == ENDPOINT else self._discovered).cached(key[1])

    def _dispatch(self, request: LegacyRequest, received: Received) -> Outcome:
        if isinstance(request, InvalidRequest):
            return error_reply(request.dialect, request.reason)
        if isinstance(request, RawRequest):
            if request.text == "ping":  # SDT@B answered raw ping with its health dict
                return health_reply(self.service, self._link)
            if request.text == "GET_ALL_STATUS":  # section 3.2: the bare map, no "status" key
                return json.dumps(all_status(self._link.directory())).encode()
            return unknown(request)
        if isinstance(request, CommandRequest):
            return self._command(request, received)
        if isinstance(request, TypedRequest):
            return unknown(request)
        return self._action(request, received)

    def _action(self, request: ActionRequest, received: Received) -> Outcome:
        action, fields = request.action, request.fields
        if action == "ping":
            return Reply(status="ok", message="pong", timestamp=iso_time(time.time()))
        if action in HEALTH_VERBS:
            return health_reply(self.service, self._link)
        if action == "register_agent":
            simple = "registration_data" not in fields and "agent_id" not in fields
            if simple and "agent_name" in fields and self._twin is not None:
                return self._twin.register_status(fields)
            return register_agent(self._link, fields, received.peer())
        if action == ENDPOINT:
            return get_agent_endpoint(self._link, fields, self._endpoints, received.data)
        if action == "list_agents":
            return list_agents(self._link)
        twin_action = self._twin.action(action) if self._twin is not None else None
        if twin_action is not None:
            return twin_action(fields)
        if action == "update_vram_metrics" and self._twin is not None:
            payload = fields.get("payload")
            if not isinstance(payload, dict):
                return error_reply(Dialect.ACTION, "Missing required parameter: payload")
            return self._twin.report_model_vram(payload, Dialect.ACTION)
        if action == "get_all_agents":
            return Reply(status="success", agents=all_status(self._link.directory()))
        if action == "get_registered_agents":
            agents = [registered_agent(r) for r in self._link.directory()]
            return Reply(status="success", agents=agents)
        if action == "get_agent_info":
            return agent_info(self._link, fields)
        return unknown(request)

    def _command(self, request: CommandRequest, received: Received) -> Outcome:
        command = request.command.upper()
        if command == "REGISTER":
            return self._register(request.payload, received.peer())
        if command == DISCOVER:
            return self._discover(request.payload, received.data)
        if command == "PING":
            return Reply(status="SUCCESS", message="pong")
        if self._twin is not None and command == "GET_METRICS":
            return self._twin.get_metrics_command(request.payload)
        if self._twin is not None and command == "REPORT_MODEL_VRAM":
            return self._twin.report_model_vram(request.payload, Dialect.COMMAND)
        return unknown(request)

    def _register(self, payload: dict[str, JsonValue], peer: str) -> Outcome:
        name = payload.get("name")
        if not isinstance(name, str) or not name:
            return error_reply(
                Dialect.COMMAND, "Missing required field 'name' in registration payload"
            )
        sent = payload.get("ip") or payload.get("host")
        # No legacy registrant sends its ip (section 3.1): the connection's address is used.
        host = reachable_host(sent if isinstance(sent, str) else None, peer, self._link)
        if "port" not in payload:
            return self._keep_unaddressed(name, {**payload, "ip": host, "host": host})
        extra = {k: v for k, v in payload.items() if k not in {"name", "ip", "host", "port"}}
        capabilities = extra.pop("capabilities", [])
        health_port = extra.pop("health_check_port", None)
        data = {
            "agent_id": name,
            "agent_type": extra.pop("agent_type", None),
            "host": host,
            "port": payload["port"],
            "health_check_port": health_port,
            "capabilities": capabilities,
            "metadata": extra,
        }
        try:
            registration = _legacy_registration(data)
        except ValidationError as exc:
            return error_reply(Dialect.COMMAND, _validation_text(exc))

        async def write() -> Reply:
            failed = await _write(self._link, registration, Dialect.COMMAND, peer)
            if failed is not None:
                return failed
            self._unaddressed.pop(name, None)  # the endpoint replaces a payload kept here
            return Reply(status="SUCCESS", message=f"Service {name} registered successfully")

        return write()

    @property
    def held(self) -> int:
        """Payloads kept for REGISTERs without a port."""
        return len(self._unaddressed)

    def _keep_unaddressed(self, name: str, payload: dict[str, JsonValue]) -> Reply:
        size = len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
        if size > self._held_max_bytes:
            return error_reply(
                Dialect.COMMAND,
                f"The registration payload of {name} is {size} bytes of JSON; the limit for "
                f"one without a 'port' is {self._held_max_bytes} bytes "
                "(legacy_gateway.held_payload_max_bytes)",
            )
        if name not in self._unaddressed and len(self._unaddressed) >= self._held_max:
            return error_reply(
                Dialect.COMMAND,
                f"{len(self._unaddressed)} services without a port are registered here "
                f"already; the limit is {self._held_max} (legacy_gateway.held_payloads_max); "
                "register with a 'port'",
            )
        self._unaddressed[name] = payload
        self._discovered.forget(name)  # DISCOVER must answer this payload, not the cache
        return Reply(status="SUCCESS", message=f"Service {name} registered successfully")

    def _discover(self, payload: dict[str, JsonValue], request: bytes) -> Reply | bytes:
        name = payload.get("name")
        if not isinstance(name, str) or not name:
            return error_reply(Dialect.COMMAND, "Missing required field 'name' in payload")
        kept = self._unaddressed.get(name)
        if kept is not None:
            return Reply(status="SUCCESS", payload=kept)
        record = self._link.lookup(name)
        if record is None:
            return Reply(status="NOT_FOUND", message=f"Service '{name}' not registered")
        return self._discovered.frame(record, request)
