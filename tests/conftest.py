"""Shared test harness: Ray token, free ports, polling, and a real nats-server.

Ray reads its auth mode and token once, when it is first imported, so this module (imported by
pytest before any test module) puts a per-session token into the environment first.
"""

from __future__ import annotations

import os
import random
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SESSION_RAY_TOKEN = secrets.token_hex(32)
os.environ["RAY_AUTH_MODE"] = "token"
os.environ["RAY_AUTH_TOKEN"] = SESSION_RAY_TOKEN
os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

from cluster.ops.nats_server import NatsServer, nats_binary  # noqa: E402

#: Test ports come from below the kernel's ephemeral range (32768-60999 here) and above Ray's
#: worker ports (10002-19999): a port bound to 0 by any process (Ray's gRPC servers, its
#: monitor) then never lands on one a test system was promised. Each is handed out once: two
#: services of one system on one port would answer for each other.
_TEST_PORTS = range(20000, 32768)
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port that is free now, outside the ephemeral range, not handed out before."""
    for _ in range(1000):
        port = random.choice(_TEST_PORTS)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no free test port in {_TEST_PORTS}")


def wait_for_condition(
    predicate: Callable[[], object], timeout_s: float = 30.0, interval_s: float = 0.05
) -> None:
    """Poll ``predicate`` until it returns truthy; fail with its last error on timeout."""
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
            last_error = None
        except Exception as exc:  # polled conditions may raise until they hold
            last_error = exc
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s}s; last error: {last_error!r}")


def short_tmp_dir(prefix: str) -> Path:
    """A fresh directory with a short path (Ray's unix sockets need one)."""
    import tempfile

    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    """A real ``nats-server`` with JetStream on a random port, admitting only its user (connect
    with ``server.client``); errors if the binary is missing."""
    import secrets
    import shutil

    store = short_tmp_dir("nats-")
    server = NatsServer(
        binary=nats_binary(), port=free_port(), store_dir=store, password=secrets.token_hex(16)
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(store, ignore_errors=True)
