"""One real aisys system for the whole integration session, started like ``aisys up`` does.

A Ray head carrying both host tags, the embedded nats-server and every Serve application, all on
random ports with a data dir of their own; stopped (only those processes) at the end.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from cluster import system
from cluster._progress import Progress
from cluster.settings import NatsSettings, PortSettings, RaySettings, Settings, load_settings
from tests.conftest import SESSION_RAY_TOKEN, free_port, short_tmp_dir

pytestmark = pytest.mark.integration


def make_settings(**overrides: object) -> Settings:
    """Settings for a private test system: random ports, a fresh short data dir."""
    ports = PortSettings(
        gcs=free_port(),
        dashboard=free_port(),
        http=free_port(),
        grpc=free_port(),
        nats=free_port(),
        ray_client=free_port(),
        dashboard_agent=free_port(),
    )
    values: dict[str, object] = {
        "data_dir": short_tmp_dir("aisys-it-"),
        "ports": ports,
        "ray": RaySettings(auth_token=SecretStr(SESSION_RAY_TOKEN)),
        "nats": NatsSettings(bind="127.0.0.1"),
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture(scope="session")
def aisys_system() -> Iterator[Settings]:
    """The running system's settings; the system is up for the whole session."""
    settings = make_settings()
    progress = Progress(quiet=True)
    try:
        system.up(settings, progress)
        yield settings
    finally:
        system.down(settings, progress)
        shutil.rmtree(settings.data_dir, ignore_errors=True)


@pytest.fixture
def http(aisys_system: Settings) -> Iterator[httpx.Client]:
    """An HTTP client for the Serve ingress of the session system."""
    with httpx.Client(
        base_url=f"http://127.0.0.1:{aisys_system.ports.http}", timeout=30
    ) as client:
        yield client
