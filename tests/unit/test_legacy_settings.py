"""The ``legacy_gateway`` settings section: defaults from the issue, validation naming the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.base.errors import ConfigError
from cluster.base.settings import LegacyService, load_settings


def test_defaults_bind_the_legacy_ports_of_each_host(tmp_path: Path) -> None:
    gateway = load_settings(data_dir=tmp_path).legacy_gateway
    assert gateway.host == "mainpc"
    assert gateway.bind == "0.0.0.0"
    # docs/legacy-protocol.md section 5: the ports the legacy code really bound on each host.
    assert sorted(gateway.ports["mainpc"].values()) == [
        5569,
        5572,
        5588,
        5591,
        5613,
        7100,
        7120,
        7121,
        7125,
        8100,
        26002,
        26003,
    ]
    # Not 7100 on PC2: a legacy PC2 agent binds it; no health port that is another's main port.
    assert sorted(gateway.ports["pc2"].values()) == [
        5626,
        5627,
        5632,
        5633,
        7101,
        7103,
        7113,
        7114,
        7115,
        7116,
        7117,
        7120,
        7122,
        7128,
        8116,
        8121,
    ]
    assert gateway.ports["pc2"][LegacyService.PERFORMANCE_LOGGER] == 5632
    assert gateway.ports["mainpc"][LegacyService.VRAM_OPTIMIZER_MMA] == 5588
    assert gateway.max_frame_bytes == 1024 * 1024
    assert gateway.reply_timeout_s < 5.0  # legacy clients give up after 5 s
    assert gateway.max_pending == 1024


def test_environment_overrides_nested_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AISYS_LEGACY_GATEWAY__MAX_FRAME_BYTES", "4096")
    monkeypatch.setenv("AISYS_LEGACY_GATEWAY__REPLY_TIMEOUT_S", "1.5")
    gateway = load_settings(data_dir=tmp_path).legacy_gateway
    assert (gateway.max_frame_bytes, gateway.reply_timeout_s) == (4096, 1.5)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"legacy_gateway": {"host": "laptop"}}, "legacy_gateway.host is 'laptop'"),
        (
            {"legacy_gateway": {"ports": {"laptop": {"service_registry": 7100}}}},
            "legacy_gateway.ports.host is 'laptop'",
        ),
        ({"legacy_gateway": {"host": "pc2"}}, "place the legacy gateway on the host"),
        (
            {
                "legacy_gateway": {
                    "ports": {"mainpc": {"service_registry": 7100, "system_digital_twin": 7100}}
                }
            },
            "binds a port twice",
        ),
        ({"legacy_gateway": {"ports": {"mainpc": {"no_such_service": 1}}}}, "service_registry"),
        ({"legacy_gateway": {"num_replicas": 2}}, "num_replicas"),
        (
            {"legacy_gateway": {"delegate_to": {"service_registry": "10.0.0.7:7100"}}},
            "give the legacy agent's address as tcp://host:port",
        ),
        ({"legacy_gateway": {"max_frame_bytes": 10}}, "max_frame_bytes"),
        (
            {
                "legacy_gateway": {
                    "delegate_to": {"service_registry": "tcp://10.0.0.7:7100"},
                    "mirror_to": {"service_registry": "tcp://10.0.0.7:7100"},
                }
            },
            "give each legacy service one mode",
        ),
        (
            {"legacy_gateway": {"mirror_to": {"request_coordinator": "tcp://10.0.0.7:26002"}}},
            "take no registrations or events aisys could record; use delegate_to",
        ),
    ],
)
def test_invalid_sections_are_refused_with_the_fix(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(data_dir=tmp_path, **overrides)
    assert message in str(info.value)


def test_delegate_mode_is_per_service_and_off_by_default(tmp_path: Path) -> None:
    assert load_settings(data_dir=tmp_path).legacy_gateway.delegate_to == {}
    gateway = load_settings(
        data_dir=tmp_path,
        legacy_gateway={"delegate_to": {"system_digital_twin": "tcp://10.0.0.7:7120"}},
    ).legacy_gateway
    assert gateway.delegate_to == {LegacyService.SYSTEM_DIGITAL_TWIN: "tcp://10.0.0.7:7120"}


def test_mirror_mode_is_per_service_and_names_what_it_records(tmp_path: Path) -> None:
    from cluster.base._settings_services import MIRRORABLE
    from legacy_gateway.mirror import MIRRORED

    assert set(MIRRORED) == MIRRORABLE  # the settings check against the actions recorded
    gateway = load_settings(
        data_dir=tmp_path,
        legacy_gateway={"mirror_to": {"performance_logger": "tcp://10.0.0.8:5632"}},
    ).legacy_gateway
    assert gateway.mirror_to == {LegacyService.PERFORMANCE_LOGGER: "tcp://10.0.0.8:5632"}
    assert gateway.delegate_to == {}
