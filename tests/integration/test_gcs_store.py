"""The head's GCS store: a real redis-server, owner-only, password-protected, durable."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import redis

from cluster.ops.gcs_store import GcsStore
from tests.conftest import free_port


@pytest.fixture
def store(tmp_path: Path) -> GcsStore:
    return GcsStore(port=free_port(), store_dir=tmp_path / "gcs", password="t0ken" * 8)


def test_it_starts_once_asks_for_its_password_and_keeps_writes_across_a_restart(
    store: GcsStore,
) -> None:
    try:
        assert store.start() is True
        assert store.start() is False  # already running: found by its pid file and marker
        config = store.store_dir / "redis.conf"
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        assert stat.S_IMODE(store.store_dir.stat().st_mode) == 0o700
        anonymous = redis.Redis(host="127.0.0.1", port=store.port, socket_timeout=5)
        with pytest.raises(redis.AuthenticationError):
            anonymous.get("k")
        client = redis.Redis(
            host="127.0.0.1", port=store.port, password="t0ken" * 8, socket_timeout=5
        )
        client.set("session_name", "kept")
        client.close()
        assert store.stop() is True  # SIGTERM: redis syncs its append-only file first
        assert store.process() is None and store.stop() is False

        assert store.start() is True
        again = redis.Redis(
            host="127.0.0.1", port=store.port, password="t0ken" * 8, socket_timeout=5
        )
        assert again.get("session_name") == b"kept"
        again.close()
    finally:
        store.stop()


def test_a_server_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    taken = GcsStore(port=free_port(), store_dir=tmp_path / "a", password="p" * 16)
    clash = GcsStore(port=taken.port, store_dir=tmp_path / "b", password="p" * 16)
    try:
        taken.start()
        with pytest.raises(Exception, match="GCS store.*did not become ready"):
            clash.start(timeout_s=10)
    finally:
        taken.stop()
        clash.stop()
