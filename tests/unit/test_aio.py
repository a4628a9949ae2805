"""cancel_and_wait: every task is cancelled and awaited, a failed one is logged, not raised."""

from __future__ import annotations

import asyncio
import logging

import pytest

from cluster.base.aio import cancel_and_wait


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
