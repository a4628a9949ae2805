"""ObservabilityHub through the deployed app: the exporter, agent probes, the perf log, alerts.

The session node carries both host tags, so both probe actors run on this machine; their GPUs
are the NVML double's (an RTX 4090 on mainpc, an RTX 3060 on pc2), read by the real NVML probe
code and exported with ``source="nvml-double"``, whatever GPU this machine has.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import httpx
import nats
import nats.js.errors
import pytest
from prometheus_client.parser import text_string_to_metric_families

from actors.logship.models import LogRecord
from cluster.base.constants import LOGS_STREAM
from cluster.base.nats_client import NatsClient, nats_client
from cluster.base.settings import Settings
from tests.conftest import wait_for_condition
from tests.integration._zmq_agent import ZmqAgent

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


def scrape(http: httpx.Client) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)] of one scrape of ``/observability/metrics``."""
    response = http.get("/observability/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float:
    found = [
        v for got, v in samples.get(name, []) if all(got.get(k) == x for k, x in labels.items())
    ]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]


def test_host_metrics_of_both_hosts_and_the_nvml_doubles_gpus(http: httpx.Client) -> None:
    def both_hosts_up() -> bool:
        samples = scrape(http)
        read = [
            len(samples.get(f"aisys_gpu_{n}", [])) for n in ("temperature_celsius", "power_watts")
        ]
        up = all(value(samples, "aisys_host_up", host=h) == 1.0 for h in ("mainpc", "pc2"))
        return up and read == [2, 1]  # host facts and counters (GPU readings) read too

    wait_for_condition(both_hosts_up, timeout_s=90, interval_s=0.5)
    samples = scrape(http)
    for host in ("mainpc", "pc2"):
        assert 0.0 <= value(samples, "aisys_host_cpu_used_ratio", host=host) <= 1.0
        assert 0.0 < value(samples, "aisys_host_memory_used_ratio", host=host) < 1.0
        assert value(samples, "aisys_host_memory_total_bytes", host=host) > 0
        assert value(samples, "aisys_host_disk_free_bytes", host=host) > 0
        assert value(samples, "aisys_host_network_received_bytes_total", host=host) > 0
    rtx4090 = {"host": "mainpc", "gpu": "0", "name": "NVIDIA GeForce RTX 4090 (nvml-double)"}
    rtx3060 = {"host": "pc2", "gpu": "0", "name": "NVIDIA GeForce RTX 3060 (nvml-double)"}
    for labels in (rtx4090, rtx3060):
        labels["source"] = "nvml-double"  # the double's devices never pass for real ones

    def series(name: str) -> list[tuple[dict[str, str], float]]:
        return sorted(samples.get(name, []), key=lambda s: s[0]["host"])

    assert series("aisys_gpu_devices") == [
        ({"host": "mainpc", "source": "nvml-double"}, 1.0),
        ({"host": "pc2", "source": "nvml-double"}, 1.0),
    ]
    assert series("aisys_gpu_memory_total_bytes") == [
        (rtx4090, 24564 * MIB),
        (rtx3060, 12288 * MIB),
    ]
    assert series("aisys_gpu_memory_used_bytes") == [(rtx4090, 1830 * MIB), (rtx3060, 310 * MIB)]
    assert series("aisys_gpu_utilization_ratio") == [(rtx4090, 0.04), (rtx3060, 0.0)]
    assert series("aisys_gpu_temperature_celsius") == [(rtx4090, 41.0), (rtx3060, 36.0)]
    # The 3060 answers NotSupported for power: no series for it, never an invented figure.
    assert series("aisys_gpu_power_watts") == [(rtx4090, 38.5)]

    def watched_hosts() -> set[str]:
        # The detectors are fed at the end of a round, after its host samples are exported.
        anomalies = http.get("/observability/anomalies").json()
        return {
            s["labels"]["host"] for s in anomalies if s["metric"] == "aisys_host_cpu_used_ratio"
        }

    wait_for_condition(lambda: watched_hosts() == {"mainpc", "pc2"}, timeout_s=30, interval_s=0.5)


@pytest.fixture
def health_agent(http: httpx.Client) -> Iterator[tuple[str, ZmqAgent]]:
    """A registered agent whose health port is a real ZeroMQ REP answering ``ok``."""
    server = ZmqAgent().start()
    agent_id = f"obs-it-{uuid.uuid4().hex[:6]}"
    assert server.port is not None
    body = {
        "agent_id": agent_id,
        "host": "127.0.0.1",
        "port": server.port,
        "health_check_port": server.port,
        "check": "none",
    }
    response = http.post("/core/agents", json=body)
    assert response.status_code in (200, 201), response.text
    yield agent_id, server
    http.delete(f"/core/agents/{agent_id}")
    server.close()


def test_registered_agents_are_probed_and_exported(
    http: httpx.Client, health_agent: tuple[str, ZmqAgent]
) -> None:
    agent_id, server = health_agent

    def probed() -> bool:
        samples = scrape(http)
        ups = [v for labels, v in samples.get("aisys_agent_up", []) if labels["agent"] == agent_id]
        return ups == [1.0]

    wait_for_condition(probed, timeout_s=60, interval_s=0.5)
    assert {"action": "health_check"} in server.received
    samples = scrape(http)
    (latency,) = [
        v
        for labels, v in samples["aisys_agent_probe_latency_seconds"]
        if labels["agent"] == agent_id
    ]
    assert 0 < latency < 0.5


def test_perf_log_round_trip(http: httpx.Client) -> None:
    agent = f"perf-{uuid.uuid4().hex[:6]}"
    now = time.time()
    for i in range(3):
        entry = {"agent": agent, "action": "speak", "duration_s": 0.1 * (i + 1), "at": now + i}
        response = http.post("/observability/perf/metrics", json={**entry, "metadata": {"i": i}})
        assert response.status_code == 201, response.text
    usage = {"agent": agent, "cpu_percent": 12.5, "memory_mb": 300, "metadata": {"gpu": 0}}
    logged = http.post("/observability/perf/usage", json=usage)
    assert logged.status_code == 201 and logged.json()["metadata"] == {"gpu": 0}

    rows = http.get(
        "/observability/perf/metrics", params={"agent": agent, "since": now + 1, "until": now + 3}
    ).json()
    assert [row["metadata"] for row in rows] == [{"i": 2}, {"i": 1}]
    (used,) = http.get("/observability/perf/usage", params={"agent": agent}).json()
    assert (used["cpu_percent"], used["memory_mb"], used["metadata"]) == (12.5, 300, {"gpu": 0})

    def aggregated() -> bool:
        samples = scrape(http)
        return [
            v for labels, v in samples.get("aisys_perf_actions", []) if labels["agent"] == agent
        ] == [3.0]

    wait_for_condition(aggregated, timeout_s=30, interval_s=0.5)


def test_an_alert_rule_goes_pending_then_firing_and_is_published(http: httpx.Client) -> None:
    name = f"ItCpu{uuid.uuid4().hex[:6]}"
    rule = {
        "name": name,
        "metric": "aisys_host_cpu_used_ratio",
        "matchers": {"host": "pc2"},
        "op": ">=",
        "threshold": -1.0,
        "for_s": 3.0,
        "severity": "warning",
        "summary": "integration test rule",
    }
    response = http.put(f"/observability/rules/{name}", json=rule)
    assert response.status_code == 200, response.text
    assert name in [r["name"] for r in http.get("/observability/rules").json()]
    seen: list[str] = []

    def state() -> str | None:
        mine = [a for a in http.get("/observability/alerts").json() if a["rule"] == name]
        if mine and (not seen or seen[-1] != mine[0]["state"]):
            seen.append(mine[0]["state"])
        return mine[0]["state"] if mine else None

    wait_for_condition(lambda: state() == "firing", timeout_s=60, interval_s=0.2)
    assert seen[:2] == ["pending", "firing"]
    history = http.get("/observability/alerts/history", params={"limit": 1000}).json()
    assert [h["state"] for h in history if h["rule"] == name][-2:] == ["firing", "pending"]
    samples = scrape(http)
    assert value(samples, "aisys_alerts", alertname=name, state="firing", host="pc2") == 1.0

    def published() -> bool:
        page = http.get("/errors/", params={"agent": "observability", "error_type": "alert_firing"})
        return any(
            item["event"]["details"]["alert"]["rule"] == name for item in page.json()["items"]
        )

    wait_for_condition(published, timeout_s=60, interval_s=0.5)

    def counted() -> bool:  # the hub reads the ErrorBus's per-agent counts back
        errors = scrape(http).get("aisys_agent_errors_retained", [])
        return any(
            labels == {"agent": "observability", "severity": "warning"} for labels, _ in errors
        )

    wait_for_condition(counted, timeout_s=30, interval_s=0.5)
    assert http.delete(f"/observability/rules/{name}").status_code == 204
    assert http.delete(f"/observability/rules/{name}").status_code == 404


def test_rules_on_series_no_detector_watches_are_refused(http: httpx.Client) -> None:
    rule = {
        "name": "ItOdd",
        "metric": "aisys_agent_up",
        "source": "anomaly_score",
        "threshold": 5.0,
    }
    response = http.put("/observability/rules/ItOdd", json=rule)
    assert response.status_code == 422, response.text
    assert "observability.anomaly.metrics" in response.text
    assert "ItOdd" not in [r["name"] for r in http.get("/observability/rules").json()]


def test_silences_with_regex_matchers_and_a_later_start(http: httpx.Client) -> None:
    starts_at = time.time() + 3600
    body = {
        "matchers": [{"name": "host", "value": "pc[0-9]+", "type": "=~"}],
        "starts_at": starts_at,
        "duration_s": 60,
    }
    response = http.post("/observability/silences", json=body)
    assert response.status_code == 201, response.text
    silence = response.json()
    assert silence["matchers"] == body["matchers"] and silence["starts_at"] == starts_at
    assert http.delete(f"/observability/silences/{silence['id']}").status_code == 204
    bad = {"matchers": [{"name": "host", "value": "pc(", "type": "=~"}], "duration_s": 60}
    response = http.post("/observability/silences", json=bad)
    assert response.status_code == 422 and "regular expression" in response.text


def test_silences_over_http(http: httpx.Client) -> None:
    body = {"matchers": {"host": "pc2"}, "duration_s": 60, "comment": "maintenance"}
    response = http.post("/observability/silences", json=body)
    assert response.status_code == 201, response.text
    silence = response.json()
    assert silence["id"] in [s["id"] for s in http.get("/observability/silences").json()]
    assert http.delete(f"/observability/silences/{silence['id']}").status_code == 204
    assert silence["id"] not in [s["id"] for s in http.get("/observability/silences").json()]
    assert http.delete(f"/observability/silences/{silence['id']}").status_code == 404


def test_reads_need_a_token(anonymous_http: httpx.Client) -> None:
    assert anonymous_http.get("/observability/metrics").status_code == 401


async def _last_log_record(broker: NatsClient, subject: str) -> LogRecord | None:
    nc = await broker.connect()
    try:
        msg = await nc.jetstream().get_last_msg(LOGS_STREAM, subject)
    except nats.js.errors.NotFoundError:
        return None  # no stream yet, or nothing on that subject yet
    finally:
        await nc.close()
    return LogRecord.model_validate_json(msg.data or b"")


def test_a_line_appended_to_a_legacy_log_is_shipped_and_counted(
    http: httpx.Client, aisys_system: Settings
) -> None:
    root = aisys_system.observability.logs.legacy_root
    assert root is not None
    (root / "logs").mkdir(parents=True, exist_ok=True)
    text = f"{uuid.uuid4().hex} redis: Connection refused"
    with (root / "logs" / "it-agent.log").open("a") as f:
        f.write(text + "\n")
    # The session node carries both tags: one shipper, named by the first (mainpc).
    subject = "logs.mainpc.legacy"
    broker = nats_client(aisys_system)
    shipped: list[LogRecord] = []

    def arrived() -> bool:
        record = asyncio.run(_last_log_record(broker, subject))
        if record is not None and record.line == text:
            shipped.append(record)
        return bool(shipped)

    wait_for_condition(arrived, timeout_s=90, interval_s=0.5)
    (record,) = shipped
    assert (record.host, record.source) == ("mainpc", "legacy")
    assert record.path == str(root / "logs" / "it-agent.log")
    assert (record.error_type, record.severity) == ("connection_error", "error")

    def counted() -> bool:
        samples = scrape(http)
        return any(
            labels == {"host": "mainpc", "source": "legacy", "class": "connection_error"} and v >= 1
            for labels, v in samples.get("aisys_log_lines_shipped_total", [])
        )

    wait_for_condition(counted, timeout_s=30, interval_s=0.5)
    samples = scrape(http)
    assert value(samples, "aisys_log_shipper_connected", host="mainpc") == 1.0
    # The default Ray source follows this session's own Ray logs.
    assert value(samples, "aisys_log_files", host="mainpc", source="ray") > 0
    assert [labels for labels, _ in samples["aisys_log_shipper_up"]] == [{"host": "mainpc"}]
