"""The agent SDK without a server: its models match the services', errors map, tokens renew."""

from __future__ import annotations

import asyncio
import importlib
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, SecretStr, TypeAdapter, ValidationError

import aisys_sdk
from actors.errors import models as errorbus
from actors.registry import models as registry
from actors.resources import models as resources
from actors.resources import worker_models as workers
from actors.security import models as security
from aisys_sdk import errors, models
from aisys_sdk._heartbeat import HeartbeatLoop
from aisys_sdk._tokens import TokenSource
from aisys_sdk.config import ClientConfig
from deployments.core import models as core
from tests._tls import self_signed_certificate

# (SDK model, the service's model): same fields, same required ones, same JSON types.
PAIRS: list[tuple[Any, Any]] = [
    (models.Registration, registry.Registration),
    (models.Heartbeat, registry.Heartbeat),
    (models.AgentRecord, registry.AgentRecord),
    (models.TokenPair, security.TokenPair),
    (models.RequestMetadata, core.RequestMetadata),
    (models.TextRequest, core.TextRequest),
    (models.AudioRequest, core.AudioRequest),
    (models.VisionRequest, core.VisionRequest),
    (models.SubmitReceipt, core.SubmitReceipt),
    (models.RequestStatus, core.RequestStatus),
    (models.AgentResponse, core.AgentResponse),
    (models.ErrorEvent, errorbus.ErrorEvent),
    (models.PublishResult, errorbus.PublishResult),
    (models.UnloadEndpoint, resources.UnloadEndpoint),
    (models.LeaseRequest, resources.LeaseRequest),
    (models.LeaseGrant, resources.LeaseGrant),
    (models.QueuedLease, resources.QueuedLease),
    (models.EndedLease, resources.EndedLease),
    (models.WorkerRequest, workers.WorkerRequest),
    (models.WorkerStatus, workers.WorkerStatus),
    (models.WorkerCall, workers.WorkerCall),
    (models.WorkerCallResult, workers.WorkerCallResult),
]


def _shape(schema: dict[str, Any], defs: dict[str, Any]) -> Any:
    """The JSON types of a schema, without titles, descriptions, defaults and bounds."""
    if "$ref" in schema:
        return _shape(defs[schema["$ref"].split("/")[-1]], defs)
    if "anyOf" in schema or "oneOf" in schema:
        return sorted(
            (repr(_shape(s, defs)) for s in schema.get("anyOf", schema.get("oneOf", []))),
        )
    if "enum" in schema or "const" in schema:
        return sorted(map(str, schema.get("enum", [schema.get("const")])))
    kind = schema.get("type")
    if kind == "object" and "properties" in schema:
        return {
            "required": sorted(schema.get("required", [])),
            "properties": {k: _shape(v, defs) for k, v in schema["properties"].items()},
        }
    if kind == "object":
        return ("object", _shape(schema.get("additionalProperties", {}), defs))
    if kind == "array":
        return ("array", _shape(schema.get("items", {}), defs))
    return kind


@pytest.mark.parametrize(("sdk", "server"), PAIRS, ids=[p[0].__name__ for p in PAIRS])
@pytest.mark.parametrize("mode", ["validation", "serialization"])
def test_sdk_models_match_the_services(sdk: type[BaseModel], server: type[BaseModel], mode: str):
    ours = sdk.model_json_schema(mode=mode)  # type: ignore[arg-type]
    theirs = server.model_json_schema(mode=mode)  # type: ignore[arg-type]
    assert _shape(ours, ours.get("$defs", {})) == _shape(theirs, theirs.get("$defs", {}))


def test_an_sdk_request_is_a_valid_server_request_and_back():
    sent = models.LeaseRequest(owner="MMA", vram_mb=4200, model_name="phi-2", ttl_s=20)
    parsed = resources.LeaseRequest.model_validate_json(sent.model_dump_json())
    assert models.LeaseRequest.model_validate_json(parsed.model_dump_json()) == sent
    event = models.ErrorEvent(agent="NLUAgent", error_type="timeout", severity="warning")
    assert errorbus.ErrorEvent.model_validate_json(event.model_dump_json()).id == event.id


def test_answers_ignore_fields_a_newer_server_adds():
    record = registry.AgentRecord(
        agent_id="a",
        agent_type="a",
        host="h",
        port=1,
        health_check_port=None,
        capabilities=[],
        tags=[],
        metadata={},
        check="ttl",
        ttl_s=3,
        deregister_critical_after_s=60,
        health=registry.Health.PASSING,
        health_note="",
        registered_at=1,
        last_seen_at=1,
        critical_since=None,
    ).model_dump(mode="json")
    parsed = models.AgentRecord.model_validate({**record, "added_later": 1})
    assert parsed.endpoint == "tcp://h:1"


def test_the_public_surface_is_pinned():
    for name in ("aisys_sdk", "aisys_sdk.errors", "aisys_sdk.models", "aisys_sdk.aio"):
        module = importlib.import_module(name)
        for member in module.__all__:
            assert hasattr(module, member) and not member.startswith("_")
    assert {"AgentClient", "AsyncAgentClient", "ClientConfig", "SdkError", "LeaseRequest"} <= set(
        aisys_sdk.__all__
    )
    assert set(errors.__all__) - {"error_from_response"} <= set(aisys_sdk.__all__)


def _response(status: int, body: Any = None, headers: dict[str, str] | None = None):
    request = httpx.Request("GET", "http://aisys/core/agents/x")
    if body is None:
        return httpx.Response(status, text="plain failure", headers=headers, request=request)
    return httpx.Response(status, json=body, headers=headers, request=request)


def test_error_bodies_become_typed_errors_with_the_servers_fields():
    body = {"error": "AgentNotFound", "component": "registry", "detail": "registry: no agent"}
    exc = errors.error_from_response(_response(404, body))
    assert isinstance(exc, errors.NotFound)
    assert (exc.status, exc.code, exc.component, exc.detail) == (
        404,
        "AgentNotFound",
        "registry",
        "registry: no agent",
    )
    assert "404 AgentNotFound" in str(exc)
    limited = errors.error_from_response(_response(429, body, {"Retry-After": "7"}))
    assert isinstance(limited, errors.RateLimited) and limited.retry_after_s == 7
    down = errors.error_from_response(_response(503, body, {"Retry-After": "1"}))
    assert isinstance(down, errors.Unavailable) and isinstance(down, errors.ServerError)
    assert down.retry_after_s == 1
    assert isinstance(errors.error_from_response(_response(502, None)), errors.ServerError)
    invalid = errors.error_from_response(
        _response(422, {"detail": [{"loc": ["body", "port"], "msg": "too big"}]})
    )
    assert isinstance(invalid, errors.InvalidRequest) and invalid.detail == "body.port: too big"
    plain = errors.error_from_response(_response(418, None))
    assert type(plain) is errors.ApiError and plain.code == "HTTP 418"
    assert plain.detail == "plain failure"


def test_config_checks_url_and_ca_file(tmp_path: Path):
    with pytest.raises(ValidationError, match="ca_file"):
        ClientConfig(client_id="a", client_secret=SecretStr("s"), ca_file=tmp_path / "none.pem")
    with pytest.raises(ValidationError, match="url"):
        ClientConfig(url="mainpc:7000", client_id="a", client_secret=SecretStr("s"))
    cert, _ = self_signed_certificate(tmp_path)
    config = ClientConfig(
        url="https://127.0.0.1:7000/", client_id="a", client_secret=SecretStr("s"), ca_file=cert
    )
    assert config.url == "https://127.0.0.1:7000"
    context = config.verify()
    assert isinstance(context, ssl.SSLContext) and len(context.get_ca_certs()) == 1
    assert ClientConfig(client_id="a", client_secret=SecretStr("s")).verify() is True


class _Grants:
    """Answers token grants in order; records what was asked."""

    def __init__(self, expires_in: int, refuse_refresh: bool = False) -> None:
        self.asked: list[tuple[str, dict[str, Any]]] = []
        self._expires_in = expires_in
        self._refuse_refresh = refuse_refresh

    async def __call__(self, path: str, body: dict[str, Any]) -> models.TokenPair:
        self.asked.append((path, body))
        if path == "/security/refresh" and self._refuse_refresh:
            raise errors.Unauthorized(401, "TokenRejected", "security", "expired", "POST", path)
        n = len(self.asked)
        return models.TokenPair(
            access_token=f"a{n}", expires_in=self._expires_in, refresh_token=f"r{n}", scope=""
        )


def test_tokens_renew_before_expiry_by_refresh_then_by_login():
    now = [1000.0]
    grants = _Grants(expires_in=100)
    config = ClientConfig(client_id="agent", client_secret=SecretStr("s"), refresh_margin_s=30)
    tokens = TokenSource(grants, config, lambda: now[0])
    assert asyncio.run(tokens.access_token()) == "a1"
    now[0] += 69  # 31 s left: still good
    assert asyncio.run(tokens.access_token()) == "a1"
    now[0] += 1  # the margin reached: refreshed with the refresh token
    assert asyncio.run(tokens.access_token()) == "a2"
    assert grants.asked[0][1]["grant_type"] == "client_credentials"
    assert grants.asked[1] == ("/security/refresh", {"refresh_token": "r1"})
    asyncio.run(tokens.rejected("a-stale"))  # a 401 to an older token changes nothing
    assert asyncio.run(tokens.access_token()) == "a2"
    asyncio.run(tokens.rejected("a2"))
    assert asyncio.run(tokens.access_token()) == "a3"
    assert tokens.renewals == 3


def test_a_refused_refresh_token_falls_back_to_the_client_credentials():
    now = [0.0]
    grants = _Grants(expires_in=10, refuse_refresh=True)
    config = ClientConfig(client_id="agent", client_secret=SecretStr("s"), scope="read")
    tokens = TokenSource(grants, config, lambda: now[0])
    asyncio.run(tokens.access_token())
    now[0] += 5  # half of a short lifetime is the most margin taken
    assert asyncio.run(tokens.access_token()) == "a3"
    assert [path for path, _ in grants.asked] == [
        "/security/token",
        "/security/refresh",
        "/security/token",
    ]
    assert grants.asked[2][1]["scope"] == "read"
    assert TypeAdapter(models.LeaseStatus).validate_python(
        {"state": "expired", "lease_id": "l", "owner": "o", "ended_at": 1, "reason": "ttl"}
    ).state == ("expired")


def test_heartbeat_loop_backs_off_on_transient_errors_and_stops_on_others():
    down = errors.TransportError("PUT", "/core/agents/a/heartbeat", "refused")
    forbidden = errors.Forbidden(403, "PermissionDenied", "security", "no scope", "PUT", "/")
    script: list[BaseException | None] = [down, down, None, forbidden]
    sent: list[tuple[float, str]] = []

    async def beat(heartbeat: models.Heartbeat) -> Any:
        sent.append((time.monotonic(), heartbeat.status))
        outcome = script.pop(0)
        if outcome is not None:
            raise outcome

    async def register() -> Any:
        raise AssertionError("not asked for")

    def health() -> models.Heartbeat:
        raise OSError("disk gone")

    async def scenario() -> HeartbeatLoop:
        loop = HeartbeatLoop("a", beat, register, interval_s=0.4, health=health)
        loop.start()
        for _ in range(200):
            if not loop.running:
                break
            await asyncio.sleep(0.01)
        return loop

    loop = asyncio.run(scenario())
    assert isinstance(loop.error, errors.Forbidden) and not loop.running
    assert [status for _, status in sent] == ["critical"] * 4  # the raising check is its health
    gaps = [b[0] - a[0] for a, b in zip(sent, sent[1:], strict=False)]
    # Backoff from a quarter of the interval (0.1 s, then 0.2 s), then the interval again.
    assert gaps[0] < 0.35 and gaps[1] < 0.35 and gaps[2] >= 0.35
    assert loop.sent == 1 and loop.failures == 0
