"""Log shipping pieces that need no broker: classifier, position store, settings, placement."""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path

import pytest
from prometheus_client.registry import CollectorRegistry

from actors.logship.actor import shipper_hosts
from actors.logship.classify import LineClassifier
from actors.logship.models import LogRecord, ShipperStats, SourceStats
from actors.logship.store import PositionStore
from actors.logship.tail import FileKey, Position
from cluster.base.errors import ConfigError
from cluster.base.settings import (
    LogPattern,
    LogShippingSettings,
    ObservabilitySettings,
    load_settings,
)
from cluster.ops.serve_config import build_serve_config
from deployments.observability.alert_models import Notification
from deployments.observability.alert_store import AlertStore
from deployments.observability.app import ObservabilityAppArgs
from deployments.observability.hub import HubCore, HubSources
from deployments.observability.perflog import PerfLog
from deployments.observability.state import AgentProbe, HostSample
from tests.unit._observability_helpers import Clock


def test_the_legacy_scanner_patterns_classify_case_insensitively() -> None:
    classifier = LineClassifier(LogShippingSettings().patterns)

    def kind(text: str) -> tuple[str, str] | None:
        match = classifier.classify(text)
        return None if match is None else (match.error_type, match.severity)

    assert kind("redis: Connection refused (111)") == ("connection_error", "error")
    assert kind("CONNECTION REFUSED") == ("connection_error", "error")
    assert kind("request Timeout after 5s") == ("timeout_error", "warning")
    assert kind("CUDA out of memory. Tried to allocate") == ("resource_error", "critical")
    assert kind("all good") is None


def test_the_first_matching_pattern_wins() -> None:
    classifier = LineClassifier(
        [
            LogPattern(pattern=r"disk \w+ full", error_type="disk_full", severity="critical"),
            LogPattern(pattern="full", error_type="something_full", severity="info"),
        ]
    )
    assert classifier.classify("disk sda full").error_type == "disk_full"  # type: ignore[union-attr]
    assert classifier.classify("queue full").error_type == "something_full"  # type: ignore[union-attr]


def test_an_invalid_pattern_is_refused_at_load_with_the_fix(tmp_path: Path) -> None:
    bad = {"pattern": "refused (", "error_type": "x", "severity": "error"}
    with pytest.raises(ConfigError, match=r"not a valid regular expression.*backslash"):
        load_settings(data_dir=tmp_path, observability={"logs": {"patterns": [bad]}})


def test_source_names_and_placeholders_are_checked() -> None:
    with pytest.raises(ValueError, match="NATS subject token"):
        LogShippingSettings(sources={"a.b": ["/x/*.log"]})
    with pytest.raises(ValueError, match="at least one"):
        LogShippingSettings(sources={"a": []})
    with pytest.raises(ValueError, match="only placeholder"):
        LogShippingSettings(sources={"a": ["{home}/x.log"]})
    with pytest.raises(ValueError, match="duplicate_window_s"):
        LogShippingSettings(retention_days=0.001)


def test_sources_resolve_against_the_legacy_root_and_the_ray_temp_dir(tmp_path: Path) -> None:
    ray_dir = tmp_path / "ray"
    defaults = LogShippingSettings()
    assert defaults.resolved_sources(ray_dir) == {
        "legacy": [],  # relative, and no legacy_root
        "ray": [f"{ray_dir}/session_latest/logs/*.log"],
    }
    rooted = LogShippingSettings(legacy_root=tmp_path / "legacy", sources={"a": ["logs/*.log"]})
    assert rooted.resolved_sources(ray_dir) == {"a": [f"{tmp_path}/legacy/logs/*.log"]}
    absolute = LogShippingSettings(sources={"a": ["/var/log/x.log"]})
    assert absolute.resolved_sources(ray_dir) == {"a": ["/var/log/x.log"]}


def test_both_streams_must_fit_in_the_embedded_jetstream_store(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="observability.logs.max_stream_mb"):
        load_settings(
            data_dir=tmp_path,
            nats={"max_store_mb": 1024},
            errors={"max_stream_mb": 800},
            observability={"logs": {"max_stream_mb": 300}},
        )
    load_settings(
        data_dir=tmp_path,
        nats={"max_store_mb": 1024},
        errors={"max_stream_mb": 800},
        observability={"logs": {"enabled": False, "max_stream_mb": 300}},
    )


def test_the_hub_args_carry_the_ray_temp_dir(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    apps = build_serve_config(settings)["applications"]
    (app,) = [a for a in apps if a["name"] == "observability"]
    args = ObservabilityAppArgs.model_validate(app["args"])
    assert args.ray_temp_dir == str(tmp_path / "ray")
    assert args.external_url == f"http://127.0.0.1:{settings.ports.http}"
    moved = load_settings(
        data_dir=tmp_path, observability={"alerting": {"external_url": "https://hub.lan/"}}
    )
    apps = build_serve_config(moved)["applications"]
    (app,) = [a for a in apps if a["name"] == "observability"]
    assert app["args"]["external_url"] == "https://hub.lan"
    assert args.settings.logs == settings.observability.logs


def test_positions_survive_a_reopen_and_gone_files_are_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "positions.sqlite3"
    store = PositionStore(path)
    a = Position("/l/a.log", FileKey(1, 10), 120, False, "ab12", 20)
    b = Position("/l/b.log", FileKey(1, 11), 7, True, "cd34", 7)
    store.save("legacy", [a, b], [])
    store.save("ray", [Position("/r/x.log", FileKey(2, 5))], [])
    store.save("legacy", [Position("/l/a.log.1", FileKey(1, 10), 150, False, "ab12", 20)], [])
    store.close()
    reopened = PositionStore(path)
    assert sorted(reopened.load("legacy"), key=lambda p: p.key) == [
        Position("/l/a.log.1", FileKey(1, 10), 150, False, "ab12", 20),
        b,
    ]
    reopened.save("legacy", [], [FileKey(1, 11)])
    assert [p.key for p in reopened.load("legacy")] == [FileKey(1, 10)]
    assert [p.key for p in reopened.load("ray")] == [FileKey(2, 5)]


def test_one_shipper_per_node_named_by_its_first_tag() -> None:
    both = [{"Alive": True, "Resources": {"CPU": 2.0, "mainpc": 1.0, "pc2": 1.0}}]
    assert shipper_hosts(["mainpc", "pc2"], both) == ["mainpc"]
    two = [
        {"Alive": True, "Resources": {"pc2": 1.0}},
        {"Alive": True, "Resources": {"mainpc": 1.0}},
        {"Alive": False, "Resources": {"mainpc": 1.0, "pc2": 1.0}},
    ]
    assert shipper_hosts(["mainpc", "pc2"], two) == ["mainpc", "pc2"]
    assert shipper_hosts(["mainpc", "pc2"], two[:1]) == ["mainpc", "pc2"]  # mainpc not yet up


def test_a_record_names_its_subject_and_a_stable_message_id() -> None:
    record = LogRecord.model_validate(
        {
            "host": "pc2",
            "source": "legacy",
            "path": "/l/a.log",
            "file_id": "1:10:ab12",
            "offset": 120,
            "read_at": "2026-01-01T00:00:00Z",
            "line": "x",
        }
    )
    assert record.subject() == "logs.pc2.legacy"
    assert record.msg_id() == "pc2:legacy:1:10:ab12:120"


def test_package_surface_is_pinned() -> None:
    module = importlib.import_module("actors.logship")
    assert sorted(module.__all__) == [
        "FileKey",
        "Line",
        "LineClassifier",
        "LogRecord",
        "LogShipper",
        "LogStream",
        "Position",
        "PositionStore",
        "ShipperStats",
        "SourceStats",
        "SourceTailer",
    ]


def test_a_hub_round_exports_the_log_shippers_counters(tmp_path: Path) -> None:
    clock = Clock()
    settings = ObservabilitySettings()
    shippers = [
        ShipperStats(
            host="mainpc",
            connected=True,
            sources=[
                SourceStats(
                    source="legacy",
                    files=3,
                    unshipped_bytes=120,
                    lines={"none": 40, "timeout_error": 2},
                    bytes=4096,
                    duplicates=5,
                )
            ],
        ),
        ShipperStats(host="pc2", connected=False, error="log shipper of host 'pc2' failed"),
    ]

    async def no_hosts() -> list[HostSample]:
        return []

    async def no_probe(_: object) -> dict[str, AgentProbe]:
        return {}

    async def no_counts() -> None:
        return None

    async def notify(_: list[Notification]) -> None:
        return None

    async def logs() -> list[ShipperStats]:
        return shippers

    registry = CollectorRegistry()
    sources = HubSources(no_hosts, list, no_probe, no_counts, notify, logs=logs)
    perflog = PerfLog(tmp_path / "perf.db", settings.perflog)
    hub = HubCore(settings, registry, perflog, AlertStore(tmp_path / "a.db"), sources, clock)
    asyncio.run(hub.tick())
    value = registry.get_sample_value
    key = {"host": "mainpc", "source": "legacy"}
    assert value("aisys_log_lines_shipped_total", {**key, "class": "timeout_error"}) == 2
    assert value("aisys_log_lines_shipped_total", {**key, "class": "none"}) == 40
    assert value("aisys_log_bytes_shipped_total", key) == 4096
    assert value("aisys_log_lines_duplicate_total", key) == 5
    assert value("aisys_log_files", key) == 3
    assert value("aisys_log_unshipped_bytes", key) == 120
    assert value("aisys_log_shipper_up", {"host": "mainpc"}) == 1
    assert value("aisys_log_shipper_connected", {"host": "mainpc"}) == 1
    assert value("aisys_log_shipper_up", {"host": "pc2"}) == 0
    assert value("aisys_log_shipper_connected", {"host": "pc2"}) == 0
