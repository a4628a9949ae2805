"""The monitoring, resource and system agents' legacy ports, played with the legacy frames.

Each test sends what docs/legacy-protocol.md says the legacy clients send (sections 3.2, 4.2-4.13)
to the deployed gateway on its (random) ports and checks the replies field by field against
what those clients read, and that the action reached the aisys service that owns it.
"""

from __future__ import annotations

import errno
import os
import pickle
import struct
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import zmq

from cluster.base.settings import LegacyService, Settings
from legacy_gateway.system_ports import IDLE_REMINDER
from tests.conftest import wait_for_condition
from tests.integration._legacy_client import (  # noqa: F401 (fixtures)
    LegacyClient,
    client_fixture,
    ports_fixture,
    zctx_fixture,
)

pytestmark = pytest.mark.integration

S = LegacyService


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _register(client: dict[str, LegacyClient], name: str) -> None:
    reply = client[f"mainpc/{S.SERVICE_REGISTRY}"].send_json(
        {
            "action": "register_agent",
            "registration_data": {
                "agent_id": name,
                "agent_type": name,
                "host": "127.0.0.1",
                "port": 5999,
            },
        }
    )
    assert reply == {"status": "success"}


def _answers(c: LegacyClient, request: object, check: Any, timeout_s: float = 30) -> Any:
    """Poll until the reply passes ``check`` (for figures that need a twin round)."""
    found: list[Any] = []

    def passes() -> bool:
        found[:] = [c.send_json(request)]
        return bool(check(found[0]))

    wait_for_condition(passes, timeout_s=timeout_s)
    return found[0]


def test_performance_logger_round_trip_on_5632_read_back_on_7128(
    client: dict[str, LegacyClient],
) -> None:
    pla, declared = (
        client[f"pc2/{S.PERFORMANCE_LOGGER}"],
        client[f"pc2/{S.PERFORMANCE_LOGGER_DECLARED}"],
    )
    agent = _name("LearningAdjusterAgent")
    at = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    metric = {
        "agent": agent,
        "action": "adjust",
        "duration": 0.25,
        "timestamp": at.isoformat(),
        "metadata": {"k": 1},
    }
    assert pla.send_json({"action": "log_metric", "metric": metric}) == {"status": "success"}
    usage = {
        "agent": agent,
        "cpu_percent": 12.5,
        "memory_mb": 300.0,
        "timestamp": at.isoformat(),
        "metadata": {"pid": 4242, "threads": [1, 2]},
    }
    assert pla.send_json({"action": "log_resource_usage", "usage": usage}) == {"status": "success"}
    window = {
        "agent": agent,
        "start_time": (at - timedelta(minutes=1)).isoformat(),
        "end_time": (at + timedelta(minutes=1)).isoformat(),
    }
    metrics = declared.send_json({"action": "get_agent_metrics", **window})
    assert metrics["status"] == "success"
    assert [(m["action"], m["duration"], m["metadata"]) for m in metrics["metrics"]] == [
        ("adjust", 0.25, {"k": 1})
    ]
    assert datetime.fromisoformat(metrics["metrics"][0]["timestamp"]) == at
    used = declared.send_json({"action": "get_agent_resource_usage", **window})
    assert used["status"] == "success"
    assert [(u["cpu_percent"], u["memory_mb"], u["metadata"]) for u in used["usage"]] == [
        (12.5, 300.0, {"pid": 4242, "threads": [1, 2]})
    ]
    assert datetime.fromisoformat(used["usage"][0]["timestamp"]) == at
    empty = pla.send_json({"action": "get_agent_metrics", **window, "agent": _name("nobody")})
    assert empty == {"status": "success", "metrics": []}
    bad = pla.send_json({"action": "log_metric", "metric": {"agent": agent}})
    assert bad["status"] == "error" and "duration" in bad["message"]
    health = client[f"pc2/{S.PERFORMANCE_LOGGER_HEALTH}"].raw(b"anything")
    assert health["status"] == "ok" and health["agent"] == "PerformanceLoggerAgent"
    assert isinstance(health["uptime"], float) and "timestamp" in health


def test_performance_monitor_metrics_alerts_and_log_metric(
    client: dict[str, LegacyClient],
) -> None:
    pm = client[f"pc2/{S.PERFORMANCE_MONITOR}"]
    service = _name("TranslationService")
    logged = pm.send_json(
        {"action": "log_metric", "service": service, "metric_type": "response_time", "value": 0.5}
    )
    assert logged == {"status": "success", "message": "Metric logged"}
    one = pm.send_json({"action": "get_metrics", "service": service})
    assert one["status"] == "success"
    assert one["metrics"]["response_time"] == {"current": 0.5, "average": 0.5}
    snapshot = _answers(
        pm, {"action": "get_metrics"}, lambda r: r["status"] == "success", timeout_s=60
    )["metrics"]
    assert isinstance(snapshot["resources"]["cpu_percent"], float)
    assert service in snapshot["services"]
    alerts = pm.send_json({"action": "get_alerts"})
    assert alerts["status"] == "success" and isinstance(alerts["alerts"], list)
    for alert in alerts["alerts"]:
        assert alert["type"] in ("service", "resource") and alert["level"] in ("warning", "error")
    wrong = pm.send_json(
        {"action": "log_metric", "service": service, "metric_type": "x", "value": 1}
    )
    assert wrong["status"] == "error" and "metric_type" in wrong["message"]
    assert pm.send_json({"action": "log_metric"})["message"] == "Missing required parameters"


def test_health_monitor_and_system_health_manager(client: dict[str, LegacyClient]) -> None:
    hm = client[f"pc2/{S.HEALTH_MONITOR}"]
    name = _name("MonitoredAgent")
    _register(client, name)
    # Registered on MainPC; PC2's copy of the registry has it within moments.
    status = _answers(hm, {"action": "get_status"}, lambda r: name in r["agent_status"], 5)
    assert status["status"] == "success" and status["agent_status"][name] == "unknown"
    assert hm.send_json({"action": "ping"}) == {"status": "success", "message": "pong"}
    h3 = hm.send_json({"action": "health_check"})
    assert h3["status"] == "ok" and h3["service"] == "HealthMonitor"
    assert h3["initialization_status"] == "complete" and "timestamp" in h3
    other = hm.send_json({"action": "nope"})
    assert other == {
        "status": "error",
        "error": "Unknown action: nope",
        "message": "Unknown action: nope",
    }
    shm = client[f"pc2/{S.SYSTEM_HEALTH_MANAGER}"].send_json({"action": "get_system_status"})
    assert shm["status"] == "success"
    assert set(shm["memory_system"]) == {"orchestrator", "scheduler"}
    # Its own health port (8121) answers any payload with the main port's health dict.
    shm_health = client[f"pc2/{S.SYSTEM_HEALTH_MANAGER_HEALTH}"]
    for frame in (b"anything", b'{"action": "get_system_status"}', b"\xff\xfe"):
        health = shm_health.raw(frame)
        assert health["status"] == "ok" and health["service"] == "SystemHealthManager"
        assert isinstance(health["uptime"], float) and "timestamp" in health


def test_resource_manager_allocates_real_vram_leases(
    client: dict[str, LegacyClient], http: httpx.Client
) -> None:
    rm = client[f"pc2/{S.RESOURCE_MANAGER}"]
    stats = _answers(rm, {"action": "get_stats"}, lambda r: r["status"] == "success", 60)
    assert {"cpu_percent", "memory_percent", "memory_total", "gpu_memory_percent"} <= set(
        stats["stats"]
    )
    resource = _name("job")
    allocated = rm.send_json(
        {
            "action": "allocate_resources",
            "resource_id": resource,
            "resource_type": "gpu",
            "amount": 512,
        }
    )
    assert allocated["status"] == "success" and allocated["resource_id"] == resource
    assert allocated["message"] == "Allocated 512 gpu"
    leases = http.get("/resources/leases").json()["granted"]
    lease = next(g for g in leases if g["lease_id"] == allocated["lease_id"])
    assert lease["vram_mb"] == 512 and lease["owner"] == f"legacy:{resource}"
    again = rm.send_json({"action": "allocate_resources", "resource_id": resource, "amount": 512})
    assert again["message"] == f"Resource ID {resource} already allocated"
    status = rm.send_json({"action": "get_status"})
    assert status["allocated_resources"][resource]["amount"] == 512
    released = rm.send_json({"action": "release_resources", "resource_id": resource})
    assert (
        released["status"] == "success" and released["message"] == "Resources released successfully"
    )
    gone = rm.send_json({"action": "release_resources", "resource_id": resource})
    assert gone["message"] == f"Resource ID {resource} not found"
    cpu = rm.send_json(
        {"action": "allocate_resources", "resource_id": resource, "resource_type": "cpu"}
    )
    assert cpu["status"] == "error" and "gpu" in cpu["message"]


def test_task_scheduler_and_async_processor_run_ray_tasks(
    client: dict[str, LegacyClient], http: httpx.Client
) -> None:
    ts = client[f"pc2/{S.TASK_SCHEDULER}"]
    queued = ts.send_json(
        {"action": "schedule_task", "type": "analysis", "data": {"x": 1}, "priority": "high"}
    )
    assert queued["status"] == "queued" and queued["message"] == "Task queued for processing"

    def finished() -> bool:
        task = http.get(f"/resources/tasks/{queued['task_id']}").json()
        assert task["state"] != "failed", task
        return bool(task["state"] == "succeeded" and task["result"]["logged_bytes"] == 8)

    wait_for_condition(finished, timeout_s=60)
    ap = client[f"pc2/{S.ASYNC_PROCESSOR}"]
    assert ap.send_json({"type": "memory", "data": [1, 2]})["status"] == "queued"
    unknown = ap.send_json({"type": "dance", "data": 1})
    assert unknown["status"] == "error" and unknown["message"].startswith(
        "Unknown task type: dance"
    )
    invalid = ap.send_json({"type": "logging", "data": ""})
    assert invalid["message"] == "Invalid task format. Required fields: type, data"
    assert ap.send_json({"action": "health_check"})["status"] == "ok"


def test_vram_optimizer_answers_model_manager_and_its_commands(
    client: dict[str, LegacyClient],
) -> None:
    for port in (f"mainpc/{S.VRAM_OPTIMIZER}", f"mainpc/{S.VRAM_OPTIMIZER_MMA}"):
        vo = client[port]
        assert vo.send_json(
            {"action": "register_model_manager", "vram_budget_mb": 20000, "idle_timeout": 900}
        ) == {"status": "ok"}
        fits = vo.send_json({"action": "can_accommodate_model", "vram_mb": 1})
        assert fits["status"] == "ok" and fits["can_accommodate"] in (True, False)
    vo = client[f"mainpc/{S.VRAM_OPTIMIZER}"]
    status = _answers(
        vo,
        {"command": "GET_VRAM_STATUS"},
        lambda r: r["status"] == "SUCCESS" and bool(r["mainpc_vram"] and r["pc2_vram"]),
        60,
    )
    assert isinstance(status["loaded_models"], dict)  # models held under leases
    # The NVML double's GPUs (the session's), labelled as such on the legacy port too.
    assert (status["pc2_vram"]["total_mb"], status["pc2_vram"]["used_mb"]) == (12288, 310)
    assert (status["mainpc_vram"]["total_mb"], status["mainpc_vram"]["used_mb"]) == (24564, 1830)
    assert status["pc2_vram"]["source"] == status["mainpc_vram"]["source"] == "nvml-double"
    old = status["thresholds"]["warning"]
    try:
        assert vo.send_json(
            {"command": "SET_VRAM_THRESHOLD", "threshold_type": "warning", "value": 0.6}
        ) == {"status": "SUCCESS", "message": "warning threshold set to 0.6"}
        assert vo.send_json({"command": "GET_VRAM_STATUS"})["thresholds"]["warning"] == 0.6
    finally:
        vo.send_json({"command": "SET_VRAM_THRESHOLD", "threshold_type": "warning", "value": old})
    bad = vo.send_json({"command": "SET_VRAM_THRESHOLD", "threshold_type": "safe", "value": 2})
    assert bad["status"] == "ERROR"
    assert vo.send_json({"command": "HEALTH_CHECK"})["health_status"]["status"] == "HEALTHY"
    assert vo.send_json({"command": "NOPE"})["message"] == "Unknown command: NOPE"


def test_vram_status_lists_the_models_model_manager_reported(
    client: dict[str, LegacyClient],
) -> None:
    vo = client[f"mainpc/{S.VRAM_OPTIMIZER}"]
    model = _name("mistral-7b")
    update = vo.send_json(
        {
            "action": "update_vram_status",
            "current_vram_mb": 6000,
            "total_vram_mb": 24000,
            "loaded_models": {
                model: {"priority": "high", "vram_mb": 6000, "last_used": time.time()}
            },
        }
    )
    assert update == {"status": "ok", "unload_models": []}
    # ModelManagerAgent runs on the head host, mainpc in the test system.
    listed = vo.send_json({"command": "GET_VRAM_STATUS"})["loaded_models"][model]
    assert (listed["device"], listed["vram_usage_mb"], listed["owner"]) == (
        "MainPC",
        6000,
        "ModelManagerAgent",
    )
    assert isinstance(listed["last_used"], float) and listed["gpu_index"] is None
    # MMA's REPORT_MODEL_VRAM to the twin after a load replaces what it reported before.
    loaded = _name("whisper-large-v3")
    report = {
        "command": "REPORT_MODEL_VRAM",
        "payload": {
            "agent_name": "ModelManagerAgent",
            "total_vram_mb": 24000,
            "total_vram_used_mb": 3000,
            "loaded_models": {
                loaded: {
                    "vram_usage_mb": 3000,
                    "device": "MainPC",
                    "last_used": time.time(),
                    "is_active": True,
                    "quantization": "FP16",
                }
            },
            "timestamp": time.time(),
        },
    }
    sdt = client[f"mainpc/{S.SYSTEM_DIGITAL_TWIN}"]
    assert sdt.send_json(report)["status"] == "SUCCESS"
    models = vo.send_json({"command": "GET_VRAM_STATUS"})["loaded_models"]
    assert model not in models
    assert (models[loaded]["device"], models[loaded]["vram_usage_mb"]) == ("MainPC", 3000)


def test_unified_system_agent_lists_and_describes_services(
    client: dict[str, LegacyClient],
) -> None:
    usa = client[f"mainpc/{S.UNIFIED_SYSTEM}"]
    services = usa.send_json({"action": "list_services"})
    assert services["status"] == "success" and services["services"]["core"]["status"] == "RUNNING"
    one = usa.send_json({"action": "get_service_status", "service_name": "core"})
    assert one["service"] == "core" and one["info"]["route_prefix"] == "/core"
    info = _answers(usa, {"action": "get_system_info"}, lambda r: r["status"] == "success", 60)
    assert isinstance(info["system_info"]["cpu_count"], int)
    health = client[f"mainpc/{S.UNIFIED_SYSTEM_HEALTH}"].send_json({"action": "health"})
    assert health["status"] == "ok" and "registered_services" in health["service_metrics"]
    missing = usa.send_json({"action": "get_service_status", "service_name": "nope"})
    assert missing["status"] == "error"
    running = usa.send_json({"action": "start_service", "service_name": "core"})
    assert running == {"status": "success", "message": "Service core is already running"}
    unknown = usa.send_json({"action": "start_service", "service_name": "nope"})
    assert unknown == {
        "status": "error",
        "error": "Unknown service: nope",
        "message": "Unknown service: nope",
    }
    # The legacy stubs answered success; aisys refuses clearly and the service keeps running.
    stop = usa.send_json({"action": "stop_service", "service_name": "core"})
    assert stop["status"] == "error" and stop["error"].startswith("stop_service core refused")
    cleanup = usa.send_json({"action": "cleanup_system"})
    assert cleanup["status"] == "error" and "not supported" in cleanup["error"]
    after = usa.send_json({"action": "get_service_status", "service_name": "core"})
    assert after["info"]["status"] == "RUNNING"


def test_predictive_health_monitor_health_and_anomalies(client: dict[str, LegacyClient]) -> None:
    phm = client[f"mainpc/{S.PREDICTIVE_HEALTH_MONITOR}"]
    health = phm.send_json({"action": "health"})
    assert health["status"] == "ok"
    counts = health["agent_specific_metrics"]
    assert counts["monitored_agents_count"] >= counts["healthy_agents_count"] >= 0
    anomalies = phm.send_json({"action": "get_anomalies"})
    assert anomalies["status"] == "success" and isinstance(anomalies["series"], list)


def test_digital_twin_metrics_vram_reports_and_simulate_load(
    client: dict[str, LegacyClient],
) -> None:
    sdt = client[f"mainpc/{S.SYSTEM_DIGITAL_TWIN}"]
    metrics = _answers(
        sdt,
        {"command": "GET_METRICS", "payload": {"metrics": ["vram_usage"]}},
        lambda r: r["status"] == "SUCCESS" and r["payload"]["mainpc_vram_total_mb"] > 0,
        60,
    )["payload"]
    assert metrics["pc2_vram_total_mb"] == 12288  # the NVML double's 3060 and 4090
    assert (metrics["mainpc_vram_total_mb"], metrics["mainpc_vram_used_mb"]) == (24564, 1830)
    assert metrics["pc2_gpu_source"] == metrics["mainpc_gpu_source"] == "nvml-double"
    report = {
        "command": "REPORT_MODEL_VRAM",
        "payload": {
            "agent_name": "ModelManagerAgent",
            "total_vram_mb": 24000,
            "total_vram_used_mb": 4200,
            "loaded_models": {"phi-2": {"vram_usage_mb": 4200, "device": "MainPC"}},
            "timestamp": time.time(),
        },
    }
    assert sdt.send_json(report) == {
        "status": "SUCCESS",
        "message": "VRAM metrics updated successfully",
    }
    assert sdt.send_json({"command": "REPORT_MODEL_VRAM", "payload": {}})["status"] == "ERROR"
    action = sdt.send_json({"action": "get_metrics"})
    assert action["status"] == "success" and "cpu_usage" in action["metrics"]
    history = sdt.send_json({"action": "get_history"})["history"]
    assert len(history["timestamps"]) == len(history["cpu_usage"]) >= 1
    proceed = sdt.send_json({"action": "simulate_load", "load_type": "vram", "value_mb": 10})
    assert proceed["status"] == "success" and proceed["load_type"] == "vram"
    # The port's host decides: pc2 has the NVML double's 3060, mainpc its 4090 (the test node
    # carries both tags, so either deployment may serve the shared port); a busy CPU says caution.
    assert proceed["recommendation"] in (
        "proceed",
        "caution_high_cpu",
        "deny_insufficient_resources",
    )
    assert proceed["requested_value"] == 10
    bad = sdt.send_json({"action": "simulate_load", "load_type": "disk", "value": 1})
    assert bad["recommendation"] == "error_invalid_request"


def test_digital_twin_simple_register_agent_becomes_a_heartbeat(
    client: dict[str, LegacyClient],
) -> None:
    sdt = client[f"pc2/{S.SYSTEM_DIGITAL_TWIN}"]
    name = _name("StatusAgent")
    _register(client, name)
    # Registered through MainPC's 7100; PC2's copy of the registry follows within moments.
    reply = _answers(
        sdt,
        {"action": "register_agent", "agent_name": name, "status": "ok"},
        lambda r: r["status"] == "success",
        timeout_s=5,
    )
    assert reply == {"status": "success", "message": f"Updated {name} status to ok", "agent": name}

    def passing() -> bool:
        ok = sdt.send_json({"action": "get_ok_agents"})
        return name in ok["agents"] and ok["count"] == len(ok["agents"])

    wait_for_condition(passing, timeout_s=10)
    unknown = sdt.send_json({"action": "register_agent", "agent_name": _name("x"), "status": "ok"})
    assert unknown["status"] == "error" and "not registered" in unknown["message"]


def test_suggestion_port_reminds_once_after_idle(client: dict[str, LegacyClient]) -> None:
    port = client[f"mainpc/{S.REQUEST_COORDINATOR_SUGGESTIONS}"]
    # suggestion_idle_s is 3 s in the session settings; nothing submits during this test.
    reply = _answers(port, "get_suggestion", lambda r: r["suggestion"] is not None, 30)
    assert reply["suggestion"] == IDLE_REMINDER
    assert port.raw(b"get_suggestion")["suggestion"] is None  # once per idle period
    assert port.send_json({"action": "health"})["status"] == "ok"


def _publish_until(
    zctx: zmq.Context[zmq.Socket[bytes]],
    address: str,
    frames: list[bytes],
    http: httpx.Client,
    feed: str,
    done: Any,
) -> dict[str, Any]:
    pub = zctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)

    def bound() -> bool:
        # A PUB closed a moment ago on this address lets go of it in ZeroMQ's I/O thread.
        try:
            pub.bind(address)
        except zmq.ZMQError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            return False
        return True

    wait_for_condition(bound, timeout_s=10)
    seen: dict[str, Any] = {}
    try:

        def arrived() -> bool:
            for frame in frames:
                pub.send(frame)
            seen.update(http.get("/legacy/feeds").json()[feed])
            return bool(done(seen))

        try:
            wait_for_condition(arrived, timeout_s=30, interval_s=0.3)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the {feed} feed's counters: {seen}") from None
    finally:
        pub.close(linger=0)
    return seen


class _Exploit:
    """Unpickling this would call a function: the gateway must refuse it."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (os.getpid, ())


def _deep_analysis_pickle(depth: int) -> bytes:
    """A language analysis whose ``analysis`` nests lists ``depth`` deep, as raw pickle opcodes.

    ``pickle.dumps`` cannot build it (it recurses); the unpickler can read it (it does not).
    """

    def text(value: str) -> bytes:
        data = value.encode()
        return b"X" + struct.pack("<I", len(data)) + data

    nested = b"]" * depth + b"a" * (depth - 1)
    items = [
        ("type", text("language_analysis")),
        ("transcription", text("hi")),
        ("analysis", nested),
    ]
    return b"\x80\x02}" + b"".join(text(k) + v + b"s" for k, v in items) + b"."


def test_pickled_feeds_act_on_plain_data_and_reject_code(
    aisys_system: Settings, zctx: zmq.Context[zmq.Socket[bytes]], http: httpx.Client
) -> None:
    gateway = aisys_system.legacy_gateway
    assert gateway.interrupt_feed is not None and gateway.language_feed is not None
    evil = pickle.dumps(_Exploit())
    try:
        seen = _publish_until(
            zctx,
            gateway.interrupt_feed,
            [pickle.dumps({"type": "interrupt", "timestamp": time.time()})],
            http,
            "interrupts",
            lambda s: s["acted"] >= 1,
        )
        assert seen["rejected"] == 0
        assert http.get("/core/queue").json()["paused_until"] is not None
    finally:
        http.post("/core/resume")
    before = http.get("/core/queue").json()["last_submit_at"]
    analysis = {
        "type": "language_analysis",
        "transcription": "kumusta ka",
        "translated_text": "how are you",
        "detected_language": "tl",
        "analysis": {"sentiment": ("positive", 0.9)},
        "timestamp": time.time(),
        "request_id": "r-1",
    }
    seen = _publish_until(
        zctx,
        gateway.language_feed,
        [evil, pickle.dumps(analysis)],
        http,
        "language",
        lambda s: s["acted"] >= 1 and s["rejected"] >= 1,
    )
    assert "refused" in seen["last_error"] and "getpid" in seen["last_error"]
    # Broken pickles (an APPEND with no list under it) and data nested past Python's recursion
    # limit are rejected too, and the feed goes on to act on the next good message.
    broken, deep = b"K\x01K\x02a.", _deep_analysis_pickle(100_000)
    acted = seen["acted"]
    seen = _publish_until(
        zctx,
        gateway.language_feed,
        [broken, deep, pickle.dumps(analysis)],
        http,
        "language",
        lambda s: s["acted"] > acted and s["rejected"] >= 3,
    )
    after = http.get("/core/queue").json()["last_submit_at"]
    assert after is not None and (before is None or after > before)


def test_digital_twin_report_error_and_publish_event_reach_error_bus(
    client: dict[str, LegacyClient], http: httpx.Client
) -> None:
    sdt = client[f"pc2/{S.SYSTEM_DIGITAL_TWIN}"]
    agent, error_id = _name("MemoryClient"), uuid.uuid4().hex
    report = {  # BaseAgent.report_error's ErrorReport (section 2.4), as JSON
        "error_id": error_id,
        "agent_id": agent,
        "severity": "warning",
        "error_type": "connection_failure",
        "message": "redis refused",
        "timestamp": "2025-07-15T11:00:00",
        "context": {"attempt": 3},
        "related_task_id": "task-7",
        "recovery_attempted": False,
    }
    reply = sdt.send_json({"action": "report_error", "error": report, "source_agent": agent})
    assert reply == {
        "status": "success",
        "message": f"Error {error_id} recorded successfully",
        "error_id": error_id,
    }
    event_id = uuid.uuid4().hex
    event = {
        "event_id": event_id,
        "event_type": "model_loaded",
        "source_agent": agent,
        "timestamp": "2025-07-15T11:00:01",
        "data": {"model": "phi-2"},
        "propagate": False,
        "ttl": 3,
    }
    reply = sdt.send_json({"action": "publish_event", "event": event})
    assert reply == {
        "status": "success",
        "message": f"Event {event_id} published successfully",
        "event_id": event_id,
    }
    missing = sdt.send_json({"action": "report_error"})
    assert missing["error"] == "Missing required parameter: error"

    def stored() -> list[dict[str, Any]]:
        page = http.get("/errors/", params={"agent": agent, "limit": 10})
        assert page.status_code == 200, page.text
        return [item["event"] for item in page.json()["items"]]

    wait_for_condition(lambda: len(stored()) == 2, timeout_s=20)
    by_id = {e["id"]: e for e in stored()}
    error = by_id[error_id]
    assert (error["error_type"], error["severity"], error["message"]) == (
        "connection_failure",
        "warning",
        "redis refused",
    )
    assert error["details"]["attempt"] == 3 and error["correlation_id"] == "task-7"
    info = by_id[event_id]
    assert (info["error_type"], info["severity"]) == ("model_loaded", "info")
    assert info["details"]["data"] == {"model": "phi-2"}
