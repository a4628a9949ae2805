"""RequestCoordinator with an injected sender: order, routing, breakers, interrupts, retention."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from actors.registry.models import AgentRecord, Health
from cluster.base.errors import DispatchFailed, QueueFull, RequestNotFound
from cluster.base.settings import CoordinatorSettings, DispatchRoute
from deployments.core.coordinator import AgentTarget, DeploymentTarget, RequestCoordinator, Target
from deployments.core.journal import RequestJournal
from deployments.core.models import (
    AgentResponse,
    AudioRequest,
    InterruptRequest,
    RequestMetadata,
    RequestState,
    RequestStatus,
    TaskDefinition,
    TextRequest,
)
from deployments.core.trust_link import outcome_of
from tests.unit._resources_helpers import FakeClock


def agent(agent_id: str, health: Health = Health.PASSING, port: int = 5709) -> AgentRecord:
    return AgentRecord(
        agent_id=agent_id,
        agent_type=agent_id,
        host="127.0.0.1",
        port=port,
        health_check_port=None,
        capabilities=["reasoning"],
        tags=[],
        metadata={},
        check="none",
        ttl_s=None,
        deregister_critical_after_s=600,
        health=health,
        health_note="",
        registered_at=0,
        last_seen_at=0,
        critical_since=None,
    )


class Downstream:
    """Records what it was sent; answers, fails or raises as told."""

    def __init__(self) -> None:
        self.sent: list[tuple[Target, TaskDefinition]] = []
        self.fail = False
        self.status = "success"

    async def __call__(self, target: Target, task: TaskDefinition) -> AgentResponse:
        self.sent.append((target, task))
        await asyncio.sleep(0)
        if self.fail:
            raise DispatchFailed("endpoint", "no reply within 0.1s, 1 attempt(s)")
        return AgentResponse(status=self.status, data=task.parameters["request"])


def request_of(task: TaskDefinition) -> dict[str, Any]:
    request = task.parameters["request"]
    assert isinstance(request, dict)
    return request


def run_with(coordinator: RequestCoordinator, body: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        runner = asyncio.create_task(coordinator.run())
        try:
            await body()
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)

    asyncio.run(asyncio.wait_for(main(), 10))


async def until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await asyncio.sleep(0.001)


def settings(**values: object) -> CoordinatorSettings:
    base: dict[str, object] = {"max_in_flight": 1, "queue_max_size": 100}
    base.update(values)
    return CoordinatorSettings.model_validate(base)


def text(urgency: str = "normal", session: str | None = None, data: str = "hi") -> TextRequest:
    return TextRequest(
        data=data,
        session_id=session,
        metadata=RequestMetadata.model_validate({"urgency": urgency}),
    )


def test_requests_leave_in_priority_order_fifo_among_equals() -> None:
    downstream = Downstream()
    finished: list[RequestStatus] = []
    coordinator = RequestCoordinator(
        settings(), lambda _: [agent("cot")], downstream, on_finished=finished.append
    )
    coordinator.interrupt(InterruptRequest(session_id="nobody", pause_s=60))
    urgencies = ["low", "normal", "critical", "high", "normal", "low", "critical"]
    ids = [coordinator.submit(text(u, data=f"{i}")).request_id for i, u in enumerate(urgencies)]

    async def body() -> None:
        await asyncio.sleep(0.01)
        assert downstream.sent == [], "paused by the interrupt"
        coordinator.resume()
        await until(lambda: len(finished) == len(ids))

    run_with(coordinator, body)
    order = [request_of(task)["data"] for _, task in downstream.sent]
    # critical (2 - 3) and high (2 - 1) both clamp to 1, so they keep their arrival order.
    assert order == ["2", "3", "6", "1", "4", "0", "5"]
    statuses = [coordinator.status(i) for i in ids]
    assert all(s.state is RequestState.SUCCEEDED for s in statuses)
    assert statuses[2].dispatch_seq == 0 and statuses[5].dispatch_seq == 6
    result = statuses[0].result
    assert result is not None and isinstance(result.data, dict) and result.data["data"] == "0"


def test_task_definition_has_the_legacy_shape() -> None:
    downstream = Downstream()
    coordinator = RequestCoordinator(settings(), lambda _: [agent("cot")], downstream)
    receipt = coordinator.submit(
        TextRequest(data="hello", user_id="alice", session_id="s1", context={"k": 1})
    )

    run_with(coordinator, lambda: until(lambda: len(downstream.sent) == 1))
    target, task = downstream.sent[0]
    assert target == AgentTarget("cot", "tcp://127.0.0.1:5709")
    wire = task.model_dump(mode="json")
    assert wire["agent_id"] == "RequestCoordinator" and wire["task_type"] == "text_processing"
    assert wire["priority"] == receipt.priority == 2
    assert wire["request_id"] == receipt.request_id
    assert wire["dependencies"] == [] and wire["scheduled_for"] is None
    assert wire["parameters"]["request"]["data"] == "hello"
    assert wire["parameters"]["request"]["context"] == {"k": 1}
    assert isinstance(wire["created_at"], str) and wire["created_at"].endswith("+00:00")


def test_a_request_naming_a_capability_goes_to_its_agents_not_the_types_route() -> None:
    downstream = Downstream()
    asked: list[str] = []

    def resolve(capability: str) -> list[AgentRecord]:
        asked.append(capability)
        return [agent("probe-agent", port=6001)] if capability == "check-probe" else [agent("cot")]

    coordinator = RequestCoordinator(settings(), resolve, downstream)
    coordinator.submit(TextRequest(data="routed", capability="check-probe"))
    coordinator.submit(TextRequest(data="default"))

    run_with(coordinator, lambda: until(lambda: len(downstream.sent) == 2))
    targets = {request_of(task)["data"]: target for target, task in downstream.sent}
    assert targets["routed"] == AgentTarget("probe-agent", "tcp://127.0.0.1:6001")
    assert targets["default"] == AgentTarget("cot", "tcp://127.0.0.1:5709")
    assert set(asked) == {"check-probe", "reasoning"}
    # The hint is the coordinator's: the agent gets the request in its legacy shape.
    assert all("capability" not in request_of(task) for _, task in downstream.sent)


def test_full_queue_refuses_with_429() -> None:
    coordinator = RequestCoordinator(settings(queue_max_size=2), lambda _: [], Downstream())
    coordinator.submit(text())
    coordinator.submit(text())
    with pytest.raises(QueueFull):
        coordinator.submit(text())
    assert coordinator.queue_view().size == 2


def test_no_agent_fails_the_request_with_a_clear_error() -> None:
    finished: list[RequestStatus] = []
    coordinator = RequestCoordinator(
        settings(),
        lambda _: [agent("cot", Health.CRITICAL)],
        Downstream(),
        on_finished=finished.append,
    )
    request_id = coordinator.submit(text()).request_id
    run_with(coordinator, lambda: until(lambda: len(finished) == 1))
    status = coordinator.status(request_id)
    assert status.state is RequestState.FAILED
    assert status.error is not None and status.error["error"] == "NoRoute"
    assert "capability 'reasoning'" in status.error["detail"]


def test_breaker_opens_after_three_failures_then_fails_fast_and_recovers() -> None:
    clock = FakeClock()
    downstream = Downstream()
    downstream.fail = True
    finished: list[RequestStatus] = []
    coordinator = RequestCoordinator(
        settings(breaker_reset_s=30), lambda _: [agent("cot")], downstream, clock, finished.append
    )

    async def body() -> None:
        for i in range(4):
            coordinator.submit(text())
            await until(lambda n=i + 1: len(finished) == n)  # type: ignore[misc]
        assert len(downstream.sent) == 3, "the fourth request never reached the agent"
        assert [s.error["error"] for s in finished] == [  # type: ignore[index]
            "DispatchFailed",
            "DispatchFailed",
            "DispatchFailed",
            "CircuitOpen",
        ]
        assert coordinator.breaker_views()[0].state == "open"
        downstream.fail = False
        clock.advance(30)
        assert coordinator.breaker_views()[0].state == "half_open"
        coordinator.submit(text())
        await until(lambda: len(finished) == 5)
        assert finished[-1].state is RequestState.SUCCEEDED
        assert coordinator.breaker_views()[0].state == "closed"

    run_with(coordinator, body)


def test_wait_policy_keeps_requests_queued_until_the_breaker_half_opens() -> None:
    clock = FakeClock()
    downstream = Downstream()
    downstream.fail = True
    finished: list[RequestStatus] = []
    coordinator = RequestCoordinator(
        settings(while_open="wait", breaker_reset_s=30, breaker_failure_threshold=1),
        lambda _: [agent("cot")],
        downstream,
        clock,
        finished.append,
    )

    async def body() -> None:
        coordinator.submit(text())
        await until(lambda: len(finished) == 1)
        downstream.fail = False
        waiting = coordinator.submit(text()).request_id
        await asyncio.sleep(0.02)
        assert coordinator.status(waiting).state is RequestState.QUEUED
        clock.advance(30)
        coordinator.resume()  # any kick re-checks the breakers
        await until(lambda: len(finished) == 2)
        assert coordinator.status(waiting).state is RequestState.SUCCEEDED

    run_with(coordinator, body)


def test_agent_error_reply_fails_the_request_but_not_the_breaker() -> None:
    downstream = Downstream()
    downstream.status = "error"
    finished: list[RequestStatus] = []
    coordinator = RequestCoordinator(
        settings(), lambda _: [agent("cot")], downstream, on_finished=finished.append
    )

    async def body() -> None:
        for _ in range(4):
            coordinator.submit(text())
        await until(lambda: len(finished) == 4)

    run_with(coordinator, body)
    assert len(downstream.sent) == 4
    assert {s.state for s in finished} == {RequestState.FAILED}
    assert finished[0].result is not None and finished[0].result.status == "error"
    assert coordinator.breaker_views()[0].state == "closed"


def test_interrupt_cancels_the_sessions_queued_requests_and_reports_them() -> None:
    coordinator = RequestCoordinator(settings(), lambda _: [agent("cot")], Downstream())
    coordinator.interrupt(InterruptRequest(pause_s=60))
    mine = [coordinator.submit(text(session="s1")).request_id for _ in range(3)]
    other = coordinator.submit(text(session="s2")).request_id
    report = coordinator.interrupt(InterruptRequest(session_id="s1", pause_s=5))
    assert sorted(report.cancelled) == sorted(mine)
    assert report.paused_until is not None
    assert [e.request_id for e in coordinator.queue_view().entries] == [other]
    cancelled = coordinator.status(mine[0])
    assert cancelled.state is RequestState.CANCELLED
    assert cancelled.error is not None and cancelled.error["error"] == "RequestCancelled"


def test_unhealthy_agents_are_skipped_and_deployment_routes_name_the_deployment() -> None:
    downstream = Downstream()
    routes = {
        "text": DispatchRoute(capability="reasoning"),
        "audio": DispatchRoute(app="speech", deployment="Asr", method="transcribe"),
        "vision": DispatchRoute(capability="vision"),
    }
    agents = [agent("b-warning", Health.WARNING, 1), agent("a-passing", Health.PASSING, 2)]
    coordinator = RequestCoordinator(settings(routes=routes), lambda _: agents, downstream)
    coordinator.submit(text())
    coordinator.submit(AudioRequest(audio_data="UklGRg=="))
    run_with(coordinator, lambda: until(lambda: len(downstream.sent) == 2))
    targets = {target for target, _ in downstream.sent}
    assert targets == {
        AgentTarget("a-passing", "tcp://127.0.0.1:2"),
        DeploymentTarget("speech/Asr", "speech", "Asr", "transcribe"),
    }


def test_finished_requests_age_out_after_results_kept() -> None:
    finished: list[RequestStatus] = []
    coordinator = RequestCoordinator(
        settings(results_kept=2),
        lambda _: [agent("cot")],
        Downstream(),
        on_finished=finished.append,
    )
    ids = [coordinator.submit(text()).request_id for _ in range(3)]
    run_with(coordinator, lambda: until(lambda: len(finished) == 3))
    with pytest.raises(RequestNotFound):
        coordinator.status(ids[0])
    assert coordinator.status(ids[2]).state is RequestState.SUCCEEDED


def test_more_trusted_agent_is_preferred_among_equally_healthy_ones() -> None:
    downstream = Downstream()
    agents = [agent("a-doubtful", port=1), agent("b-trusted", port=2)]
    trust = {"a-doubtful": 0.2, "b-trusted": 0.9}
    finished: list[RequestStatus] = []
    coordinator = RequestCoordinator(
        settings(),
        lambda _: agents,
        downstream,
        on_finished=finished.append,
        trust=lambda a: trust[a],
    )
    coordinator.submit(text())
    run_with(coordinator, lambda: until(lambda: len(finished) == 1))
    assert [target for target, _ in downstream.sent] == [
        AgentTarget("b-trusted", "tcp://127.0.0.1:2")
    ]
    outcome = outcome_of(finished[0])
    assert outcome is not None and outcome.success and outcome.latency_s >= 0
    trust["a-doubtful"] = 0.95  # trust changes the choice; health still comes first
    coordinator.submit(text())
    run_with(coordinator, lambda: until(lambda: len(finished) == 2))
    assert downstream.sent[-1][0] == AgentTarget("a-doubtful", "tcp://127.0.0.1:1")


def test_requests_never_dispatched_give_no_trust_outcome() -> None:
    coordinator = RequestCoordinator(settings(), lambda _: [], Downstream())
    receipt = coordinator.submit(text())
    run_with(
        coordinator,
        lambda: until(lambda: coordinator.status(receipt.request_id).finished_at is not None),
    )
    assert outcome_of(coordinator.status(receipt.request_id)) is None


def test_wait_finished_long_polls_until_the_result_or_the_timeout() -> None:
    downstream = Downstream()
    coordinator = RequestCoordinator(settings(), lambda _: [agent("cot")], downstream)
    coordinator.interrupt(InterruptRequest(session_id="nobody", pause_s=60))
    receipt = coordinator.submit(text())

    async def body() -> None:
        waited = await coordinator.wait_finished(receipt.request_id, 0.05)
        assert waited.state is RequestState.QUEUED  # paused: the timeout answers the state
        waiter = asyncio.create_task(coordinator.wait_finished(receipt.request_id, 5))
        coordinator.resume()
        done = await waiter
        assert done.state is RequestState.SUCCEEDED and done.result is not None

    run_with(coordinator, body)
    with pytest.raises(RequestNotFound):
        asyncio.run(coordinator.wait_finished("nope", 0.01))


def test_submit_and_wait_returns_the_result_or_the_unfinished_status_with_its_id(
    tmp_path: Path,
) -> None:
    journal = RequestJournal(tmp_path / "journal.sqlite3")
    coordinator = RequestCoordinator(
        settings(), lambda _: [agent("cot")], Downstream(), journal=journal
    )

    async def body() -> None:
        done = await coordinator.submit_and_wait(text(data="now"), 5)
        assert done.state is RequestState.SUCCEEDED and done.result is not None
        assert isinstance(done.result.data, dict) and done.result.data["data"] == "now"
        coordinator.interrupt(InterruptRequest(session_id="nobody", pause_s=60))
        late = await coordinator.submit_and_wait(text(data="later"), 0.05)
        # The wait ended, the request did not: it is journaled, queued and polled by its id.
        assert late.state is RequestState.QUEUED and late.request_id.startswith("req_")
        assert [p.request_id for p in journal.pending()] == [late.request_id]
        waiter = asyncio.create_task(coordinator.wait_finished(late.request_id, 5))
        coordinator.resume()
        assert (await waiter).state is RequestState.SUCCEEDED

    run_with(coordinator, body)


def test_accepted_requests_survive_a_coordinator_restart_through_the_journal(
    tmp_path: Path,
) -> None:
    journal_path = tmp_path / "journal.sqlite3"
    first = RequestCoordinator(
        settings(), lambda _: [agent("cot")], Downstream(), journal=RequestJournal(journal_path)
    )
    first.interrupt(InterruptRequest(session_id="nobody", pause_s=60))  # nothing dispatches
    ids = [first.submit(text(u, data=u)).request_id for u in ("low", "critical", "normal")]
    # The process dies here: a new coordinator on the same journal has every accepted request.
    downstream = Downstream()
    finished: list[RequestStatus] = []
    second = RequestCoordinator(
        settings(),
        lambda _: [agent("cot")],
        downstream,
        on_finished=finished.append,
        journal=RequestJournal(journal_path),
    )
    assert [entry.request_id for entry in second.queue_view().entries] == [ids[1], ids[2], ids[0]]
    run_with(second, lambda: until(lambda: len(finished) == 3))
    assert [request_of(task)["data"] for _, task in downstream.sent] == [
        "critical",
        "normal",
        "low",
    ]
    assert RequestJournal(journal_path).pending() == []  # finished requests leave the journal


def test_refused_request_is_not_journaled(tmp_path: Path) -> None:
    journal = RequestJournal(tmp_path / "journal.sqlite3")
    coordinator = RequestCoordinator(
        settings(queue_max_size=1), lambda _: [], Downstream(), journal=journal
    )
    coordinator.interrupt(InterruptRequest(session_id="nobody", pause_s=60))
    coordinator.submit(text())
    with pytest.raises(QueueFull):
        coordinator.submit(text())
    assert len(journal.pending()) == 1
