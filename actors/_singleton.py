"""The one options helper for aisys's named, detached, host-pinned singleton actors.

Modelled on how Serve creates its controller: a fixed name and namespace, ``get_if_exists``
so every caller shares one instance, unlimited restarts (each restart re-runs the constructor,
which reloads from SQLite), and a tiny share of the host tag so it lands on that host.

Like Serve's own actors (``RAY_SERVE_ENABLE_TASK_EVENTS`` is off by default), the singletons
report no task events: every lookup, lease and registration is an actor call, and recording
each one's state changes for the dashboard's task list cost the caller, the actor and the GCS
CPU on every request. The actors themselves, their logs and their restarts still show in the
dashboard; only the per-call task rows do not.
"""

from __future__ import annotations

from typing import Any

from cluster.base.constants import RAY_NAMESPACE

__all__ = ["singleton_options"]

#: Share of a host tag a singleton actor asks for: enough to pin it, never enough to run out.
PIN_FRACTION = 0.001


def singleton_options(name: str, host_tag: str) -> dict[str, Any]:
    """``.options(**singleton_options(...))`` for the actor called ``name`` on ``host_tag``."""
    return {
        "name": name,
        "namespace": RAY_NAMESPACE,
        "lifetime": "detached",
        "get_if_exists": True,
        "max_restarts": -1,
        # Calls made while the actor restarts are retried rather than failed; the actors'
        # writes are idempotent or tolerate a replay (see each actor's notes).
        "max_task_retries": -1,
        "num_cpus": 0,
        "resources": {host_tag: PIN_FRACTION},
        "max_concurrency": 1000,
        "enable_task_events": False,
    }
