"""The legacy AuthenticationAgent and AgentTrustScorer frames (section 4.15-4.16) on the gateway."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
import zmq

from cluster.base.settings import LegacyService
from tests.integration._legacy_client import (  # noqa: F401 (fixtures)
    LegacyClient,
    ports_fixture,
    zctx_fixture,
)

pytestmark = pytest.mark.integration

AUTH = f"pc2/{LegacyService.AUTHENTICATION}"
AUTH_HEALTH = f"pc2/{LegacyService.AUTHENTICATION_HEALTH}"
TRUST = f"pc2/{LegacyService.TRUST_SCORER}"
TRUST_DECLARED = f"pc2/{LegacyService.TRUST_SCORER_DECLARED}"


@pytest.fixture
def client(
    zctx: zmq.Context[zmq.Socket[bytes]], ports: dict[str, int]
) -> Iterator[dict[str, LegacyClient]]:
    clients = {name: LegacyClient(zctx, ports[name]) for name in (AUTH, AUTH_HEALTH, TRUST)}
    clients[TRUST_DECLARED] = LegacyClient(zctx, ports[TRUST_DECLARED])
    yield clients
    for c in clients.values():
        c.close()


def test_register_login_validate_logout_as_the_legacy_client_expects(
    client: dict[str, LegacyClient], http: httpx.Client
) -> None:
    auth = client[AUTH]
    user = f"alice-{uuid.uuid4().hex[:6]}"
    password = "correct horse battery"
    enriched = {"source_agent": "UnifiedUtilsAgent", "request_id": "r1", "timestamp": "t"}
    registered = auth.send_json({"action": "register", "user_id": user, "password": password})
    assert registered == {"status": "success", "message": "User registered successfully"}
    again = auth.send_json({"action": "register", "user_id": user, "password": password})
    assert again["status"] == "error" and again["message"] == "User already exists"

    login = auth.send_json({"action": "login", "user_id": user, "password": password, **enriched})
    assert login["status"] == "success" and login["message"] == "Login successful"
    token = login["session"]["token"]
    assert isinstance(login["session"]["expires_at"], str)
    assert auth.send_json({"action": "validate_token", "token": token}) == {
        "status": "success",
        "valid": True,
    }
    # The token is an aisys JWT: the HTTP services accept it too.
    verified = http.get("/security/verify", headers={"Authorization": f"Bearer {token}"})
    assert verified.status_code == 200 and verified.json()["claims"]["sub"] == user

    assert auth.send_json({"action": "logout", "token": token}) == {
        "status": "success",
        "message": "Logout successful",
    }
    assert auth.send_json({"action": "validate_token", "token": token})["valid"] is False
    assert auth.send_json({"action": "validate_token", "token": "9f" * 32})["valid"] is False

    wrong = auth.send_json({"action": "login", "user_id": user, "password": "nope"})
    assert wrong["status"] == "error" and "invalid credentials" in wrong["message"]
    missing = auth.send_json({"action": "login", "user_id": user})
    assert missing == {"status": "error", "error": "Missing user_id or password",
                       "message": "Missing user_id or password"}  # fmt: skip
    assert auth.send_json({"action": "fly"})["status"] == "error"
    assert client[AUTH_HEALTH].raw(b"anything")["status"] == "ok"


def test_trust_scorer_actions_including_the_one_it_never_implemented(
    client: dict[str, LegacyClient],
) -> None:
    trust = client[TRUST]
    agent = f"phi-2-{uuid.uuid4().hex[:6]}"
    first = trust.send_json(
        {"action": "log_performance", "model_id": agent, "success": True, "response_time": 1.2}
    )
    assert first["status"] == "success" and first["new_trust_score"] > 0.5
    failed = trust.send_json({"action": "log_performance", "model_id": agent, "success": False})
    assert failed["new_trust_score"] < first["new_trust_score"]
    score = trust.send_json({"action": "get_trust_score", "model_id": agent})
    assert score["trust_score"] == pytest.approx(failed["new_trust_score"], abs=1e-3)
    unknown = client[TRUST_DECLARED].send_json({"action": "get_trust_score", "model_id": "new"})
    assert unknown == {"status": "success", "trust_score": 0.5}

    history = trust.send_json(
        {"action": "get_performance_history", "model_id": agent, "limit": 10}
    )["history"]
    assert [h["success"] for h in history] == [False, True]  # newest first
    assert history[1]["response_time"] == 1.2 and isinstance(history[0]["timestamp"], str)

    scores = trust.send_json({"action": "get_agent_scores", "agent": agent})
    assert scores["status"] == "success" and set(scores["scores"]) == {agent}
    everyone = trust.send_json({"action": "get_agent_scores"})["scores"]
    assert agent in everyone
    bad = trust.send_json({"action": "get_performance_history", "model_id": agent, "limit": "x"})
    assert bad["status"] == "error"
