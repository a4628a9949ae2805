"""The agent registry: models, the plain-Python core, its SQLite store, actor and follower."""

from actors.registry.core import RegistryCore
from actors.registry.models import (
    AgentQuery,
    AgentRecord,
    Change,
    ChangeFeed,
    Health,
    Heartbeat,
    Registration,
)
from actors.registry.view import RegistryView

__all__ = [
    "AgentQuery",
    "AgentRecord",
    "Change",
    "ChangeFeed",
    "Health",
    "Heartbeat",
    "Registration",
    "RegistryCore",
    "RegistryView",
]
