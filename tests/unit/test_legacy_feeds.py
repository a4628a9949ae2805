"""The pickled feeds' unpickler: plain data comes out, anything naming code is refused."""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import pytest

from cluster.base.settings import LegacyGatewaySettings
from legacy_gateway.feeds import (
    FeedBudget,
    FeedTooLarge,
    UnsafePickle,
    language_request,
    safe_loads,
)


class _Exploit:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, ("touch /tmp/aisys-pwned",))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_round_trips_in_every_protocol(protocol: int) -> None:
    message = {
        "type": "interrupt",
        "timestamp": 1752577200.5,
        "nested": [1, (2, 3), {"a": None, "b": True}],
        "tags": {"x", "y"},
        "frozen": frozenset({1}),
        "raw": b"\x00\x01",
    }
    assert safe_loads(pickle.dumps(message, protocol=protocol)) == message


@pytest.mark.parametrize(
    "value",
    [_Exploit(), OrderedDict(a=1), datetime.now(UTC), Exception("boom")],
    ids=["reduce-to-os.system", "ordereddict", "datetime", "exception"],
)
def test_anything_that_names_a_global_is_refused(value: object) -> None:
    with pytest.raises(UnsafePickle, match="only plain data"):
        safe_loads(pickle.dumps(value, protocol=5))


def test_garbage_is_an_unpickling_error_not_a_crash() -> None:
    for data in (b"", b"not a pickle", pickle.dumps({"a": 1})[:-3]):
        with pytest.raises((pickle.UnpicklingError, EOFError, ValueError)):
            safe_loads(data)


def test_language_analysis_becomes_a_text_request_preferring_the_translation() -> None:
    request = language_request(
        {
            "type": "language_analysis",
            "transcription": "kumusta",
            "translated_text": "hello",
            "translation_status": "ok",
            "detected_language": "tl",
            "analysis": {"scores": (1, 2)},
        }
    )
    assert request is not None and request.data == "hello"
    assert request.context["original_text"] == "kumusta"
    assert request.context["language_analysis"] == {"scores": [1, 2]}
    assert request.metadata.source == "speech_recognition"
    untranslated = language_request({"type": "language_analysis", "transcription": "hi"})
    assert untranslated is not None and untranslated.data == "hi"
    assert language_request({"type": "other", "transcription": "hi"}) is None
    assert language_request({"type": "language_analysis", "transcription": "  "}) is None


def _shared_dag(levels: int) -> bytes:
    """A pickle of ~20 bytes per level whose value doubles at each level once walked."""
    body = b"\x80\x02X\x04\x00\x00\x00leafq\x00"  # memo 0: the leaf
    for level in range(1, levels + 1):
        # [memo[level-1], memo[level-1]] stored as memo[level]
        body += b"](h" + bytes([level - 1]) + b"h" + bytes([level - 1]) + b"eq" + bytes([level])
    return body + b"."


def test_a_shared_reference_dag_is_refused_before_anything_expands_it() -> None:
    data = _shared_dag(40)  # 2**40 leaves once walked, under 1 KiB of pickle
    assert len(data) < 1024
    with pytest.raises(FeedTooLarge, match=r"more than 100000 values \(legacy_gateway"):
        safe_loads(data)
    small = safe_loads(_shared_dag(3))
    assert small == [[["leaf"] * 2] * 2] * 2


def test_codecs_encode_rebuilds_latin1_bytes_only_so_chains_are_refused() -> None:
    # protocol 2's bytes rebuilder works ...
    assert safe_loads(pickle.dumps(b"\x00\xff", protocol=2)) == b"\x00\xff"
    # ... but an encode with another codec (the first link of a doubling chain) is refused.
    hexed = b"\x80\x02c_codecs\nencode\nq\x00X\x03\x00\x00\x00abcX\x03\x00\x00\x00hex\x86R."
    with pytest.raises(UnsafePickle, match="only latin-1 rebuilds bytes"):
        safe_loads(hexed)


def test_opcode_depth_and_text_budgets() -> None:
    many = pickle.dumps([0] * 2000, protocol=0)  # protocol 0: one opcode per element
    with pytest.raises(FeedTooLarge, match="pickle opcodes"):
        safe_loads(many, FeedBudget(max_objects=1000))
    nested: object = "x"
    for _ in range(10):
        nested = [nested]
    with pytest.raises(FeedTooLarge, match="deeper than 5"):
        safe_loads(pickle.dumps(nested), FeedBudget(max_depth=5))
    assert safe_loads(pickle.dumps(nested), FeedBudget(max_depth=11)) == nested
    text = ["y" * 1000] * 10  # one string shared ten times counts ten times
    with pytest.raises(FeedTooLarge, match="more than 5000 bytes of text"):
        safe_loads(pickle.dumps(text), FeedBudget(max_bytes=5000))
    cyclic: list[object] = []
    cyclic.append(cyclic)
    with pytest.raises(FeedTooLarge, match="deeper than 64"):
        safe_loads(pickle.dumps(cyclic))


def test_budget_follows_the_gateway_settings() -> None:
    settings = LegacyGatewaySettings(feed_max_objects=500, feed_max_depth=8, max_feed_bytes=4096)
    assert FeedBudget.of(settings) == FeedBudget(500, 8, 16384)
