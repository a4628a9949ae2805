"""Reading a systemd unit back the way systemd does (systemd.syntax(7) quoting)."""

from __future__ import annotations

import re

__all__ = ["directives", "exec_start", "systemd_words"]


def directives(text: str) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit, every value of a key in order."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def systemd_words(value: str) -> list[str]:
    """Split a command line or an Environment= value into words as systemd does."""
    words = []
    for match in re.finditer(r'"((?:[^"\\]|\\.)*)"|(\S+)', value):
        quoted, bare = match.groups()
        word = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        words.append(word.replace("%%", "%").replace("$$", "$"))
    return words


def exec_start(text: str) -> tuple[list[str], dict[str, str]]:
    """The unit's ``ExecStart=`` argv and the variables its ``Environment=`` lines set."""
    unit = directives(text)
    [command] = unit["ExecStart"]
    env: dict[str, str] = {}
    for line in unit.get("Environment", []):
        for word in systemd_words(line):
            key, _, value = word.partition("=")
            env[key] = value
    return systemd_words(command), env
