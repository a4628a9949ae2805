"""NATS admits only aisys: anonymous clients and wrong passwords are refused, and a publish
forged by such a client never reaches the ERRORS stream.

Against real nats-server processes: the fixture's standalone server and the session system's
embedded server (whose password ``aisys up`` generated into its data dir).
"""

from __future__ import annotations

import asyncio
import json
import socket
import stat
import time
import uuid

import nats
import pytest
from nats.aio.client import Client

from actors.errors.models import ErrorEvent
from cluster.base.constants import ERRORS_STREAM
from cluster.base.nats_client import NatsClient, nats_client
from cluster.base.settings import Settings
from cluster.ops.nats_server import NatsServer
from tests.conftest import wait_for_condition

pytestmark = pytest.mark.integration


async def _connect_once(url: str, **credentials: str) -> Client:
    async def quiet(_: Exception) -> None:
        return None

    return await asyncio.wait_for(
        nats.connect(
            url,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            connect_timeout=2,
            error_cb=quiet,
            **credentials,
        ),
        timeout=10,
    )


def _refusal(url: str, **credentials: str) -> str:
    """Connect with nats-py; return the server's refusal (fails the test if it admits us)."""

    async def attempt() -> str:
        try:
            nc = await _connect_once(url, **credentials)
        except nats.errors.Error as exc:
            return str(exc)
        await nc.close()
        raise AssertionError(f"nats-server at {url} admitted a client with {credentials or 'none'}")

    return asyncio.run(attempt())


def _raw_publish(port: int, connect: dict[str, object], subject: str, payload: bytes) -> str:
    """Speak the NATS protocol by hand, as a client that ignores errors would: CONNECT, PUB and
    PING in one write; return everything the server said until it closed or answered PONG."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        received = b""
        while b"\r\n" not in received:  # the server's INFO line
            chunk = sock.recv(65536)
            assert chunk, "nats-server closed before sending INFO"
            received += chunk
        assert received.startswith(b"INFO "), received[:100]
        sock.sendall(
            b"CONNECT " + json.dumps(connect).encode() + b"\r\n"
            b"PUB " + subject.encode() + b" " + str(len(payload)).encode() + b"\r\n"
            + payload + b"\r\nPING\r\n"
        )  # fmt: skip
        replies = b""
        deadline = time.monotonic() + 10
        while b"PONG" not in replies and time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break  # the server closed the connection
            replies += chunk
        return replies.decode(errors="replace")


def _stored_on(broker: NatsClient, subject: str) -> int:
    async def count() -> int:
        nc = await broker.connect(connect_timeout=2)
        try:
            info = await nc.jetstream().stream_info(ERRORS_STREAM, subjects_filter=subject)
            return int((info.state.subjects or {}).get(subject, 0))
        finally:
            await nc.close()

    return asyncio.run(count())


# A standalone server (tests/conftest.py's fixture)


def test_a_server_admits_its_user_and_refuses_anonymous_and_wrong_passwords(
    nats_server: NatsServer,
) -> None:
    url = nats_server.client_url
    assert "Authorization Violation" in _refusal(url)
    assert "Authorization Violation" in _refusal(url, user="aisys", password="wrong")
    assert "Authorization Violation" in _refusal(
        url, user="admin", password=str(nats_server.password)
    )

    async def admitted() -> int:
        nc = await nats_server.client.connect()
        try:
            return int((await nc.jetstream().account_info()).streams)
        finally:
            await nc.close()

    assert asyncio.run(admitted()) == 0


def test_a_server_is_never_started_without_a_password(nats_server: NatsServer) -> None:
    from cluster.base.errors import ConfigError

    bare = NatsServer(
        binary=nats_server.binary,
        port=nats_server.port + 1,
        store_dir=nats_server.store_dir / "bare",
        password_source="a password in /nowhere/nats_password",
    )
    with pytest.raises(ConfigError, match="admits no anonymous clients"):
        bare.start()
    assert bare.process() is None
    assert not (nats_server.store_dir / "bare" / "nats-server.conf").exists()


# The session system's embedded server, as aisys up started it


def test_the_system_generated_its_password_once_and_keeps_it_out_of_the_config(
    aisys_system: Settings,
) -> None:
    path = aisys_system.nats_password_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    password = path.read_text().strip()
    assert len(password) == 64
    config = (aisys_system.data_dir / "nats" / "nats-server.conf").read_text()
    assert password not in config
    assert "authorization" in config and "no_auth_user" not in config


def test_the_system_refuses_anonymous_nats_clients(aisys_system: Settings) -> None:
    url = nats_client(aisys_system).url
    assert "Authorization Violation" in _refusal(url)
    assert "Authorization Violation" in _refusal(url, user="aisys", password="guess")


def test_a_forged_error_event_never_reaches_the_stream(aisys_system: Settings) -> None:
    broker = nats_client(aisys_system)
    port = aisys_system.ports.nats
    forged = ErrorEvent(agent=f"forged-{uuid.uuid4().hex[:8]}", message="fake outage")
    subject = forged.subject()
    payload = forged.model_dump_json().encode()

    anonymous = _raw_publish(port, {"verbose": False, "protocol": 1}, subject, payload)
    assert "Authorization Violation" in anonymous and "PONG" not in anonymous, anonymous
    guessed = {"verbose": False, "protocol": 1, "user": "aisys", "pass": "guess"}
    wrong = _raw_publish(port, guessed, subject, payload)
    assert "Authorization Violation" in wrong and "PONG" not in wrong, wrong

    # The same bytes with aisys's credentials are stored: so the stream is where a forgery
    # that got through would be, and it is not there.
    user, password = broker.credentials()
    control = ErrorEvent(agent=f"control-{uuid.uuid4().hex[:8]}", message="real")
    admitted = _raw_publish(
        port,
        {"verbose": False, "protocol": 1, "user": user, "pass": password},
        control.subject(),
        control.model_dump_json().encode(),
    )
    assert "PONG" in admitted and "-ERR" not in admitted, admitted
    wait_for_condition(lambda: _stored_on(broker, control.subject()) == 1, timeout_s=30)
    assert _stored_on(broker, subject) == 0
