"""``aisys migrate status`` output: the services not in replace mode, and per port its callers."""

from __future__ import annotations

import io

import pytest

from cluster.base.errors import ConfigError
from cluster.base.settings import LegacyGatewaySettings, LegacyService
from cluster.ops.migrate_status import render_migration, token_from
from legacy_gateway.gateway import migration_status
from legacy_gateway.migration import MigrationMode, PortUsage
from legacy_gateway.mirror import MirrorStats
from legacy_gateway.usage import CallCounter


def test_the_table_names_modes_callers_mirror_counters_and_overflow() -> None:
    settings = LegacyGatewaySettings(
        mirror_to={LegacyService.SERVICE_REGISTRY: "tcp://10.0.0.5:7100"},
        delegate_to={LegacyService.TASK_SCHEDULER: "tcp://10.0.0.6:7115"},
    )
    counter = CallCounter(max_keys=1, clock=lambda: 1_700_000_000.0)
    counter.count("get_agent_endpoint", "ResourceManager", "10.0.0.7")
    counter.count("register_agent", "NLUAgent", "10.0.0.7")  # over the table: "(other)"
    row = PortUsage(
        host="mainpc",
        service=LegacyService.SERVICE_REGISTRY,
        legacy_name="ServiceRegistry",
        port=7100,
        mode=MigrationMode.MIRROR,
        legacy_address="tcp://10.0.0.5:7100",
        calls=counter.snapshot(),
        overflowed=counter.overflowed,
        mirror=MirrorStats(
            queued=0,
            queue_max=1000,
            recorded=12,
            refused=1,
            skipped=2,
            failed=0,
            dropped=0,
            last_problem="Agent X: quota",
        ),
    )
    status = migration_status(settings, [row])
    modes = {s.service: s.mode for s in status.services}
    assert modes[LegacyService.TASK_SCHEDULER] is MigrationMode.DELEGATE
    assert modes[LegacyService.RESOURCE_MANAGER] is MigrationMode.REPLACE
    out = io.StringIO()
    render_migration(status, out)
    text = out.getvalue()
    assert "2 by legacy agents" in text
    assert "task_scheduler    TaskScheduler    delegate  tcp://10.0.0.6:7115" in text
    assert "mainpc:7100 service_registry (ServiceRegistry, mirror -> tcp://10.0.0.5:7100)" in text
    assert "12 recorded, 1 refused by aisys, 2 refused by the legacy agent" in text
    assert "last problem: Agent X: quota" in text
    assert "get_agent_endpoint  ResourceManager  10.0.0.7" in text
    assert "(1 calls under (other)" in text


def test_a_token_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AISYS_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="--token or set AISYS_TOKEN"):
        token_from(None)
    monkeypatch.setenv("AISYS_TOKEN", "from-env")
    assert token_from(None) == "from-env" and token_from("given") == "given"
