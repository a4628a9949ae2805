"""The typed actor clients without Ray: a write is answered once the local view has it, and a
view that does not catch up is an error (registry) or a pending replica (security)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import pytest

from actors.registry.client import RegistryClient
from actors.registry.follower import RegistryFollower
from actors.registry.models import Change, ChangeFeed, Registration
from actors.security.client import SecurityClient
from actors.security.followers import Propagation
from cluster.base.errors import QuotaExceeded, ViewLagging


class _Method:
    """``handle.<method>.remote(...)``: a coroutine answering ``result``; calls are recorded."""

    def __init__(self, result: object) -> None:
        self.result = result
        self.calls: list[tuple[Any, ...]] = []

    def remote(self, *args: Any) -> Awaitable[object]:
        self.calls.append(args)

        async def answer() -> object:
            return self.result

        return answer()


class _Handle:
    def __init__(self, **methods: object) -> None:
        for name, result in methods.items():
            setattr(self, name, _Method(result))


def _deletion(version: int) -> Change:
    return Change(version=version, op="delete", agent_id="a", record=None)


class _Feed:
    """``wait_changes.remote``: the registry's feed, at version 0 until ``publish``."""

    def __init__(self) -> None:
        self.feed = ChangeFeed(version=0)

    def publish(self, change: Change) -> None:
        self.feed = ChangeFeed(version=change.version, changes=[change])

    def remote(self, since: int, timeout_s: float) -> Awaitable[ChangeFeed]:
        async def answer() -> ChangeFeed:
            if self.feed.version == since:  # a long-poll with nothing new: a short wait
                await asyncio.sleep(min(timeout_s, 0.01))
            return self.feed

        return answer()


def test_a_registry_write_is_answered_once_the_local_view_has_it() -> None:
    feed = _Feed()
    handle = _Handle(deregister=_deletion(1))
    handle.wait_changes = feed  # type: ignore[attr-defined]
    follower = RegistryFollower(handle, poll_timeout_s=0.05)
    registry = RegistryClient(handle, follower, write_timeout_s=5.0)

    async def scenario() -> Change:
        follower.start()
        try:
            waiting = asyncio.create_task(registry.visible(registry.deregister("a")))
            await asyncio.sleep(0.1)
            assert not waiting.done()  # the actor answered, the local view is still at 0
            feed.publish(_deletion(1))
            return await asyncio.wait_for(waiting, 5.0)
        finally:
            await follower.stop()

    assert asyncio.run(scenario()).version == 1
    assert follower.version == 1
    assert handle.deregister.calls == [("a",)]  # type: ignore[attr-defined]


def test_a_registry_view_that_lags_is_an_error_naming_both_versions() -> None:
    registry = RegistryClient(_Handle(deregister=_deletion(7)), RegistryFollower(None), 0.05)
    with pytest.raises(ViewLagging) as caught:
        asyncio.run(registry.visible(registry.deregister("a")))
    assert (caught.value.version, caught.value.seen) == (7, 0)
    assert caught.value.http_status == 503
    assert "version 7" in str(caught.value) and "still at version 0" in str(caught.value)


def test_without_a_follower_a_registry_write_returns_at_once() -> None:
    registry = RegistryClient(_Handle(deregister=_deletion(3)))
    assert asyncio.run(registry.visible(registry.deregister("a"))).version == 3


def test_batched_registrations_answer_each_caller_with_its_own_change_or_refusal() -> None:
    accepted = Change(version=4, op="upsert", agent_id="b", record=None)
    refused = QuotaExceeded("agents are registered through the legacy ports", 1, "AISYS_X")
    answers: dict[str, Change | QuotaExceeded] = {"a": refused, "c": refused, "b": accepted}
    calls: list[list[tuple[str, str | None]]] = []

    class _RegisterMany:
        def remote(self, items: list[tuple[Registration, str | None]]) -> Awaitable[object]:
            calls.append([(r.agent_id, source) for r, source in items])

            async def answer() -> object:
                return [answers[r.agent_id] for r, _ in items]

            return answer()

    handle = _Handle()
    handle.register_many = _RegisterMany()  # type: ignore[attr-defined]
    registry = RegistryClient(handle)

    async def scenario() -> list[Change | BaseException]:
        # The first registration goes at once; the two sent meanwhile go in one call.
        first = asyncio.create_task(registry.register_batched(_registration("a"), "10.0.0.9"))
        for _ in range(3):
            await asyncio.sleep(0)
        rest = [registry.register_batched(_registration(i)) for i in ("c", "b")]
        return await asyncio.gather(first, *rest, return_exceptions=True)

    first, c, b = asyncio.run(scenario())
    assert first is refused and c is refused
    assert b == accepted
    assert calls == [[("a", "10.0.0.9")], [("c", None), ("b", None)]]


def _registration(agent_id: str) -> Registration:
    return Registration(agent_id=agent_id, host="127.0.0.1", port=5555)


class _SecurityFeed:
    name = "core/Core/r1"

    def __init__(self, reaches: bool) -> None:
        self.reaches = reaches
        self.version = 0

    async def wait_for(self, version: int, timeout_s: float = 5.0) -> bool:  # noqa: ARG002
        return self.reaches


@pytest.mark.parametrize("reaches", [True, False])
def test_a_revocation_names_this_replica_pending_while_its_view_lags(reaches: bool) -> None:
    spread = Propagation(applied=["core/Core/r1", "errors/ErrorBus/r2"], pending=["gone/X/c"])
    security = SecurityClient(
        _Handle(revoke=("access token revoked", 9, spread)), _SecurityFeed(reaches)
    )
    what, version, seen = asyncio.run(security.revoke_visible("token"))
    assert (what, version) == ("access token revoked", 9)
    if reaches:
        assert seen == spread
    else:
        assert seen.applied == ["errors/ErrorBus/r2"]
        assert seen.pending == ["core/Core/r1", "gone/X/c"]
