"""FeedFollower's poll pacing: a burst of changes is fetched in fewer, larger feeds, and an
idle follower still sees a change as soon as it is made."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable

from actors.registry.follower import RegistryFollower
from actors.registry.models import Change, ChangeFeed


class _Busy:
    """``wait_changes.remote``: a registry under a burst, always one change ahead of the
    caller, so every poll returns at once."""

    def __init__(self) -> None:
        self.polls = 0

    def remote(self, since: int, timeout_s: float) -> Awaitable[ChangeFeed]:  # noqa: ARG002
        self.polls += 1

        async def answer() -> ChangeFeed:
            await asyncio.sleep(0)  # a Ray call always yields to the loop
            change = Change(version=since + 1, op="delete", agent_id="a", record=None)
            return ChangeFeed(version=since + 1, changes=[change])

        return answer()


class _Handle:
    def __init__(self, wait_changes: object) -> None:
        self.wait_changes = wait_changes


def _polls_in(seconds: float, min_interval_s: float) -> int:
    feed = _Busy()
    follower = RegistryFollower(_Handle(feed), poll_timeout_s=1.0, min_interval_s=min_interval_s)

    async def run() -> None:
        follower.start()
        await asyncio.sleep(seconds)
        await follower.stop()

    asyncio.run(run())
    assert feed.polls - follower.version <= 1  # every feed applied, but one cut short by stop
    return feed.polls


def test_polls_that_come_back_at_once_are_paced_by_the_minimum_interval() -> None:
    assert _polls_in(0.3, min_interval_s=0.05) <= 8  # about 0.3 / 0.05, not hundreds
    assert _polls_in(0.3, min_interval_s=0.0) > 50  # unpaced, as fast as the loop goes


def test_a_change_after_a_quiet_spell_is_seen_without_waiting_for_the_interval() -> None:
    class _Quiet:
        """Holds each poll until a change is published, as the actor's long-poll does."""

        def __init__(self) -> None:
            self.version = 0
            self.changed = asyncio.Event()

        def remote(self, since: int, timeout_s: float) -> Awaitable[ChangeFeed]:
            async def answer() -> ChangeFeed:
                if self.version == since:
                    with contextlib.suppress(TimeoutError):  # an idle poll: answer unchanged
                        await asyncio.wait_for(self.changed.wait(), timeout_s)
                change = Change(version=self.version, op="delete", agent_id="a", record=None)
                return ChangeFeed(version=self.version, changes=[change])

            return answer()

    feed = _Quiet()
    follower = RegistryFollower(_Handle(feed), poll_timeout_s=5.0, min_interval_s=1.0)

    async def run() -> float:
        follower.start()
        await follower.wait_synced(5.0)
        await asyncio.sleep(1.2)  # longer than the interval: the next poll is already waiting
        published = time.monotonic()
        feed.version = 1
        feed.changed.set()
        assert await follower.wait_for(1, timeout_s=5.0)
        seen = time.monotonic() - published
        await follower.stop()
        return seen

    assert asyncio.run(run()) < 0.5
