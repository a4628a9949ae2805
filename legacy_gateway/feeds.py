"""The two pickled PUB feeds RequestCoordinator listened to, read safely.

StreamingInterruptHandler publishes ``pickle.dumps({"type": "interrupt", "timestamp": t})`` on
its PUB (:5576) and StreamingLanguageAnalyzer its analyses on :5577 (``docs/legacy-protocol.md``
4.3 and 6). Unpickling untrusted bytes can run arbitrary code, so :func:`safe_loads` uses an
unpickler that resolves no global except ``set``/``frozenset`` (and the ``bytes`` rebuilder of
old protocols): only plain data (dict,
list, tuple, str, bytes, numbers, bool, None, sets) can come out; anything else is rejected
and counted, never executed.

Plain data can still be a bomb: a short pickle that makes the unpickler run a great many
opcodes, ``_codecs.encode`` chains (``hex`` of ``hex`` of ...) that double at every step, or a
DAG of shared references that is small in memory but exponential once walked (as JSON encoding
does). So a message has a :class:`FeedBudget`: its opcodes are counted before it is loaded,
``_codecs.encode`` only rebuilds bytes (latin-1 of a string, nothing else), and the loaded value
is walked once, every shared reference counted again, with its nodes, depth and the bytes of its
strings capped; a message over any of them is rejected before anything expands it.

An interrupt pauses CoreOrchestrator's dispatch and cancels what is queued (what RC did); a
``language_analysis`` becomes a text request, the translation preferred when there is one.

Example::

    feeds = LegacyFeeds(settings.legacy_gateway, Services())
    feeds.start()                 # SUB sockets connect; publishers may come and go
    feeds.stats()                 # {"interrupts": FeedStats(...), "language": FeedStats(...)}
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import pickle
import pickletools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import zmq
import zmq.asyncio
from pydantic import BaseModel, JsonValue, ValidationError
from ray.exceptions import RayError
from ray.serve.exceptions import RayServeException

from cluster.base.aio import cancel_and_wait
from cluster.base.constants import APP_CORE
from cluster.base.errors import AisysError, ClusterError
from cluster.base.settings import LegacyGatewaySettings
from deployments.core.models import InterruptRequest, TextRequest
from legacy_gateway._ports import Services

__all__ = [
    "FeedBudget",
    "FeedStats",
    "FeedTooLarge",
    "LegacyFeeds",
    "UnsafePickle",
    "language_request",
    "safe_loads",
]

logger = logging.getLogger(__name__)


class UnsafePickle(pickle.UnpicklingError):
    """The pickle names a class or function; plain data only is accepted."""


class FeedTooLarge(pickle.UnpicklingError):
    """The message would expand past its :class:`FeedBudget`; nothing of it is used."""


@dataclass(frozen=True)
class FeedBudget:
    """What one pickled feed message may expand to (``legacy_gateway`` settings).

    Attributes:
        max_objects: opcodes the unpickler may run, and nodes the loaded value may have when
            every shared reference is counted again (as a JSON encoding would expand it).
        max_depth: deepest nesting of containers.
        max_bytes: total length of its strings and bytes, shared ones counted again.
    """

    max_objects: int = 100_000
    max_depth: int = 64
    max_bytes: int = 1024 * 1024

    @classmethod
    def of(cls, settings: LegacyGatewaySettings) -> FeedBudget:
        return cls(settings.feed_max_objects, settings.feed_max_depth, 4 * settings.max_feed_bytes)


#: Encodings protocols 0-2 rebuild ``bytes`` with: ``_codecs.encode(text, "latin1")``.
_BYTES_ENCODINGS: Final = frozenset({"latin1", "latin-1", "iso-8859-1", "iso8859-1"})


def _rebuild_bytes(text: object, encoding: object = "utf-8", errors: object = "strict") -> bytes:
    """``_codecs.encode`` as old protocols use it, and nothing else (no codec chains)."""
    if not isinstance(text, str) or not isinstance(encoding, str) or errors != "strict":
        raise UnsafePickle("refused _codecs.encode of anything but a string to bytes")
    if encoding.lower() not in _BYTES_ENCODINGS:
        raise UnsafePickle(f"refused _codecs.encode with {encoding!r}: only latin-1 rebuilds bytes")
    return text.encode("latin-1")


#: The globals plain data needs: sets (protocols 0-3 name them) and ``_codecs.encode``, which
#: protocols 0-2 use to rebuild ``bytes``; both only ever construct data.
_ALLOWED_GLOBALS: Final[dict[tuple[str, str], Any]] = {
    (module, name): value
    for module in ("builtins", "__builtin__")
    for name, value in (("set", set), ("frozenset", frozenset))
} | {("_codecs", "encode"): _rebuild_bytes}


class _PlainDataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise UnsafePickle(f"refused {module}.{name}: only plain data types are accepted")
        return allowed

    def persistent_load(self, pid: Any) -> Any:  # noqa: ARG002
        raise UnsafePickle("refused a persistent id: only plain data types are accepted")


def safe_loads(data: bytes, budget: FeedBudget | None = None) -> object:
    """Unpickle ``data`` allowing plain data only, within ``budget``.

    Raises:
        UnsafePickle: the pickle references a global (class, function) or a persistent id.
        FeedTooLarge: it runs more opcodes than the budget, or its value expands past it.
        pickle.UnpicklingError, EOFError, ValueError: the bytes are not a valid pickle.
    """
    budget = budget or FeedBudget()
    _count_opcodes(data, budget.max_objects)
    value = _PlainDataUnpickler(io.BytesIO(data)).load()
    check_expansion(value, budget)
    return value


def _count_opcodes(data: bytes, limit: int) -> None:
    for count, _ in enumerate(pickletools.genops(data), start=1):
        if count > limit:
            raise FeedTooLarge(
                f"more than {limit} pickle opcodes (legacy_gateway.feed_max_objects)"
            )


def check_expansion(value: object, budget: FeedBudget) -> None:
    """Walk ``value`` as a JSON encoding would, shared references again each time.

    Raises:
        FeedTooLarge: more nodes, deeper nesting or more string bytes than ``budget`` allows
            (a reference cycle ends at the depth limit).
    """
    nodes = size = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > budget.max_objects:
            raise FeedTooLarge(
                f"the message expands to more than {budget.max_objects} values "
                "(legacy_gateway.feed_max_objects)"
            )
        if isinstance(item, str | bytes | bytearray):
            size += len(item)
            if size > budget.max_bytes:
                raise FeedTooLarge(
                    f"the message expands to more than {budget.max_bytes} bytes of text "
                    "(4 x legacy_gateway.max_feed_bytes)"
                )
            continue
        if isinstance(item, dict):
            children: list[object] = [*item.keys(), *item.values()]
        elif isinstance(item, list | tuple | set | frozenset):
            children = list(item)
        else:
            continue
        if depth >= budget.max_depth and children:
            raise FeedTooLarge(
                f"the message nests deeper than {budget.max_depth} (legacy_gateway.feed_max_depth)"
            )
        stack.extend((child, depth + 1) for child in children)


def _jsonable(value: object) -> JsonValue:
    """Plain unpickled data as JSON (tuples and sets become lists, bytes become text)."""

    def default(item: object) -> object:
        if isinstance(item, set | frozenset | tuple):
            return list(item)
        if isinstance(item, bytes):
            return item.decode("utf-8", "replace")
        return str(item)

    loaded: JsonValue = json.loads(json.dumps(value, default=default))
    return loaded


def language_request(message: dict[str, object]) -> TextRequest | None:
    """RC's translation of a ``language_analysis`` message into a text request (4.3)."""
    if message.get("type") != "language_analysis":
        return None
    translated, original = message.get("translated_text"), message.get("transcription")
    text = translated if isinstance(translated, str) and translated else original
    if not isinstance(text, str) or not text.strip():
        return None
    context = _jsonable(
        {
            "original_text": original,
            "language_analysis": message.get("analysis"),
            "detected_language": message.get("detected_language"),
            "was_translated": bool(translated),
            "translation_status": message.get("translation_status"),
            "legacy_request_id": message.get("request_id"),
        }
    )
    assert isinstance(context, dict)
    return TextRequest.model_validate(
        {"data": text, "context": context, "metadata": {"source": "speech_recognition"}}
    )


class FeedStats(BaseModel):
    """What one feed received."""

    address: str
    received: int = 0
    acted: int = 0
    rejected: int = 0
    last_error: str | None = None


class LegacyFeeds:
    """SUB sockets on the interrupt and language-analysis feeds, acting through CoreOrchestrator."""

    def __init__(self, settings: LegacyGatewaySettings, services: Services) -> None:
        self._settings = settings
        self._services = services
        self._budget = FeedBudget.of(settings)
        self._ctx = zmq.asyncio.Context()
        self._tasks: list[asyncio.Task[None]] = []
        self._stats: dict[str, FeedStats] = {}
        handlers: dict[str, tuple[str | None, Callable[[object], Awaitable[bool]]]] = {
            "interrupts": (settings.interrupt_feed, self._interrupt),
            "language": (settings.language_feed, self._language),
        }
        self._feeds = {k: (a, h) for k, (a, h) in handlers.items() if a is not None}

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for name, (address, handler) in self._feeds.items():
            assert address is not None
            self._stats[name] = FeedStats(address=address)
            self._tasks.append(
                loop.create_task(self._follow(name, address, handler), name=f"feed-{name}")
            )

    def stats(self) -> dict[str, FeedStats]:
        return {name: stats.model_copy() for name, stats in self._stats.items()}

    def check(self) -> None:
        """Raise when a feed's task has ended (``check_health``): its messages would be lost.

        Raises:
            ClusterError: names the feed and why it ended.
        """
        for task in self._tasks:
            if task.done():
                reason = "cancelled" if task.cancelled() else repr(task.exception())
                raise ClusterError(f"legacy: the {task.get_name()} follower ended: {reason}")

    async def close(self) -> None:
        await cancel_and_wait(self._tasks)
        self._ctx.destroy(linger=0)

    async def _follow(
        self, name: str, address: str, handler: Callable[[object], Awaitable[bool]]
    ) -> None:
        stats = self._stats[name]
        sock = self._ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, self._settings.max_feed_bytes)  # larger: dropped
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(address)
        try:
            while True:
                frames = await sock.recv_multipart()
                stats.received += 1
                if await self._one(name, stats, frames[-1], handler):
                    stats.acted += 1
        finally:
            sock.close(linger=0)

    async def _one(
        self,
        name: str,
        stats: FeedStats,
        data: bytes,
        handler: Callable[[object], Awaitable[bool]],
    ) -> bool:
        """Act on one message; whatever it holds, the feed goes on with the next."""
        try:
            message = safe_loads(data, self._budget)
            return await handler(message)
        except (AisysError, ValidationError, RayError, RayServeException) as exc:
            stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
            logger.warning("legacy feed %s: CoreOrchestrator refused: %s", name, exc)
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
            stats.rejected += 1
            stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
            logger.warning("legacy feed %s: rejected a message: %s", name, exc)
        except Exception as exc:  # loop boundary: a broken pickle can raise nearly anything
            stats.rejected += 1
            stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
            logger.exception("legacy feed %s: rejected an unreadable message", name)
        return False

    async def _interrupt(self, message: object) -> bool:
        if not isinstance(message, dict):
            raise TypeError(f"an interrupt must be a dict, got {type(message).__name__}")
        core = self._services.deployment("CoreOrchestrator", APP_CORE)
        await core.interrupt.remote(InterruptRequest())
        return True

    async def _language(self, message: object) -> bool:
        if not isinstance(message, dict):
            raise TypeError(f"an analysis must be a dict, got {type(message).__name__}")
        request = language_request(message)
        if request is None:
            return False
        core = self._services.deployment("CoreOrchestrator", APP_CORE)
        await core.submit.remote(request)
        return True
