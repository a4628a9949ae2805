"""How every aisys process reaches NATS: the broker's URL and aisys's credentials.

Every JetStream stream aisys keeps (error events, shipped logs) is created or brought to its
configuration by :func:`apply_stream_config`.

The embedded ``nats-server`` admits one user, ``nats.user`` (``aisys``), and no anonymous
client. Its password is generated once by the head into ``<data_dir>/nats_password`` (mode
0600) and copied to the NATS host with the Ray token; ``AISYS_NATS__PASSWORD`` overrides the
file. An external broker (``nats.url``) takes the credentials its URL carries
(``nats://USER:PASSWORD@HOST:4222``), or ``nats.user`` with an explicit ``nats.password``.

A :class:`NatsClient` travels to the Serve applications as part of their arguments. It names
the password *file*, which each replica reads on its own host, so the secret is not written
into Serve's config in the GCS (unless ``nats.password`` overrides the file: then the value
itself has to travel).

Example::

    client = nats_client(settings)
    nc = await client.connect(connect_timeout=2)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import nats
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StreamConfig, StreamInfo
from pydantic import BaseModel, ConfigDict, Field

from cluster.base.errors import ConfigError
from cluster.base.files import ensure_secret, read_secret
from cluster.base.settings import Settings

__all__ = [
    "NatsClient",
    "apply_stream_config",
    "ensure_nats_password",
    "nats_client",
    "read_nats_password",
]


class NatsClient(BaseModel):
    """A NATS URL with the credentials to use on it.

    Args:
        url: the broker (may carry ``USER:PASSWORD@`` of an external broker).
        user: the user to connect as; None connects with what the URL carries (or anonymously).
        password: the password itself (an explicit ``nats.password``).
        password_file: where the password lives on the host where the client runs.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(repr=False)  # it may carry a password: repr shows display_url
    user: str | None = None
    password: str | None = Field(default=None, repr=False)
    password_file: str | None = None

    def __repr__(self) -> str:
        return (
            f"NatsClient(url={self.display_url!r}, user={self.user!r}, "
            f"password_file={self.password_file!r})"
        )

    @property
    def display_url(self) -> str:
        """The URL without any credentials it carries, for messages and logs."""
        parts = urlsplit(self.url)
        if parts.hostname is None or "@" not in parts.netloc:
            return self.url
        netloc = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def credentials(self) -> tuple[str | None, str | None]:
        """The ``user`` and ``password`` options of ``nats.connect``; Nones without a user.

        Raises:
            ConfigError: the password file is missing or empty on this host.
        """
        if self.user is None:
            return None, None
        if self.password is not None:
            return self.user, self.password
        if self.password_file is None:
            raise ConfigError(f"NATS user {self.user!r} has neither a password nor a password file")
        path = Path(self.password_file)
        try:
            password = path.read_text().strip()
        except FileNotFoundError:
            raise ConfigError(
                f"no NATS password at {path} on this host: copy it from the head's data dir "
                "(the head generates it with the Ray token), or set AISYS_NATS__PASSWORD"
            ) from None
        if not password:
            raise ConfigError(f"the NATS password file {path} is empty")
        return self.user, password

    async def connect(self, **options: Any) -> Client:
        """``nats.connect`` to :attr:`url` with the credentials and ``options``."""
        user, password = self.credentials()
        return await nats.connect(self.url, user=user, password=password, **options)


def read_nats_password(settings: Settings) -> str | None:
    """The embedded server's password: ``nats.password``, else the data dir's file, else None."""
    return read_secret(settings.nats.password, settings.nats_password_path)


def ensure_nats_password(settings: Settings) -> str:
    """Return the embedded server's password, generating it once into the data dir (0600)."""
    return ensure_secret(settings.nats.password, settings.nats_password_path)


def nats_client(settings: Settings) -> NatsClient:
    """How aisys's processes reach the broker ``settings`` name, with aisys's credentials."""
    password = settings.nats.password.get_secret_value() if settings.nats.password else None
    url = settings.nats_url
    if settings.nats.url:
        if password is None:
            return NatsClient(url=url)
        return NatsClient(url=url, user=settings.nats.user, password=password)
    if password is not None:
        return NatsClient(url=url, user=settings.nats.user, password=password)
    return NatsClient(
        url=url, user=settings.nats.user, password_file=str(settings.nats_password_path)
    )


async def apply_stream_config(js: JetStreamContext, config: StreamConfig) -> StreamInfo:
    """Create the stream ``config`` names, or bring an existing one to ``config``; idempotent."""
    if config.name is None:
        raise ConfigError("nats: a JetStream stream config must name its stream")
    try:
        await js.stream_info(config.name)
    except nats.js.errors.NotFoundError:
        return await js.add_stream(config)
    return await js.update_stream(config)
