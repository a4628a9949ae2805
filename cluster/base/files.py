"""Private files: what aisys writes into a data dir is readable by its owner only.

The data dir holds the cluster's Ray token, the NATS password, the SecurityGateway's signing
keys and password hashes, and every service's SQLite file. Everything aisys starts runs under
:data:`PRIVATE_UMASK` (the CLI sets it before it starts a node, and Ray hands it down to every
process of the node), so new files are 0600 and new directories 0700; :func:`make_private`
brings an existing tree there (a data dir from before, or one `aisys restore` just wrote).
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from pydantic import SecretStr

__all__ = ["PRIVATE_UMASK", "ensure_secret", "make_private", "read_secret"]

PRIVATE_UMASK = 0o077


def make_private(root: Path, *, skip: tuple[Path, ...] = ()) -> int:
    """Make ``root`` and everything under it owner-only: directories 0700, files 0600.

    Links are left alone (their targets are not ours to change), and so are sockets and FIFOs.
    ``skip`` names directories whose contents are not walked (they are made 0700 themselves):
    Ray's temp dir holds thousands of log files and its own sockets.

    Returns:
        How many modes were changed.
    """
    if not root.is_dir():
        return 0
    changed = _chmod(root, 0o700)
    skipped = {p.resolve() for p in skip}
    for current, dirs, files in os.walk(root):
        here = Path(current)
        for name in list(dirs):
            path = here / name
            if path.is_symlink():
                dirs.remove(name)
                continue
            changed += _chmod(path, 0o700)
            if path.resolve() in skipped:
                dirs.remove(name)
        for name in files:
            path = here / name
            if not path.is_symlink() and stat.S_ISREG(path.lstat().st_mode):
                changed += _chmod(path, 0o600)
    return changed


def _chmod(path: Path, mode: int) -> int:
    """Set ``path``'s permission bits to ``mode``; 1 when they were different."""
    if stat.S_IMODE(path.lstat().st_mode) == mode:
        return 0
    path.chmod(mode)
    return 1


def read_secret(override: SecretStr | None, path: Path) -> str | None:
    """A cluster secret: the setting that overrides it, else its file, else None."""
    if override is not None:
        return override.get_secret_value()
    if path.is_file():
        return path.read_text().strip() or None
    return None


def ensure_secret(override: SecretStr | None, path: Path) -> str:
    """:func:`read_secret`, generating 32 random bytes (hex) into ``path`` (0600) once."""
    secret = read_secret(override, path)
    if secret is not None:
        return secret
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret
