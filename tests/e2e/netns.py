"""Two "hosts" on one machine: network namespaces joined by a veth pair.

Each :class:`Netns` is a namespace with ``lo`` up and one end of a veth pair addressed in a
random ``10.x.y.0/24``, so a head and a worker see each other only through that link, as two
machines on a LAN do. Processes in a namespace still share the machine's process table and
file system: the test stops its nodes with ``aisys down`` (by its data dir's marker), never with
``ray stop``. A namespace may bind-mount one directory over another for the commands it runs
(:meth:`Netns.with_bind`): ``ip netns exec`` gives each command its own mount namespace, kept
by the daemons it starts, so a worker's node sees its own disk behind a path the head also uses.

Example::

    require_netns()
    with veth_pair() as (a, b):
        a.run(["ping", "-c1", b.ip])
"""

from __future__ import annotations

import os
import random
import secrets
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

__all__ = ["Netns", "require_netns", "veth_pair"]


def require_netns() -> None:
    """Fail (never skip) with the reason when this machine cannot make network namespaces."""
    if os.geteuid() != 0:
        pytest.fail("the e2e tests need root to create network namespaces (run them as root)")
    if shutil.which("ip") is None:
        pytest.fail("the e2e tests need the `ip` command (iproute2) for `ip netns`")
    probe = f"aisys-probe-{secrets.token_hex(3)}"
    result = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"`ip netns add` does not work here: {result.stderr.strip()}")
    subprocess.run(["ip", "netns", "delete", probe], check=True)


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")


@dataclass(frozen=True)
class Netns:
    """A network namespace ``name`` whose veth end has address ``ip``.

    ``binds`` are ``(source, target)`` directories mounted over each other for every command.
    """

    name: str
    ip: str
    binds: tuple[tuple[Path, Path], ...] = ()

    def with_bind(self, source: Path, target: Path) -> Netns:
        """This namespace, with ``source`` seen at ``target`` by the commands run in it."""
        return replace(self, binds=(*self.binds, (source, target)))

    def command(self, cmd: Sequence[str]) -> list[str]:
        """``cmd`` wrapped to run inside this namespace (after its bind mounts)."""
        if not self.binds:
            return ["ip", "netns", "exec", self.name, *cmd]
        # `ip netns exec` unshares the mount namespace and makes / a slave, so these mounts
        # stay private to the command and whatever it starts.
        mounts = " && ".join(
            f"mount --bind {shlex.quote(str(src))} {shlex.quote(str(dst))}"
            for src, dst in self.binds
        )
        return ["ip", "netns", "exec", self.name, "sh", "-c", f'{mounts} && exec "$@"', "sh", *cmd]

    def run(
        self, cmd: Sequence[str], env: Mapping[str, str] | None = None, timeout_s: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in the namespace and return its result (output captured, no check)."""
        return subprocess.run(
            self.command(cmd),
            env=dict(env) if env is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )

    def popen(
        self, cmd: Sequence[str], env: Mapping[str, str], **kwargs: Any
    ) -> subprocess.Popen[str]:
        """Start ``cmd`` in the namespace without waiting (``ip netns exec`` execs it)."""
        return subprocess.Popen(
            self.command(cmd), env=dict(env), text=True, stdin=subprocess.DEVNULL, **kwargs
        )


def _random_subnet() -> str:
    """A random ``10.x.y`` prefix, avoiding the .0 and .255 networks."""
    return f"10.{random.randint(1, 254)}.{random.randint(1, 254)}"


@contextmanager
def veth_pair() -> Iterator[tuple[Netns, Netns]]:
    """Two fresh namespaces joined by a veth pair; both are deleted on exit, whatever happened."""
    suffix = secrets.token_hex(3)
    subnet = _random_subnet()
    a = Netns(f"aisys-a-{suffix}", f"{subnet}.1")
    b = Netns(f"aisys-b-{suffix}", f"{subnet}.2")
    # Interface names are limited to 15 characters.
    veth_a, veth_b = f"vaa{suffix}", f"vab{suffix}"
    created: list[str] = []
    try:
        for ns in (a, b):
            _ip("netns", "add", ns.name)
            created.append(ns.name)
        _ip("link", "add", veth_a, "netns", a.name, "type", "veth", "peer", veth_b, "netns", b.name)
        for ns, dev in ((a, veth_a), (b, veth_b)):
            _ip("-n", ns.name, "link", "set", "lo", "up")
            _ip("-n", ns.name, "addr", "add", f"{ns.ip}/24", "dev", dev)
            _ip("-n", ns.name, "link", "set", dev, "up")
        yield a, b
    finally:
        # Deleting a namespace deletes its veth end, and with it the peer.
        for name in created:
            with suppress(RuntimeError):
                _ip("netns", "delete", name)
