"""One HTTP transport for every SDK call: bearer token, one retry after a 401, error mapping."""

from __future__ import annotations

from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from aisys_sdk._tokens import Clock, TokenSource
from aisys_sdk.config import ClientConfig
from aisys_sdk.errors import Timeout, TransportError, error_from_response
from aisys_sdk.models import TokenPair

__all__ = ["Api"]

M = TypeVar("M")
Params = dict[str, str | int | float | bool]
_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


class Api:
    """The aisys HTTP API as the SDK uses it.

    Args:
        config: where and who.
        clock: monotonic seconds, for token expiry.
        transport: an httpx transport to send through (a proxy, a Unix socket); None: TCP.
    """

    def __init__(
        self,
        config: ClientConfig,
        clock: Clock,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self._http = httpx.AsyncClient(
            base_url=config.url,
            timeout=config.timeout_s,
            verify=config.verify(),
            transport=transport,
            headers={"User-Agent": "aisys-sdk/1"},
        )
        self.tokens = TokenSource(self._grant, config, clock)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(
        self,
        method: str,
        path: str,
        answer: type[M] | Any,
        *,
        body: BaseModel | dict[str, Any] | None = None,
        params: Params | None = None,
        extra_timeout_s: float = 0.0,
    ) -> M:
        """Send one authenticated request; parse the answer as ``answer`` (None: no body).

        A 401 renews the token and sends once more; any other error status raises its
        :class:`~aisys_sdk.errors.ApiError`.

        Args:
            extra_timeout_s: added to the read timeout (a route that waits on purpose).
        """
        payload = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
        timeout = httpx.Timeout(self.config.timeout_s, read=self.config.timeout_s + extra_timeout_s)
        for attempt in (1, 2):
            token = await self.tokens.access_token()
            headers = {"Authorization": f"Bearer {token}"}
            response = await self._send(
                method, path, json=payload, params=params, headers=headers, timeout=timeout
            )
            if response.status_code == 401 and attempt == 1:
                await self.tokens.rejected(token)
                continue
            break
        if response.is_error:
            raise error_from_response(response)
        if answer is None:
            return None  # type: ignore[return-value]
        adapter = _ADAPTERS.get(answer)
        if adapter is None:
            adapter = _ADAPTERS[answer] = TypeAdapter(answer)
        parsed: M = adapter.validate_json(response.content)
        return parsed

    async def _grant(self, path: str, body: dict[str, Any]) -> TokenPair:
        response = await self._send("POST", path, json=body)
        if response.is_error:
            raise error_from_response(response)
        return TokenPair.model_validate_json(response.content)

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise Timeout(method, f"{self.config.url}{path}", f"timed out ({exc!r})") from exc
        except httpx.TransportError as exc:
            raise TransportError(method, f"{self.config.url}{path}", repr(exc)) from exc
