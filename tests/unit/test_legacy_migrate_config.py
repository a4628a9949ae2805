"""``aisys migrate-config`` on fixtures in both legacy layouts (agent_groups, pc2_services)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cluster.base.errors import ConfigError
from cluster.ops.cli import main
from legacy_gateway.migrate_config import DependencyChange, migrate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "legacy"


def _load(name: str) -> dict[str, object]:
    loaded = yaml.safe_load((FIXTURES / name).read_text())
    assert isinstance(loaded, dict)
    return loaded


def _agents(config: dict[str, object]) -> dict[str, list[str]]:
    groups = config.get("agent_groups")
    if isinstance(groups, dict):
        return {n: e["dependencies"] for g in groups.values() for n, e in g.items()}
    services = config["pc2_services"]
    assert isinstance(services, list)
    return {e["name"]: e["dependencies"] for e in services}


def test_mainpc_layout_drops_gateway_answered_and_rewrites_the_rest() -> None:
    legacy = _load("mainpc_startup_config.yaml")
    result = migrate(legacy)
    assert _agents(result.config) == {
        "ModelManagerAgent": [],
        "StreamingTTSAgent": ["CoreOrchestrator", "TTSService"],
        "ProactiveAgent": ["CoreOrchestrator"],
    }
    report = result.report
    assert report.layout == "agent_groups" and report.kept_agents == 3
    assert report.removed == [
        "ServiceRegistry",
        "SystemDigitalTwin",
        "RequestCoordinator",
        "UnifiedSystemAgent",
        "PredictiveHealthMonitor",
        "VRAMOptimizerAgent",
    ]
    assert (
        DependencyChange(
            agent="StreamingTTSAgent",
            dependency="UnifiedSystemAgent",
            replaced_by="CoreOrchestrator",
        )
        in report.rewritten
    )
    assert len(report.dropped) == 3  # every SystemDigitalTwin dependency: the gateway answers it
    assert report.dangling == [
        DependencyChange(agent="StreamingTTSAgent", dependency="TTSService", replaced_by=None)
    ]
    # Untouched: other fields, other sections, and the input object.
    assert result.config["global_settings"] == legacy["global_settings"]
    assert "SystemDigitalTwin" in _agents(legacy)


def test_pc2_layout_keeps_order_and_reports_no_dangling() -> None:
    result = migrate(_load("pc2_startup_config.yaml"))
    assert _agents(result.config) == {
        "TieredResponder": ["ResourceScheduler"],
        "UnifiedUtilsAgent": ["ObservabilityHub"],
        "AdvancedRouter": ["ResourceScheduler"],
        "RemoteConnectorAgent": ["AdvancedRouter"],
    }
    assert result.config["error_bus_port"] == 7150
    assert result.report.layout == "pc2_services"
    assert len(result.report.removed) == 9
    assert result.report.dangling == []
    assert [c.dependency for c in result.report.dropped] == ["ErrorBus"]


@pytest.mark.parametrize("config", [{}, [], "x", {"agent_groups": [1]}, None])
def test_other_files_are_refused_naming_both_layouts(config: object) -> None:
    with pytest.raises(ConfigError, match="'agent_groups' mapping .* 'pc2_services' list"):
        migrate(config)


def test_cli_writes_the_result_and_prints_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "startup_config.yaml"
    source.write_text((FIXTURES / "mainpc_startup_config.yaml").read_text())
    assert main(["migrate-config", str(source)]) == 0
    written = tmp_path / "startup_config.aisys.yaml"
    assert _agents(yaml.safe_load(written.read_text()))["ProactiveAgent"] == ["CoreOrchestrator"]
    out = capsys.readouterr().out
    assert "6 consolidated agents removed" in out
    assert "! StreamingTTSAgent depends on TTSService, which no agent here provides" in out
    assert f"wrote {written}" in out
    assert main(["migrate-config", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_agents_still_delegated_or_mirrored_are_kept_with_their_dependents() -> None:
    legacy = _load("mainpc_startup_config.yaml")
    result = migrate(legacy, {"SystemDigitalTwin": "mirror", "RequestCoordinator": "delegate"})
    agents = _agents(result.config)
    assert agents["SystemDigitalTwin"] == []  # its ServiceRegistry dependency: gateway answers
    assert agents["RequestCoordinator"] == ["SystemDigitalTwin"]
    assert agents["ModelManagerAgent"] == ["SystemDigitalTwin"]  # not dropped: it still runs
    assert "SystemDigitalTwin" not in result.report.removed
    assert "ServiceRegistry" in result.report.removed
    assert [(k.agent, k.mode, k.in_file) for k in result.report.kept] == [
        ("RequestCoordinator", "delegate", True),
        ("SystemDigitalTwin", "mirror", True),
    ]
    assert all(c.dependency != "SystemDigitalTwin" for c in result.report.dropped)
    summary = "\n".join(result.report.summary())
    assert "= kept SystemDigitalTwin (mirror mode" in summary


def test_cli_keeps_the_agents_the_settings_delegate_to(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "startup_config.yaml"
    source.write_text((FIXTURES / "mainpc_startup_config.yaml").read_text())
    settings = tmp_path / "aisys.yaml"
    settings.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "legacy_gateway": {
                    "delegate_to": {"unified_system_health": "tcp://10.0.0.7:5569"},
                    "mirror_to": {"service_registry": "tcp://10.0.0.7:7100"},
                },
            }
        )
    )
    assert main(["--config", str(settings), "migrate-config", str(source)]) == 0
    agents = _agents(yaml.safe_load((tmp_path / "startup_config.aisys.yaml").read_text()))
    assert {"ServiceRegistry", "UnifiedSystemAgent"} <= set(agents)
    assert "SystemDigitalTwin" not in agents
    out = capsys.readouterr().out
    assert "= kept ServiceRegistry (mirror mode" in out
    assert "= kept UnifiedSystemAgent (delegate mode" in out
