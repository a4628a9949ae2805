"""Client-credentials tokens for an agent identity, renewed before they expire and on a 401."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aisys_sdk.config import ClientConfig
from aisys_sdk.errors import Unauthorized
from aisys_sdk.models import TokenPair

__all__ = ["Clock", "TokenSource"]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
#: Posts a JSON body to a /security route (without a bearer token) and returns the answer.
Post = Callable[[str, dict[str, Any]], Awaitable[TokenPair]]


class TokenSource:
    """Holds the agent's access token and renews it.

    A token is renewed ``refresh_margin_s`` before it expires (at most half its lifetime
    before), and at once when a route answered 401 to it. Renewal trades the refresh token
    (``POST /security/refresh``); when the server refuses it (expired, revoked), it logs in
    again with the client credentials. One lock serialises renewals: refresh tokens are single
    use, and the server revokes the whole login when one is presented twice.

    Args:
        post: sends a grant to the security routes.
        config: the identity and the margin.
        clock: monotonic seconds (a test may advance it to expire the token).
    """

    def __init__(self, post: Post, config: ClientConfig, clock: Clock) -> None:
        self._post = post
        self._config = config
        self._clock = clock
        self._lock = asyncio.Lock()
        self._pair: TokenPair | None = None
        self._renew_at = 0.0
        self.renewals = 0
        """How many times a token was obtained (the first login included)."""

    @property
    def pair(self) -> TokenPair | None:
        """The current token pair (None before the first call)."""
        return self._pair

    async def access_token(self) -> str:
        """A valid access token, renewed first when it is about to expire."""
        async with self._lock:
            if self._pair is None or self._clock() >= self._renew_at:
                await self._renew()
            assert self._pair is not None
            return self._pair.access_token

    async def rejected(self, token: str) -> None:
        """A route answered 401 to ``token``: renew unless another call did already."""
        async with self._lock:
            if self._pair is not None and self._pair.access_token == token:
                self._renew_at = 0.0

    async def _renew(self) -> None:
        started = self._clock()
        pair: TokenPair | None = None
        if self._pair is not None:
            try:
                pair = await self._post(
                    "/security/refresh", {"refresh_token": self._pair.refresh_token}
                )
            except Unauthorized as exc:
                logger.info("refresh token refused (%s); logging in again", exc.detail)
        if pair is None:
            grant: dict[str, Any] = {
                "grant_type": "client_credentials",
                "client_id": self._config.client_id,
                "client_secret": self._config.client_secret.get_secret_value(),
            }
            if self._config.scope is not None:
                grant["scope"] = self._config.scope
            pair = await self._post("/security/token", grant)
        if pair.note:
            logger.warning("token for %s: %s", self._config.client_id, pair.note)
        margin = min(self._config.refresh_margin_s, pair.expires_in / 2)
        self._pair = pair
        self._renew_at = started + pair.expires_in - margin
        self.renewals += 1
