"""Legacy health replies report the aisys service behind the port, in the legacy words.

No Ray: the services are stand-ins whose calls answer, fail as Ray fails, or never answer.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from types import SimpleNamespace
from typing import Any

import pytest
import zmq
from ray.exceptions import RaySystemError

from actors.registry.follower import RegistryFollower
from actors.resources.client import ResourcesClient
from legacy_gateway._codec import Reply, decode
from legacy_gateway._ports import HEALTH_PROBE_TIMEOUT_S, Services
from legacy_gateway.monitor_ports import (
    PerformanceLoggerHealthPort,
    PerformanceLoggerPort,
    PerformanceMonitorPort,
    PredictiveHealthMonitorPort,
)
from legacy_gateway.registry_port import RegistryLink
from legacy_gateway.server import Outcome, Received
from legacy_gateway.system_ports import (
    AsyncProcessorPort,
    ResourceManagerPort,
    SuggestionPort,
    TaskSchedulerPort,
    VramOptimizerPort,
)
from legacy_gateway.twin_cache import TwinCache

HANG = "hang"


def _ray_down(what: str) -> RaySystemError:
    """What a call to a dead actor or replica raises (a RayError)."""
    return RaySystemError(what)  # type: ignore[no-untyped-call]


class _Call:
    def __init__(self, services: _Services) -> None:
        self._services = services

    def remote(self, *args: object) -> Any:  # noqa: ARG002
        self._services.calls += 1
        outcome = self._services.outcome

        async def run() -> None:
            if outcome == HANG:
                await asyncio.sleep(3600)
            if isinstance(outcome, BaseException):
                raise outcome

        return run()


class _Services(Services):
    """Every service call answers (None), raises ``outcome``, or never answers (HANG)."""

    def __init__(self, outcome: object = None) -> None:
        super().__init__()
        self.outcome = outcome
        self.calls = 0

    def _target(self) -> Any:
        if isinstance(self.outcome, ValueError):  # ray.get_actor: no such actor
            raise self.outcome
        call = _Call(self)
        return SimpleNamespace(thresholds=call, check_health=call, queue=call)

    def resources(self) -> Any:
        return ResourcesClient(self._target())

    def deployment(self, name: str, app: str) -> Any:  # noqa: ARG002
        return self._target()


class _LiveTwin(TwinCache):
    def host(self, tag: str) -> Any:  # noqa: ARG002
        return SimpleNamespace(cpu_percent=12.0, memory_percent=34.0, taken_at=time.time())


def _link() -> RegistryLink:
    follower = RegistryFollower(None)
    follower.last_sync = time.monotonic()
    return RegistryLink(None, follower, 1.0)


def _resolve(outcome: Outcome) -> Reply:
    if inspect.isawaitable(outcome):
        outcome = asyncio.run(_await(outcome))
    assert isinstance(outcome, Reply)
    return outcome


async def _await(outcome: Any) -> Any:
    return await outcome


def _ports(services: _Services, twin: TwinCache | None = None) -> list[Any]:
    twin = twin or _LiveTwin(services, 5.0)
    return [
        VramOptimizerPort(services, "mainpc", "pc2"),
        ResourceManagerPort(services, twin, "pc2"),
        TaskSchedulerPort(services, {}, "pc2"),
        AsyncProcessorPort(services, {}, "pc2"),
        PerformanceLoggerPort(services),
        PerformanceMonitorPort(services, twin, "pc2"),
        PredictiveHealthMonitorPort(services, _link(), twin, "mainpc"),
    ]


def _ask(port: Any, frame: bytes) -> Reply:
    return _resolve(port.handle(decode(frame, 1 << 20), Received(zmq.Frame(frame))))


def test_health_is_ok_while_the_service_behind_each_port_answers() -> None:
    for port in _ports(_Services()):
        reply = _resolve(port.health())
        assert reply.status == "ok", port.service
        assert _ask(port, b'{"action":"health_check"}').status == "ok"
        assert _ask(port, b"ping").status == "ok"


@pytest.mark.parametrize(
    "outcome", [_ray_down("actor gone"), ValueError("Failed to look up actor")]
)
def test_health_is_degraded_and_says_why_while_the_service_is_down(outcome: object) -> None:
    for port in _ports(_Services(outcome)):
        reply = _resolve(port.health())
        assert reply.status == "degraded", port.service
        message = reply.model_dump().get("message")
        assert isinstance(message, str) and "unavailable" in message, port.service


def test_a_service_that_never_answers_is_degraded_within_the_probe_timeout() -> None:
    port = VramOptimizerPort(_Services(HANG), "mainpc", "pc2")
    started = time.monotonic()
    reply = _resolve(port.health())
    assert reply.status == "degraded"
    assert "did not answer" in str(reply.model_dump()["message"])
    assert time.monotonic() - started < HEALTH_PROBE_TIMEOUT_S + 1.0


def test_a_recent_reading_is_reused_and_a_recovery_is_seen_after_it() -> None:
    services = _Services(_ray_down("down"))
    port = ResourceManagerPort(services, _LiveTwin(services, 5.0), "pc2")
    assert _resolve(port.health()).status == "degraded"
    services.outcome = None
    again = port.health()
    assert isinstance(again, Reply) and again.status == "degraded"  # no second call yet
    assert services.calls == 1
    port._reading = (time.monotonic() - 5.0, "old")  # the reading ages out
    assert _resolve(port.health()).status == "ok"
    assert services.calls == 2


def test_predictive_health_monitor_is_degraded_with_the_twin_down() -> None:
    services = _Services()
    never_fetched = TwinCache(services, 5.0)
    phm = PredictiveHealthMonitorPort(services, _link(), never_fetched, "mainpc")
    reply = _resolve(phm.health()).model_dump()
    assert reply["status"] == "degraded" and reply["ready"] is False
    assert "digital twin" in reply["message"]
    assert "error" in reply["agent_specific_metrics"]["system_metrics"]
    live = PredictiveHealthMonitorPort(services, _link(), _LiveTwin(services, 5.0), "mainpc")
    assert _resolve(live.health()).status == "ok"


def test_the_performance_logger_health_port_follows_its_main_port() -> None:
    services = _Services(_ray_down("hub gone"))
    health_port = PerformanceLoggerHealthPort(PerformanceLoggerPort(services))
    reply = _resolve(health_port.handle(b"anything", None))
    assert reply.model_dump()["status"] == "degraded"
    assert set(reply.model_dump()) == {"agent", "status", "timestamp", "uptime"}
    services.outcome = None
    fresh = PerformanceLoggerHealthPort(PerformanceLoggerPort(services))
    assert _resolve(fresh.handle(b"anything", None)).status == "ok"


def test_the_suggestion_port_health_follows_core_orchestrator() -> None:
    up, down = _Services(), _Services(_ray_down("core gone"))
    assert _ask(SuggestionPort(up, 60.0), b'{"action":"health"}').status == "ok"
    reply = _ask(SuggestionPort(down, 60.0), b"ping")
    assert reply.status == "degraded"
    assert "unavailable" in str(reply.model_dump()["message"])
