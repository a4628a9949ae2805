"""The pickled feeds' unpickler: plain data comes out, anything naming code is refused."""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import pytest

from legacy_gateway.feeds import UnsafePickle, language_request, safe_loads


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
