"""A real ``redis-server`` for tests: random port, no persistence, stopped by its own pid.

The binary comes from Debian's ``redis-server`` package (``make system-deps`` installs it). If
it is missing the fixture errors; it never skips silently.

Example::

    with redis_server(tmp_path) as url:
        redis.Redis.from_url(url).set("k", "v")
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import free_port

__all__ = ["redis_server"]

_READY = "Ready to accept connections"


@contextmanager
def redis_server(workdir: Path, timeout_s: float = 20.0) -> Iterator[str]:
    """Run a private redis-server in ``workdir``; yield its ``redis://`` URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed; run `make system-deps` (Debian, root)")
    port = free_port()
    log = workdir / "redis.log"
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir)]
    # No RDB snapshots, no AOF: nothing outlives the test.
    args += ["--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", str(log)]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while _READY not in (log.read_text(errors="replace") if log.exists() else ""):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"redis-server on port {port} did not become ready:\n{tail}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
