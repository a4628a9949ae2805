"""deployments.auth without Ray: the token is checked before the request is parsed, and a
replica whose revocation feed stalls fails closed (fake actor, fake clock)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Query
from fastapi.routing import APIRoute
from pydantic import BaseModel
from ray.exceptions import RayActorError

from actors.security.models import Claims, Jwks, Scope, SecurityFeed
from actors.security.tokens import TokenVerifier
from cluster.base.errors import ConfigError, RevocationStale, TokenRejected
from deployments.auth import _SecurityFollower, auth_first, install_auth, require
from deployments.http import install_error_handlers


class Body(BaseModel):
    name: str


class FakeAuthority:
    """Accepts ``Bearer writer`` (registry:write) and ``Bearer reader`` (read)."""

    def __init__(self, open_reads: bool = False) -> None:
        self.open_reads = open_reads

    async def authenticate(self, authorization: str | None) -> Claims:
        scope = {"Bearer writer": "registry:write", "Bearer reader": "read"}.get(
            authorization or ""
        )
        if scope is None:
            raise TokenRejected("no bearer token" if not authorization else "bad signature")
        return Claims(
            sub="t", iss="aisys", aud="aisys", exp=2, iat=1, nbf=1, jti="j", scope=scope,
            kind="user",
        )  # fmt: skip


def make_app(open_reads: bool = False, first: bool = True, as_serve: bool = True) -> FastAPI:
    api = FastAPI()
    install_error_handlers(api)
    if first:
        auth_first(api)

    @api.post("/things")
    async def create(body: Body, _: Annotated[Claims, require(Scope.REGISTRY_WRITE)]) -> str:
        return body.name

    @api.get("/things", dependencies=[require(Scope.READ)])
    async def things(limit: Annotated[int, Query(ge=1)] = 5) -> int:
        return limit

    @api.post("/open")
    async def open_route(body: Body) -> str:
        return body.name

    if as_serve:
        # What serve.ingress does to a class's routes: moved to a router that is included.
        moved = APIRouter()
        for route in [r for r in api.router.routes if isinstance(r, APIRoute)]:
            api.router.routes.remove(route)
            moved.routes.append(route)
        api.include_router(moved)
    install_auth(api, FakeAuthority(open_reads))
    return api


def test_an_app_that_declared_its_routes_before_auth_first_does_not_start() -> None:
    with pytest.raises(ConfigError, match=r"routes \['/things', '/things'\] check their token"):
        make_app(first=False)


class Client:
    """A synchronous face on httpx's ASGI transport (no server, no thread)."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self._app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return await c.request(method, url, **kwargs)

        return asyncio.run(send())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)


@pytest.fixture(params=[True, False], ids=["serve-ingress", "plain"])
def client(request: pytest.FixtureRequest) -> Iterator[Client]:
    yield Client(make_app(as_serve=request.param))


BROKEN: dict[str, Any] = {"content": b'{"name": ', "headers": {"content-type": "application/json"}}


def test_no_token_is_401_before_a_malformed_body_or_query_is_parsed(client: Client) -> None:
    refused = client.post("/things", **BROKEN)
    assert refused.status_code == 401, refused.text
    assert refused.json()["detail"] == "security: token rejected: no bearer token"
    assert "invalid_token" in refused.headers["www-authenticate"]
    bad_token = client.post("/things", headers={"Authorization": "Bearer forged"}, json={})
    assert bad_token.status_code == 401
    assert client.get("/things?limit=zero").status_code == 401


def test_a_missing_scope_is_403_and_a_good_token_reaches_validation(client: Client) -> None:
    reader = {"Authorization": "Bearer reader", "content-type": "application/json"}
    forbidden = client.post("/things", content=b'{"name": ', headers=reader)
    assert forbidden.status_code == 403 and "lacks the 'registry:write'" in forbidden.text
    writer = {"Authorization": "Bearer writer", "content-type": "application/json"}
    assert client.post("/things", content=b'{"name": ', headers=writer).status_code == 422
    assert client.post("/things", json={"name": "x"}, headers=writer).json() == "x"
    reads = {"Authorization": "Bearer reader"}
    assert client.get("/things?limit=zero", headers=reads).status_code == 422
    assert client.get("/things?limit=3", headers=reads).json() == 3


def test_open_routes_stay_open_and_open_reads_need_no_token(client: Client) -> None:
    assert client.post("/open", **BROKEN).status_code == 422
    assert client.post("/open", json={"name": "y"}).json() == "y"
    open_client = Client(make_app(open_reads=True))
    assert open_client.get("/things?limit=2").json() == 2
    assert open_client.post("/things", json={"name": "x"}).status_code == 401


def test_a_query_parameter_the_route_does_not_take_is_refused_naming_those_it_does(
    client: Client,
) -> None:
    reads = {"Authorization": "Bearer reader"}
    mistyped = client.get("/things?limit=3&lmit=4", headers=reads)
    assert mistyped.status_code == 422, mistyped.text
    assert mistyped.json()["detail"] == (
        "validation: unknown query parameter(s) lmit; /things takes: limit"
    )
    # The token still comes first, and a route without query parameters says so.
    assert client.get("/things?lmit=4").status_code == 401
    assert "takes: none" in client.post("/open?x=1", json={"name": "y"}).text


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class StallingActor:
    """wait_changes answers the first poll and the third; the second stalls until released."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, float, str]] = []
        self.release = asyncio.Event()
        self.version = 1

    @property
    def wait_changes(self) -> Any:
        return self

    def remote(self, since: int, timeout_s: float, follower: str) -> Any:
        self.calls.append((since, timeout_s, follower))
        return self._answer(len(self.calls))

    async def _answer(self, call: int) -> SecurityFeed:
        if call == 2:
            await self.release.wait()
        elif call > 3:
            await asyncio.Event().wait()  # idle long-poll, until cancelled
        return SecurityFeed(version=self.version, jwks=Jwks(keys=[]), revoked={})


async def _until(condition: Any) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


def test_a_replica_whose_feed_stalls_rejects_tokens_until_it_catches_up() -> None:
    async def scenario() -> None:
        clock, actor = FakeClock(), StallingActor()
        follower = _SecurityFollower(
            actor, TokenVerifier("aisys", "aisys", 5), 5.0, "core/Core/r1", clock
        )
        follower.start()
        assert await follower.wait_synced(1)
        follower.require_fresh()  # just confirmed
        await _until(lambda: len(actor.calls) == 2)  # the next long-poll is out, and stalls
        assert actor.calls[1] == (1, 1.25, "core/Core/r1")  # reports its version; age / 4
        clock.now += 5.0
        follower.require_fresh()  # exactly at the limit: still accepted
        clock.now += 0.5
        with pytest.raises(RevocationStale, match=r"5\.5 s old \(limit 5 s\)"):
            follower.require_fresh()
        actor.version = 2
        actor.release.set()  # the stalled answer was asked for at 100.0: still too old
        await _until(lambda: len(actor.calls) >= 4)
        assert follower.version == 2
        follower.require_fresh()  # the third poll, sent at 105.5, confirmed it
        await follower.stop()

    asyncio.run(scenario())


class LostActor:
    """Answers the first poll; then its node is gone. Every later call raises RayActorError
    (``raises``), or waits forever, as a call queued for an actor that Ray cannot restart while
    its host is gone does."""

    def __init__(self, raises: bool) -> None:
        self.raises = raises
        self.calls = 0

    @property
    def wait_changes(self) -> Any:
        return self

    def remote(self, since: int, timeout_s: float, follower: str) -> Any:  # noqa: ARG002
        self.calls += 1
        return self._answer(self.calls)

    async def _answer(self, call: int) -> SecurityFeed:
        if call > 1 and self.raises:
            raise RayActorError()
        if call > 1:
            await asyncio.Event().wait()
        return SecurityFeed(version=1, jwks=Jwks(keys=[]), revoked={})


def test_while_the_security_actor_is_unreachable_the_last_view_stands() -> None:
    """The SecurityGateway's host is gone: nobody can revoke, tokens keep verifying."""

    async def scenario() -> None:
        clock, actor = FakeClock(), LostActor(raises=True)
        follower = _SecurityFollower(
            actor, TokenVerifier("aisys", "aisys", 5), 5.0, "core/Core/r1", clock
        )
        follower.start()
        assert await follower.wait_synced(1)
        await _until(lambda: actor.calls >= 2)
        clock.now += 60.0
        follower.require_fresh()  # no RevocationStale: the authority is gone, not lagging
        assert follower.unreachable_since is not None
        await follower.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize(("state", "stands"), [("RESTARTING", True), ("ALIVE", False)])
def test_a_hanging_feed_is_judged_by_the_actors_state_in_the_gcs(state: str, stands: bool) -> None:
    """RESTARTING (its host is gone): the last view stands. ALIVE but silent: fail closed."""

    async def scenario() -> None:
        clock, actor = FakeClock(), LostActor(raises=False)
        asked: list[str] = []

        def actor_state() -> str:
            asked.append(state)
            return state

        follower = _SecurityFollower(
            actor, TokenVerifier("aisys", "aisys", 5), 0.2, "core/Core/r1", clock, actor_state
        )
        follower.start()
        assert await follower.wait_synced(1)
        clock.now += 1.0  # the view is 1 s old: over the 0.2 s limit
        for _ in range(200):
            if asked:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.01)
        assert asked, "the watch never asked the GCS"
        if stands:
            follower.require_fresh()
        else:
            with pytest.raises(RevocationStale):
                follower.require_fresh()
        await follower.stop()

    asyncio.run(scenario())
