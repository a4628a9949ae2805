"""The head's GCS store: a private ``redis-server`` that makes Ray's GCS fault tolerant.

Without it the GCS keeps the cluster's tables (nodes, named actors, Serve's checkpoints) in
memory, and a head restart starts a new cluster: every worker node is dropped and every
application must be deployed again. With ``RAY_REDIS_ADDRESS`` pointing here, the restarted GCS
loads those tables back, the worker's raylet reconnects to it (within
``ray.gcs_reconnect_timeout_s``) and Serve's controller recovers its applications by itself.

Ray 2.60 offers two backends: this one (external Redis, officially supported) and an embedded
RocksDB store (``RAY_gcs_storage=rocksdb``), marked alpha upstream. aisys takes Redis: it is the
documented path, Debian packages it, and it is one more small process on the head, started and
stopped with the node like the embedded NATS server. It listens on loopback only (only the
head's GCS talks to it), asks for a password (the cluster's Ray token), and appends every write
to a file under the data dir (``appendfsync everysec``), so a power cut loses at most a second of
cluster metadata, never aisys's own state (that lives in the services' SQLite files).

Example::

    store = GcsStore(port=6381, store_dir=Path("data/gcs"), password=token)
    store.start()        # returns once the server answers PING
    store.address        # "127.0.0.1:6381"
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

from cluster.base.errors import ConfigError
from cluster.ops._daemon import Daemon

__all__ = ["GcsStore", "redis_binary"]


def redis_binary() -> Path:
    """Return ``redis-server`` from PATH.

    Raises:
        ConfigError: it is not installed; the message names the package and the setting that
            turns GCS fault tolerance off instead.
    """
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if found is None:
        raise ConfigError(
            "GCS fault tolerance needs redis-server on the head: install it (Debian/Ubuntu: "
            "`apt install redis-server`), or turn it off with "
            "AISYS_RAY__GCS_FAULT_TOLERANCE=false (a head restart then drops the cluster)"
        )
    return Path(found)


class GcsStore(Daemon):
    """One ``redis-server`` with append-only persistence under ``store_dir``.

    Args:
        port: loopback port it listens on.
        store_dir: its config, append-only files, log and pid file.
        password: what clients must send (``requirepass``); written to a 0600 config file,
            never onto a command line.
        binary: the ``redis-server`` executable; None finds it (:func:`redis_binary`) at start.
    """

    stop_grace_s = 10.0  # it syncs its append-only file on SIGTERM
    process_name = "redis-server"

    def __init__(
        self, port: int, store_dir: Path, password: str, binary: Path | None = None
    ) -> None:
        self.binary = binary
        self.port = port
        self.store_dir = store_dir
        self._password = password

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.store_dir / "redis-server.pid"

    @property
    def log_file(self) -> Path:
        return self.store_dir / "redis-server.log"

    @property
    def marker(self) -> str:
        return f"gcs-store:{self.store_dir}"

    def _write_config(self) -> Path:
        self.store_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.store_dir.chmod(0o700)
        config = self.store_dir / "redis.conf"
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(
                "bind 127.0.0.1\n"
                f"port {self.port}\n"
                "protected-mode yes\n"
                f'requirepass "{self._password}"\n'
                f'dir "{self.store_dir}"\n'
                f'pidfile "{self.pid_file}"\n'
                f'logfile "{self.log_file}"\n'
                "daemonize no\n"
                "appendonly yes\n"
                "appendfsync everysec\n"
                'save ""\n'
            )
        config.chmod(0o600)
        return config

    def _answers(self) -> bool:
        """True when the server replies to an authenticated PING."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(f"AUTH {self._password}\r\nPING\r\n".encode())
                reply = b""
                while reply.count(b"\r\n") < 2:
                    chunk = sock.recv(256)
                    if not chunk:
                        return False
                    reply += chunk
                return reply.startswith(b"+OK") and b"+PONG" in reply
        except OSError:
            return False

    def start(self, timeout_s: float = 20.0) -> bool:
        """Start the server unless it already runs; return False when it was already running.

        Raises:
            ClusterError: it exited or did not answer within ``timeout_s``.
        """
        if self.process() is not None:
            return False
        binary = self.binary or redis_binary()
        config = self._write_config()
        self._spawn(
            [str(binary), str(config)],
            # Ours answers, not merely something on the port: its pid file names it.
            lambda: self._answers() and self.process() is not None,
            what=f"redis-server (the GCS store) on port {self.port}",
            timeout_s=timeout_s,
        )
        return True
