"""NATS credentials: the embedded server's config, the password file, and what clients send."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from cluster.base.constants import APP_ERRORS, APP_LEGACY, APP_OBSERVABILITY
from cluster.base.errors import ConfigError
from cluster.base.nats_client import (
    NatsClient,
    ensure_nats_password,
    nats_client,
    read_nats_password,
)
from cluster.base.settings import load_settings
from cluster.ops.nats_server import PASSWORD_ENV, NatsServer
from cluster.ops.serve_config import build_serve_config, serve_config_yaml


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AISYS_CONFIG", "AISYS_DATA_DIR", "AISYS_NATS__PASSWORD", "AISYS_NATS__URL"):
        monkeypatch.delenv(name, raising=False)


def test_the_config_admits_one_user_by_an_environment_password_and_no_anonymous(
    tmp_path: Path,
) -> None:
    server = NatsServer(Path("nats-server"), 4222, tmp_path, password="s3cret-value")
    config = server.config_text()
    assert "authorization {" in config
    assert f'{{user: "aisys", password: ${PASSWORD_ENV}}}' in config
    assert config.count("user:") == 1
    assert "no_auth_user" not in config  # an anonymous client would become that user
    assert "s3cret-value" not in config  # the secret reaches the server by its environment
    assert 'listen: "127.0.0.1:4222"' in config and "jetstream {" in config


def test_the_password_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    assert read_nats_password(settings) is None
    first = ensure_nats_password(settings)
    assert len(first) == 64 and int(first, 16) >= 0
    path = settings.nats_password_path
    assert path == tmp_path / "data" / "nats_password"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_nats_password(settings) == first == read_nats_password(settings)


def test_the_setting_overrides_the_file(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, nats={"password": SecretStr("from-env")})
    assert ensure_nats_password(settings) == "from-env"
    assert not settings.nats_password_path.exists()


def test_an_embedded_broker_client_reads_the_password_file_where_it_runs(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    client = nats_client(settings)
    assert client.url == f"nats://127.0.0.1:{settings.ports.nats}"
    assert (client.user, client.password) == ("aisys", None)
    assert client.password_file == str(tmp_path / "nats_password")
    with pytest.raises(ConfigError, match=r"no NATS password at .*nats_password.*copy it"):
        client.credentials()
    password = ensure_nats_password(settings)
    assert client.credentials() == ("aisys", password)


def test_an_empty_password_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "nats_password").write_text("\n")
    client = NatsClient(
        url="nats://h:4222", user="aisys", password_file=str(tmp_path / "nats_password")
    )
    with pytest.raises(ConfigError, match="is empty"):
        client.credentials()


def test_an_external_broker_takes_the_url_credentials_or_the_settings() -> None:
    url = "nats://svc:pw@broker.lan:4222"
    bare = nats_client(load_settings(nats={"url": url}))
    assert bare == NatsClient(url=url)
    assert bare.credentials() == (None, None)
    assert bare.display_url == "nats://broker.lan:4222"
    assert "pw" not in repr(bare.model_copy(update={"password": "pw2"}))
    explicit = nats_client(
        load_settings(nats={"url": "nats://broker.lan:4222", "user": "svc", "password": "pw"})
    )
    assert explicit.credentials() == ("svc", "pw")
    assert explicit.display_url == "nats://broker.lan:4222"


def test_serve_config_names_the_password_file_not_the_password(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    password = ensure_nats_password(settings)
    config = build_serve_config(settings)
    apps = {app["name"]: app for app in config["applications"]}
    for name in (APP_ERRORS, APP_LEGACY, APP_OBSERVABILITY):
        broker = NatsClient.model_validate(apps[name]["args"]["nats"])
        assert broker.password_file == str(settings.nats_password_path)
        assert broker.credentials() == ("aisys", password)
    assert password not in serve_config_yaml(config)


def test_an_overriding_password_travels_to_the_services(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, nats={"password": SecretStr("override")})
    apps = {app["name"]: app for app in build_serve_config(settings)["applications"]}
    broker = NatsClient.model_validate(apps[APP_ERRORS]["args"]["nats"])
    assert broker.credentials() == ("aisys", "override")
