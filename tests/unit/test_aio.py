"""cancel_and_wait: every task is cancelled and awaited, a failed one is logged, not raised.
Batcher: concurrent submissions go together, each answered with its own result or error."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import pytest

from cluster.base.aio import Batcher, cancel_and_wait


async def _forever() -> None:
    await asyncio.Event().wait()


async def _fail() -> None:
    raise RuntimeError("boom")


def test_every_task_ends_even_when_one_had_failed(caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> list[asyncio.Task[None]]:
        tasks = [asyncio.create_task(_forever()) for _ in range(3)]
        tasks.append(asyncio.create_task(_fail()))
        await asyncio.sleep(0)
        await cancel_and_wait([tasks[0], tasks[3], None, tasks[1], tasks[2]])
        return tasks

    with caplog.at_level(logging.WARNING, logger="cluster.base.aio"):
        tasks = asyncio.run(run())
    assert all(task.cancelled() for task in tasks[:3])
    assert tasks[3].done() and not tasks[3].cancelled()
    assert "had failed" in caplog.text and "boom" in caplog.text


def test_nothing_to_cancel_returns_at_once() -> None:
    asyncio.run(cancel_and_wait([None]))
    asyncio.run(cancel_and_wait([]))


class _Sender:
    """A batch ``send`` that holds each call until released; answers ``item * 10``, and an
    item below zero with its own error."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.fail_next: Exception | None = None

    async def __call__(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(items)
        await self.release.wait()
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        return [ValueError(f"item {i}") if i < 0 else i * 10 for i in items]


async def _let_tasks_run() -> None:
    for _ in range(3):  # a submitter, then the sending task it started
        await asyncio.sleep(0)


def test_the_first_submission_goes_alone_and_those_meanwhile_go_together() -> None:
    async def run() -> tuple[list[int], list[list[int]]]:
        sender = _Sender()
        batcher: Batcher[int, int] = Batcher(sender, max_batch=3)
        first = asyncio.create_task(batcher.submit(1))
        await _let_tasks_run()
        assert sender.batches == [[1]]  # sent at once, no timer
        rest = [asyncio.create_task(batcher.submit(i)) for i in range(2, 7)]
        await _let_tasks_run()
        assert batcher.waiting == 5
        sender.release.set()
        return await asyncio.gather(first, *rest), sender.batches

    results, batches = asyncio.run(run())
    assert results == [10, 20, 30, 40, 50, 60]
    assert batches == [[1], [2, 3, 4], [5, 6]]  # in order, at most max_batch each


def test_an_item_refused_alone_fails_only_its_submitter() -> None:
    async def run() -> list[int | BaseException]:
        sender = _Sender()
        sender.release.set()
        batcher: Batcher[int, int] = Batcher(sender)
        submitted = (batcher.submit(i) for i in (1, -2, 3))
        return await asyncio.gather(*submitted, return_exceptions=True)

    ok, refused, also_ok = asyncio.run(run())
    assert (ok, also_ok) == (10, 30)
    assert isinstance(refused, ValueError) and str(refused) == "item -2"


def test_a_failed_send_fails_its_batch_and_the_next_batch_is_sent() -> None:
    async def run() -> tuple[list[int | BaseException], int]:
        sender = _Sender()
        sender.fail_next = ConnectionError("actor gone")
        batcher: Batcher[int, int] = Batcher(sender)
        failed = [asyncio.create_task(batcher.submit(i)) for i in (1, 2)]
        await _let_tasks_run()
        sender.release.set()
        outcomes = await asyncio.gather(*failed, return_exceptions=True)
        return outcomes, await batcher.submit(4)

    outcomes, later = asyncio.run(run())
    assert all(isinstance(o, ConnectionError) for o in outcomes)
    assert later == 40


def test_a_send_that_answers_the_wrong_number_of_items_is_an_error() -> None:
    async def short(items: list[int]) -> Sequence[int | BaseException]:
        return items[1:]

    batcher: Batcher[int, int] = Batcher(short)
    with pytest.raises(RuntimeError, match="a batch of 1 got 0 results"):
        asyncio.run(batcher.submit(1))
    with pytest.raises(ValueError, match="max_batch must be at least 1"):
        Batcher(short, max_batch=0)


def test_sends_are_paced_by_the_interval_and_a_submission_after_a_quiet_spell_goes_at_once() -> (
    None
):
    async def run() -> tuple[list[list[int]], float, float]:
        batches: list[list[int]] = []

        async def send(items: list[int]) -> list[int | BaseException]:
            batches.append(items)
            return list(items)

        batcher: Batcher[int, int] = Batcher(send, min_interval_s=0.2)
        assert await batcher.submit(1) == 1
        started = time.monotonic()
        assert await asyncio.gather(*(batcher.submit(i) for i in range(2, 6))) == [2, 3, 4, 5]
        held = time.monotonic() - started
        await asyncio.sleep(0.25)
        started = time.monotonic()
        assert await batcher.submit(9) == 9
        return batches, held, time.monotonic() - started

    batches, held, quiet = asyncio.run(run())
    assert batches == [[1], [2, 3, 4, 5], [9]]  # the burst went in one send, after the interval
    assert held >= 0.1
    assert quiet < 0.1
