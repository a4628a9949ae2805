"""Token enforcement shared by every service: verify locally, follow revocations and keys.

Each replica keeps a :class:`TokenVerifier` fed by the security actor's change feed (public
keys and revoked token ids), so checking a token costs no Ray call and a revocation reaches
every service within a second. Routes declare what they need::

    @api.post("/agents", dependencies=[require(Scope.REGISTRY_WRITE)])

Every app calls :func:`auth_first` right after creating its FastAPI object, so each route that
declares a scope checks the token *before* FastAPI reads its body, query or path parameters: a
request without a valid token gets 401 (a valid one without the scope 403), never a 422 about
a body it had no right to send. Routes that declare no scope (the token grants, refresh,
revoke, the JWKS) stay open. :func:`install_auth` refuses to start a replica whose app forgot.

A replica whose revocation view was last confirmed longer ago than
``security.revocation_max_age_s`` rejects every token (503) until its feed catches up.

No ``from __future__ import annotations``: FastAPI reads the dependency's annotations at runtime.
"""

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, Protocol

from fastapi import Depends, FastAPI, Request, params
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_flat_params
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict
from ray import serve
from ray._private import state as ray_state
from starlette.responses import Response
from starlette.routing import BaseRoute

from actors.follower import FeedFollower
from actors.security.actor import get_or_create_security
from actors.security.client import SecurityClient
from actors.security.models import Claims, Scope, SecurityFeed
from actors.security.tokens import TokenVerifier
from cluster.base.aio import cancel_and_wait
from cluster.base.errors import (
    ClusterError,
    ConfigError,
    PermissionDenied,
    RevocationStale,
    TokenRejected,
    ValidationFailed,
)
from cluster.base.settings import SecuritySettings

__all__ = [
    "AuthArgs",
    "AuthFirstRoute",
    "Authenticator",
    "TokenAuthority",
    "api_routes",
    "auth_first",
    "declared_scopes",
    "install_auth",
    "query_names",
    "require",
]

logger = logging.getLogger(__name__)

_STATE_KEY = "aisys_authenticator"
_SCOPE_ATTR = "aisys_scope"
_CLAIMS_KEY = "aisys.claims"  # the ASGI scope's entry for claims checked before the route


class AuthArgs(BaseModel):
    """What a replica needs to verify tokens (part of every application's args)."""

    model_config = ConfigDict(extra="forbid")

    settings: SecuritySettings
    data_dir: str
    host_tag: str


def _follower_name() -> str:
    """``app/deployment/replica`` inside a Serve replica, else host and pid; plus a nonce."""
    try:
        context = serve.get_replica_context()
        where = f"{context.app_name}/{context.deployment}/{context.replica_id.unique_id}"
    except Exception:  # noqa: BLE001 (any failure: not in a replica)
        where = f"{socket.gethostname()}:{os.getpid()}"
    return f"{where}#{secrets.token_hex(3)}"


class _SecurityFollower(FeedFollower[SecurityFeed]):
    """Follows the security feed and tells the actor, with each poll, what it has applied."""

    def __init__(
        self,
        actor: Any,
        verifier: TokenVerifier,
        max_age_s: float,
        name: str,
        clock: Callable[[], float] = time.monotonic,
        actor_state: Callable[[], str | None] | None = None,
    ) -> None:
        # Polls return at least every max_age_s / 4, so an idle feed stays well within age.
        super().__init__(actor, poll_timeout_s=max_age_s / 4, clock=clock)
        self._verifier = verifier
        self._version = 0
        self.max_age_s = max_age_s
        self.name = name
        self.feed: SecurityFeed | None = None
        self._actor_state = actor_state or self._state_from_gcs
        self._watch: asyncio.Task[None] | None = None

    def _state_from_gcs(self) -> str | None:
        """The security actor's state in the GCS (ALIVE, RESTARTING, DEAD, ...)."""
        info = ray_state.actors(actor_id=self._actor._actor_id.hex())
        return str(info["State"]) if info else None

    def start(self) -> None:
        super().start()
        self._watch = asyncio.get_running_loop().create_task(self._watch_reachability())

    async def stop(self) -> None:
        await cancel_and_wait([self._watch])
        await super().stop()

    async def _watch_reachability(self) -> None:
        """While the view is too old, ask the GCS whether the actor is there at all.

        A call to an actor whose node died waits, queued, until Ray restarts the actor (never,
        while its host's tag is gone) instead of failing, so the follow loop alone cannot tell
        a lost SecurityGateway host from a stalled feed. The GCS can: the actor is RESTARTING
        (or DEAD) rather than ALIVE.
        """
        while True:
            await asyncio.sleep(self.max_age_s / 4)
            age = self.age()
            if age is None or age <= self.max_age_s or self.unreachable_since is not None:
                continue
            try:
                state = await asyncio.to_thread(self._actor_state)
            except Exception:  # noqa: BLE001 (GCS unreachable too: nothing to learn; fail closed)
                logger.warning("could not read the security actor's state", exc_info=True)
                continue
            if state is not None and state != "ALIVE" and self.age() is not None:
                logger.warning("security actor is %s: keeping the last revocation view", state)
                self.unreachable_since = self._clock()

    @property
    def version(self) -> int:
        return self._version

    def apply(self, feed: SecurityFeed) -> None:
        self._verifier.update(feed.jwks.keys, feed.revoked)
        self._version = feed.version
        self.feed = feed

    def poll(self, since: int, timeout_s: float) -> Awaitable[SecurityFeed]:
        result: Awaitable[SecurityFeed] = self._actor.wait_changes.remote(
            since, timeout_s, self.name
        )
        return result

    def require_fresh(self) -> None:
        """Fail closed: raise unless the revocation view was confirmed within the age limit.

        One exception: while Ray reports the security actor unreachable (the SecurityGateway's
        host is gone, or the actor is restarting), nobody can revoke anything through it, so
        the last view it gave stands and tokens keep verifying on the hosts still up. A feed
        that merely stops answering (a stalled or overloaded actor) fails closed.

        Raises:
            RevocationStale: the view is older than ``max_age_s`` and the actor is reachable.
        """
        age = self.age()
        if age is not None and age > self.max_age_s and self.unreachable_since is None:
            raise RevocationStale(age, self.max_age_s)


class TokenAuthority(Protocol):
    """What :func:`require` and :func:`install_auth` need of an :class:`Authenticator`."""

    open_reads: bool

    async def authenticate(self, authorization: str | None) -> Claims:
        """The claims of the ``Authorization`` header's bearer token."""


class Authenticator:
    """Verifies bearer tokens for one replica."""

    def __init__(self, args: AuthArgs) -> None:
        handle = get_or_create_security(args.settings, Path(args.data_dir), args.host_tag)
        self.open_reads = args.settings.open_reads
        self._verifier = TokenVerifier(
            args.settings.issuer, args.settings.audience, args.settings.leeway_s
        )
        self.follower = _SecurityFollower(
            handle, self._verifier, args.settings.revocation_max_age_s, _follower_name()
        )
        #: The security actor's typed calls; a revocation waits for this replica's follower.
        self.security = SecurityClient(handle, self.follower)
        self.follower.start()

    async def authenticate(self, authorization: str | None) -> Claims:
        """Return the claims of the ``Authorization: Bearer`` token.

        Raises:
            TokenRejected: no bearer token, or it does not verify.
            ClusterError: the security state has not been loaded yet.
            RevocationStale: this replica's revocation view is too old to trust.
        """
        if not authorization:
            raise TokenRejected("no bearer token (send 'Authorization: Bearer <token>')")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenRejected("the Authorization header must be 'Bearer <token>'")
        if not await self.follower.wait_synced():
            raise ClusterError("security: signing keys not loaded yet; retry shortly")
        self.follower.require_fresh()
        return self._verifier.verify(token.strip())


async def _claims_for(
    authority: TokenAuthority, authorization: str | None, scopes: list[Scope]
) -> Claims | None:
    """401/403 unless the token allows every scope; None when only open reads are asked."""
    reads = (Scope.READ, Scope.METRICS_READ)
    needed = [s for s in scopes if not (s in reads and authority.open_reads)]
    if not needed:
        return None
    claims = await authority.authenticate(authorization)
    for scope in needed:
        if not claims.allows(scope):
            raise PermissionDenied(claims.sub, scope.value)
    return claims


def declared_scopes(dependant: Dependant) -> list[Scope]:
    """The scopes a route's :func:`require` dependencies ask for (at any depth)."""
    found: list[Scope] = []
    pending = list(dependant.dependencies)
    while pending:
        current = pending.pop()
        scope = getattr(current.call, _SCOPE_ATTR, None)
        if isinstance(scope, Scope):
            found.append(scope)
        pending.extend(current.dependencies)
    return sorted(set(found))


class AuthFirstRoute(APIRoute):
    """A route that checks the token (401/403), then its query's names, before it is parsed.

    FastAPI reads and parses the body before it runs any dependency, so a route whose scope is
    checked by a dependency alone answers 422 to an anonymous malformed request. This route's
    handler runs the :func:`require` checks first; the dependency then reuses the claims.
    Then a query parameter the route does not take is refused (422, naming the ones it does):
    FastAPI ignores unknown names, so ``?type=`` for ``?error_type=`` would quietly answer
    every event.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        scopes = declared_scopes(self.dependant)
        known = query_names(self.dependant)

        async def checked_first(request: Request) -> Response:
            if scopes:
                authority: TokenAuthority = getattr(request.app.state, _STATE_KEY)
                request.scope[_CLAIMS_KEY] = await _claims_for(
                    authority, request.headers.get("authorization"), scopes
                )
            unknown = sorted(set(request.query_params) - known)
            if unknown:
                takes = ", ".join(sorted(known)) or "none"
                raise ValidationFailed(
                    f"unknown query parameter(s) {', '.join(unknown)}; {self.path} takes: {takes}"
                )
            return await handler(request)

        return checked_first


def query_names(dependant: Dependant) -> set[str]:
    """The query parameter names a route takes, its dependencies' included."""
    names = {
        field.alias
        for field in get_flat_params(dependant)
        if isinstance(field.field_info, params.Query)
    }
    # A class-based Serve ingress declares its routes on methods; until Serve binds them,
    # their ``self`` reads as a query parameter.
    names.discard("self")
    return names


def auth_first(api: FastAPI) -> None:
    """Make the routes ``api`` declares from now on :class:`AuthFirstRoute` s.

    Call it right after creating the app, before any route is declared.
    """
    api.router.route_class = AuthFirstRoute


def api_routes(routes: list[BaseRoute]) -> Iterator[APIRoute]:
    """Every :class:`APIRoute` of ``routes``, those of included routers too."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None) or getattr(route, "router", None)
        if inner is not None and inner is not route:
            yield from api_routes(list(getattr(inner, "routes", [])))


def install_auth(api: FastAPI, authenticator: TokenAuthority) -> None:
    """Make ``authenticator`` the one :func:`require` uses for ``api``'s routes.

    Raises:
        ConfigError: a route declares a scope but is not an :class:`AuthFirstRoute` (its app
            did not call :func:`auth_first` before declaring it).
    """
    setattr(api.state, _STATE_KEY, authenticator)
    late = sorted(
        route.path
        for route in api_routes(api.routes)
        if not isinstance(route, AuthFirstRoute) and declared_scopes(route.dependant)
    )
    if late:
        raise ConfigError(
            f"routes {late} check their token after parsing the request; call "
            "deployments.auth.auth_first(api) right after creating the app"
        )


def require(scope: Scope) -> Any:
    """A FastAPI dependency: 401 without a valid token, 403 without ``scope``."""

    async def check(request: Request) -> Claims | None:
        if _CLAIMS_KEY in request.scope:  # checked by install_auth's wrapper already
            claims: Claims | None = request.scope[_CLAIMS_KEY]
            if claims is not None and not claims.allows(scope):
                raise PermissionDenied(claims.sub, scope.value)
            return claims
        authority: TokenAuthority = getattr(request.app.state, _STATE_KEY)
        return await _claims_for(authority, request.headers.get("authorization"), [scope])

    setattr(check, _SCOPE_ATTR, scope)
    return Depends(check)
