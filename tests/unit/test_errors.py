"""Errors pickle across Ray (cls(*args)) and render the structured body the HTTP layer sends."""

from __future__ import annotations

import pickle

import pytest

from cluster.base.errors import AgentNotFound, AisysError, ConfigError, MissingHostTag


@pytest.mark.parametrize(
    "error",
    [
        AgentNotFound("NLUAgent"),
        MissingHostTag("pc2", "application resources", "start it"),
        ConfigError("bad"),
    ],
)
def test_errors_survive_pickling_with_their_fields(error: AisysError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.to_dict() == error.to_dict()


def test_error_body_names_class_component_and_detail() -> None:
    body = AgentNotFound("x").to_dict()
    assert body == {
        "error": "AgentNotFound",
        "component": "registry",
        "detail": "registry: agent 'x' is not registered",
    }
    assert AgentNotFound.http_status == 404


def test_an_error_built_with_keywords_pickles_with_its_arguments_in_order() -> None:
    error = MissingHostTag(tag="pc2", hint="start it", needed_by="application resources")
    assert error.args == ("pc2", "application resources", "start it")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.tag, copy.needed_by, copy.hint) == ("pc2", "application resources", "start it")
