"""A VRAM lease held in an ``async with`` block: granted (or waited for), renewed, released."""

from __future__ import annotations

import asyncio
import logging
import time
from types import TracebackType

from aisys_sdk._api import Api
from aisys_sdk.errors import (
    LeaseLost,
    NotFound,
    RateLimited,
    SdkError,
    ServerError,
    TransportError,
    WaitTimedOut,
)
from aisys_sdk.models import EndedLease, LeaseGrant, LeaseRequest, LeaseStatus, QueuedLease

__all__ = ["Lease"]

logger = logging.getLogger(__name__)

_POLL_S = 0.25


class Lease:
    """``async with client.lease(LeaseRequest(...)) as lease:`` holds VRAM for the block.

    On entry the lease is requested; a queued request is waited for up to ``wait_s`` (then
    withdrawn, :class:`~aisys_sdk.errors.WaitTimedOut`). While the block runs the lease is
    renewed every ``renew_every_s`` (a third of its TTL). On exit, normal or by an exception,
    it is released. If the server ends the lease while it is held (it expired, an admin
    released it), ``lost`` says so and :meth:`check` raises :class:`~aisys_sdk.errors.LeaseLost`.
    """

    def __init__(
        self,
        api: Api,
        request: LeaseRequest,
        wait_s: float = 60.0,
        renew_every_s: float | None = None,
    ) -> None:
        self._api = api
        self.request = request
        self._wait_s = wait_s
        self._renew_every_s = renew_every_s
        self._grant: LeaseGrant | None = None
        self._task: asyncio.Task[None] | None = None
        self.renewals = 0
        self.lost: LeaseLost | None = None

    @property
    def grant(self) -> LeaseGrant:
        """Where the VRAM is (GPU, host, Ray resources); only inside the block."""
        if self._grant is None:
            raise RuntimeError("the lease is not held: use it inside `async with`")
        return self._grant

    @property
    def lease_id(self) -> str:
        return self.grant.lease_id

    def check(self) -> None:
        """Raise :class:`~aisys_sdk.errors.LeaseLost` if the server ended the lease."""
        if self.lost is not None:
            raise self.lost

    async def touch(self) -> LeaseGrant:
        """Renew now and mark the leased model as used (the VRAM optimizer unloads idle ones)."""
        return await self._renew(used=True)

    async def __aenter__(self) -> Lease:
        status: LeaseStatus = await self._api.call(
            "POST", "/resources/leases", LeaseStatus, body=self.request
        )
        try:
            self._grant = await self._until_granted(status)
        except BaseException:
            await self._release(status.lease_id)
            raise
        renew_every = self._renew_every_s or self._grant.ttl_s / 3
        self._task = asyncio.get_running_loop().create_task(
            self._renew_forever(renew_every), name=f"aisys-lease-{self._grant.lease_id}"
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        grant, self._grant = self._grant, None
        if grant is None:
            return
        try:
            await self._release(grant.lease_id)
        except SdkError:
            if exc is None:
                raise
            # The block's own exception matters more; the lease then expires by its TTL.
            logger.exception("release of lease %s failed", grant.lease_id)

    async def _until_granted(self, status: LeaseStatus) -> LeaseGrant:
        deadline = time.monotonic() + self._wait_s
        while isinstance(status, QueuedLease):
            if time.monotonic() >= deadline:
                raise WaitTimedOut(f"lease {status.lease_id} (queued)", self._wait_s)
            await asyncio.sleep(_POLL_S)
            status = await self._get(status.lease_id)
        if isinstance(status, EndedLease):
            raise LeaseLost(
                status.lease_id, f"{status.state} before it was granted: {status.reason}"
            )
        return status

    async def _get(self, lease_id: str) -> LeaseStatus:
        status: LeaseStatus = await self._api.call(
            "GET", f"/resources/leases/{lease_id}", LeaseStatus
        )
        return status

    async def _release(self, lease_id: str) -> None:
        try:
            await self._api.call("DELETE", f"/resources/leases/{lease_id}", LeaseStatus)
        except NotFound:
            pass  # already over and forgotten: nothing left to release

    async def _renew(self, used: bool = False) -> LeaseGrant:
        grant = self.grant
        status: LeaseStatus = await self._api.call(
            "PUT",
            f"/resources/leases/{grant.lease_id}/heartbeat",
            LeaseStatus,
            body={"used": used},
        )
        if not isinstance(status, LeaseGrant):
            reason = status.reason if isinstance(status, EndedLease) else status.state
            self.lost = LeaseLost(grant.lease_id, f"ended on the server: {reason}")
            raise self.lost
        self._grant = status
        self.renewals += 1
        return status

    async def _renew_forever(self, every_s: float) -> None:
        delay = every_s
        while True:
            await asyncio.sleep(delay)
            try:
                await self._renew()
                delay = every_s
            except (TransportError, ServerError, RateLimited) as exc:
                delay = max(0.1, every_s / 4)
                logger.warning("renewing lease %s failed (%s); retrying", self.lease_id, exc)
            except LeaseLost:
                logger.error("%s", self.lost)
                return
            except NotFound as exc:
                self.lost = LeaseLost(self.lease_id, f"no longer known to the server ({exc})")
                logger.error("%s", self.lost)
                return
            except SdkError as exc:  # 403 and the like: renewing cannot succeed
                self.lost = LeaseLost(self.lease_id, f"cannot be renewed: {exc}")
                logger.error("%s", self.lost)
                return
