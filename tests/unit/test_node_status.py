"""How `aisys status` judges Ray's node table: hosts by profile, dead nodes replaced or lost."""

from __future__ import annotations

from typing import Any

from cluster.base.settings import load_settings
from cluster.ops.system import AppStatus, NatsStatus, SystemStatus, node_statuses

SETTINGS = load_settings(
    None,
    hosts={
        "mainpc": {"tag": "mainpc", "role": "head", "node_ip": "10.0.0.1"},
        "pc2": {"tag": "pc2", "role": "worker", "node_ip": "10.0.0.2"},
    },
)


def _node(node_id: str, ip: str, alive: bool, **resources: float) -> dict[str, Any]:
    return {
        "NodeID": node_id,
        "NodeManagerAddress": ip,
        "Alive": alive,
        "Resources": {"CPU": 2.0, **resources} if alive else {},
        "Labels": {},
    }


def _status(nodes: list[dict[str, Any]]) -> SystemStatus:
    return SystemStatus(
        dashboard_url="http://10.0.0.1:8265",
        nodes=node_statuses(SETTINGS, nodes),
        applications=[
            AppStatus(name="core", status="RUNNING", host_tag="mainpc", url="u", deployments=[])
        ],
        nats=NatsStatus(url="nats://x", reachable=True, jetstream=True, detail=""),
        registered_agents=0,
    )


def test_live_nodes_are_named_by_their_host_profile() -> None:
    status = _status([_node("a", "10.0.0.1", True, mainpc=1), _node("b", "10.0.0.2", True, pc2=1)])

    assert [(n.hosts, n.state) for n in status.nodes] == [(["mainpc"], "alive"), (["pc2"], "alive")]
    assert status.healthy


def test_a_dead_node_whose_host_came_back_is_replaced_and_not_a_problem() -> None:
    # Ray empties a dead node's resources; its address names the host profile.
    status = _status(
        [
            _node("a", "10.0.0.1", True, mainpc=1),
            _node("old", "10.0.0.2", False),
            _node("new", "10.0.0.2", True, pc2=1),
        ]
    )

    old = next(n for n in status.nodes if n.node_id == "old")
    assert (old.hosts, old.tags, old.state) == (["pc2"], ["pc2"], "replaced")
    assert status.lost_hosts == [] and status.healthy


def test_a_dead_node_with_no_successor_is_a_lost_host() -> None:
    status = _status([_node("a", "10.0.0.1", True, mainpc=1), _node("b", "10.0.0.2", False)])

    assert status.lost_hosts == ["pc2"]
    assert not status.healthy


def test_a_dead_node_keeps_its_tags_from_its_label_when_its_address_is_unknown() -> None:
    dead = _node("b", "192.168.9.9", False)
    dead["Labels"] = {"host": "pc2"}

    (node,) = node_statuses(SETTINGS, [dead])

    assert (node.hosts, node.state) == (["pc2"], "lost")


def test_the_embedded_node_carries_both_host_profiles() -> None:
    (node,) = node_statuses(SETTINGS, [_node("a", "127.0.0.1", True, mainpc=1, pc2=1)])

    assert (node.hosts, node.tags, node.state) == (["mainpc", "pc2"], ["mainpc", "pc2"], "alive")
