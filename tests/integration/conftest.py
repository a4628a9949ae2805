"""One real aisys system for the whole integration session, started like ``aisys up`` does.

A Ray head carrying both host tags, the embedded nats-server and every Serve application, all on
random ports with a data dir of their own; stopped (only those processes) at the end. Its GPUs
are the NVML double's (``tests/fixtures/nvml/double_hosts.json``): the same on every machine.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from cluster.base.settings import (
    CoreSettings,
    ErrorBridgeSettings,
    ErrorBusSettings,
    HostProfile,
    LegacyGatewaySettings,
    LegacyService,
    NatsSettings,
    ObservabilitySettings,
    PortSettings,
    RaySettings,
    ResourceSettings,
    SecuritySettings,
    Settings,
    load_settings,
    settings_yaml,
)
from cluster.ops import system
from cluster.ops._progress import Progress
from cluster.ops.identity import ensure_admin
from tests.conftest import SESSION_RAY_TOKEN, free_port, short_tmp_dir

pytestmark = pytest.mark.integration

#: The NVML double's device table of the session system: mainpc's 4090, pc2's 3060.
NVML_DOUBLE_TABLE = Path(__file__).resolve().parents[1] / "fixtures" / "nvml" / "double_hosts.json"

#: Password of the session system's first admin (``security.admin_password``).
ADMIN_PASSWORD = "integration-admin-password"


def legacy_test_ports() -> dict[str, dict[LegacyService, int]]:
    """The default legacy port map with every port replaced by a free random one.

    A service both hosts list (SystemDigitalTwin) keeps one number for both, as in the defaults:
    the session's single node carries both host tags, like the embedded default, so one of
    the two gateway deployments serves it and the other must start without it.
    """
    chosen: dict[LegacyService, int] = {}
    return {
        host: {service: chosen.setdefault(service, free_port()) for service in services}
        for host, services in LegacyGatewaySettings().ports.items()
    }


def make_settings(nvml_table: Path = NVML_DOUBLE_TABLE, **overrides: object) -> Settings:
    """Settings for a private test system: random ports, a fresh short data dir.

    Args:
        nvml_table: the NVML double's device table (the session system's is a copy that a
            test may rewrite; it lies outside the data dir, which a restore test wipes).
    """
    ports = PortSettings(
        gcs=free_port(),
        dashboard=free_port(),
        http=free_port(),
        grpc=free_port(),
        nats=free_port(),
        ray_client=free_port(),
        dashboard_agent=free_port(),
    )
    data_dir = short_tmp_dir("aisys-it-")
    values: dict[str, object] = {
        "data_dir": data_dir,
        "ports": ports,
        "ray": RaySettings(auth_token=SecretStr(SESSION_RAY_TOKEN)),
        "nats": NatsSettings(bind="127.0.0.1"),
        # Short CoreOrchestrator periods so breaker recovery, health sweeps and twin samples
        # are seen within seconds (tests/integration/test_core_*.py).
        "core": CoreSettings.model_validate(
            {
                "coordinator": {
                    "breaker_reset_s": 2.0,
                    "max_in_flight": 1,
                    "dispatch_timeout_s": 0.5,
                    "dispatch_attempts": 2,
                },
                "twin": {"sample_interval_s": 1.0},
                "supervision": {"sweep_interval_s": 1.0, "probe_timeout_s": 0.5},
            }
        ),
        "security": SecuritySettings(admin_password=SecretStr(ADMIN_PASSWORD), access_ttl_s=3600),
        "errors": ErrorBusSettings(
            bridge=ErrorBridgeSettings(bind="127.0.0.1", sub_port=free_port(), pub_port=free_port())
        ),
        # Never the real legacy ports (7100, 7120, ...): random ones per host.
        "legacy_gateway": LegacyGatewaySettings(
            bind="127.0.0.1",
            ports=legacy_test_ports(),
            interrupt_feed=f"tcp://127.0.0.1:{free_port()}",
            language_feed=f"tcp://127.0.0.1:{free_port()}",
            suggestion_idle_s=3.0,
        ),
        # Two simulated GPU hosts: the NVML double (resources.nvml_double) answers every NVML
        # call instead of the driver, with or without a GPU here, so the tests see the same
        # devices everywhere. The node advertises the double's two devices to Ray (--num-gpus).
        "hosts": {
            "mainpc": HostProfile(tag="mainpc", role="head"),
            "pc2": HostProfile(tag="pc2", role="worker"),
        },
        # One ObservabilityHub round a second and no group_wait, so alert states and their
        # notifications move within seconds; legacy logs under the data dir
        # (tests/integration/test_observability_http.py), log follows idle 1 s (test_logs.py).
        "observability": ObservabilitySettings.model_validate(
            {
                "sample_interval_s": 1.0,
                "probes": {"sweep_interval_s": 1.0, "probe_timeout_s": 0.5},
                "alerting": {"group_wait_s": 0.0, "group_interval_s": 1.0},
                "logs": {"legacy_root": str(data_dir / "legacy"), "sse_keepalive_s": 1.0},
            }
        ),
        "resources": ResourceSettings.model_validate(
            {
                # An RTX 4090 on mainpc and an RTX 3060 (12288 MiB) on pc2, source=nvml-double.
                "nvml_double": str(nvml_table),
                # The optimizer checks GPU usage every second (test_resources_http.py).
                "optimizer": {"interval_s": 1.0},
                # Model workers idle after 2 s are unloaded to admit others (test_gpu_workers.py).
                "workers": {"idle_s": 2.0},
                # A shared 2-core test machine is often at 100 % CPU: no backpressure here
                # (tested in tests/unit/test_resource_tasks.py).
                "cpu_threshold_percent": 100,
                "memory_threshold_percent": 100,
            }
        ),
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture(scope="session")
def aisys_system() -> Iterator[Settings]:
    """The running system's settings; the system is up for the whole session."""
    # A copy of the NVML double's table, so a test may rewrite it (a device's use, or its loss).
    nvml_dir = short_tmp_dir("aisys-nvml-")
    shutil.copyfile(NVML_DOUBLE_TABLE, nvml_dir / NVML_DOUBLE_TABLE.name)
    settings = make_settings(nvml_table=nvml_dir / NVML_DOUBLE_TABLE.name)
    progress = Progress(quiet=True)
    try:
        system.up(settings, progress)
        assert ensure_admin(settings) is None  # a configured password is never echoed
        yield settings
    finally:
        system.down(settings, progress)
        shutil.rmtree(settings.data_dir, ignore_errors=True)
        shutil.rmtree(nvml_dir, ignore_errors=True)


def settings_file(settings: Settings, directory: Path) -> Path:
    """Write ``settings`` as a YAML file the ``aisys`` CLI reads back identically."""
    path = directory / "aisys-settings.yaml"
    path.write_text(settings_yaml(settings))
    assert load_settings(path) == settings
    return path


def login(base_url: str, username: str, password: str) -> str:
    """Log in over HTTP and return the access token."""
    response = httpx.post(
        f"{base_url}/security/token",
        json={"grant_type": "password", "username": username, "password": password},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


@pytest.fixture(scope="session")
def admin_token(aisys_system: Settings) -> str:
    """An access token of the session system's admin (every scope)."""
    base_url = f"http://127.0.0.1:{aisys_system.ports.http}"
    return login(base_url, aisys_system.security.admin_user, ADMIN_PASSWORD)


@pytest.fixture
def http(aisys_system: Settings, admin_token: str) -> Iterator[httpx.Client]:
    """An HTTP client for the Serve ingress of the session system, sending the admin token."""
    with httpx.Client(
        base_url=f"http://127.0.0.1:{aisys_system.ports.http}",
        timeout=30,
        headers={"Authorization": f"Bearer {admin_token}"},
    ) as client:
        yield client


@pytest.fixture
def anonymous_http(aisys_system: Settings) -> Iterator[httpx.Client]:
    """An HTTP client for the Serve ingress that sends no token."""
    with httpx.Client(base_url=f"http://127.0.0.1:{aisys_system.ports.http}", timeout=30) as client:
        yield client
