"""Validation of registry requests: bad input gets a message that says what is allowed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from actors.registry.models import Change, Heartbeat, Registration
from actors.registry.view import RegistryView


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"agent_id": ""}, "agent_id"),
        ({"agent_id": "has space"}, "letters, digits"),
        ({"agent_id": "x" * 129}, "1-128"),
        ({"port": 0}, "greater than or equal to 1"),
        ({"port": 70000}, "less than or equal to 65535"),
        ({"port": "not-a-port"}, "valid integer"),
        ({"host": ""}, "at least 1 character"),
        ({"capabilities": ["ok", "not ok"]}, "capability 'not ok'"),
        ({"ttl_s": -1}, "greater than 0"),
        ({"check": "http"}, "'ttl' or 'none'"),
        ({"unexpected": 1}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_registration_is_rejected_with_a_clear_message(
    fields: dict[str, object], message: str
) -> None:
    values: dict[str, object] = {"agent_id": "a", "host": "h", "port": 1}
    values.update(fields)
    with pytest.raises(ValidationError, match=message):
        Registration.model_validate(values)


def test_capabilities_and_tags_are_deduplicated_and_sorted() -> None:
    registration = Registration(
        agent_id="a", host="h", port=1, capabilities=["tts", "asr", "tts"], tags=["b", "a"]
    )
    assert registration.capabilities == ["asr", "tts"]
    assert registration.tags == ["a", "b"]


def test_heartbeat_rejects_unknown_status() -> None:
    with pytest.raises(ValidationError, match="'passing', 'warning' or 'critical'"):
        Heartbeat.model_validate({"status": "ok"})


def test_view_ignores_changes_it_already_applied() -> None:
    view = RegistryView()
    view.apply(Change(version=2, op="delete", agent_id="a", record=None))
    view.apply(Change(version=1, op="delete", agent_id="b", record=None))
    assert view.version == 2
