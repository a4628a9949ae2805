"""Read the legacy ServiceRegistry's Redis backend into :class:`ImportedAgent` s.

The legacy registry (``docs/legacy-protocol.md`` §4.1) stores one JSON string per agent under
``service_registry:<agent_id>``: ``{host, port, health_check_port, agent_type, capabilities,
metadata, last_registered}``, where ``last_registered`` is ``datetime.utcnow().isoformat()``.
Keys are listed with ``SCAN`` (not ``KEYS``: the legacy Redis is shared and may be large) and
read with ``MGET`` in batches. A value that is not a readable registration is skipped with the
reason; only an unreachable Redis fails the source.

Example::

    read = read_registry("redis://127.0.0.1:6379/0", now=time.time())
    read.items[0].registration.agent_id      # "NLUAgent"
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import redis
from pydantic import BaseModel, ConfigDict, JsonValue

from actors.registry.models import ImportedAgent, Registration
from cluster.base.errors import LegacySourceUnreadable
from cluster.ops.legacy_import._store import SourceRead, validated
from cluster.ops.legacy_import.timestamps import UnreadableTime, parse_time

__all__ = ["KEY_PREFIX", "SOURCE", "read_registry", "safe_url"]

SOURCE: Final = "registry"
KEY_PREFIX: Final = "service_registry:"
_BATCH: Final = 500


class _LegacyRecord(BaseModel):
    """The JSON the legacy ServiceRegistry stored per agent (``dependencies`` was dropped)."""

    model_config = ConfigDict(extra="ignore")

    host: str
    port: int
    health_check_port: int | None = None
    agent_type: str | None = None
    capabilities: list[str] = []
    metadata: dict[str, JsonValue] = {}
    last_registered: str | float | None = None


def safe_url(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _agent(agent_id: str, raw: bytes, now: float, result: SourceRead[ImportedAgent]) -> None:
    """Read one value into ``result``; raise ValueError with the reason it cannot be imported."""
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("value is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"value is not JSON ({exc.msg})") from None
    if not isinstance(body, dict):
        raise ValueError(f"value is a JSON {type(body).__name__}, not an object")
    record = validated(_LegacyRecord, "registration", body)
    fields = record.model_dump(exclude={"last_registered"})
    registration = validated(
        Registration, "registration", {**fields, "agent_id": agent_id, "check": "none"}
    )
    if record.last_registered is None:
        # The legacy registry always wrote it; a hand-made or older record may lack it.
        registered_at = now
        result.note("no last_registered: registered at the time of the import")
    else:
        try:
            registered_at = parse_time(record.last_registered, UTC, now=now)
        except UnreadableTime as exc:
            raise ValueError(f"last_registered: {exc}") from None
    result.items.append(ImportedAgent(registration=registration, registered_at=registered_at))


def read_registry(url: str, now: float) -> SourceRead[ImportedAgent]:
    """Read every ``service_registry:*`` key of the Redis at ``url``.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]`` (also ``rediss://``, ``unix://``).
        now: the time of the import (records without ``last_registered`` get it).

    Raises:
        LegacySourceUnreadable: Redis is unreachable, refuses the login, or the URL is invalid.
    """
    location = safe_url(url)
    result: SourceRead[ImportedAgent] = SourceRead(location=location)
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30)
    except ValueError as exc:
        raise LegacySourceUnreadable(SOURCE, location, f"not a Redis URL: {exc}") from exc
    try:
        keys = sorted(client.scan_iter(match=f"{KEY_PREFIX}*", count=_BATCH))
        result.read["keys"] = len(keys)
        for start in range(0, len(keys), _BATCH):
            batch = keys[start : start + _BATCH]
            for key, value in zip(batch, client.mget(batch), strict=True):
                _read_value(client, key, value, now, result)
    except redis.RedisError as exc:
        raise LegacySourceUnreadable(SOURCE, location, f"Redis: {exc}") from exc
    finally:
        client.close()
    return result


def _read_value(
    client: redis.Redis, key: bytes, value: object, now: float, result: SourceRead[ImportedAgent]
) -> None:
    name = key.decode("utf-8", errors="replace")
    agent_id = name[len(KEY_PREFIX) :]
    if not isinstance(value, bytes):
        kind = client.type(key)
        kind_name = kind.decode() if isinstance(kind, bytes) else str(kind)
        # MGET answers nil for a key that holds another type, or that vanished meanwhile.
        reason = "key vanished during the import" if kind_name == "none" else "not a string"
        result.tally.skip(reason if kind_name == "none" else f"{reason} (a {kind_name})", name)
        return
    try:
        _agent(agent_id, value, now, result)
    except ValueError as exc:
        result.tally.skip(str(exc), name)
