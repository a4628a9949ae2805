"""Names shared by every part of aisys: namespaces, actor names, application names.

Kept in one module so a rename cannot leave a reader behind (as Serve's ``_private/constants``).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "APP_CORE",
    "APP_ROUTE_PREFIXES",
    "RAY_NAMESPACE",
    "REGISTRY_ACTOR_NAME",
    "SERVE_NAMESPACE",
]

#: Ray namespace of every aisys actor and driver.
RAY_NAMESPACE: Final = "aisys"
#: The namespace Ray Serve puts its controller and replicas in.
SERVE_NAMESPACE: Final = "serve"

#: Named detached actor holding the agent registry.
REGISTRY_ACTOR_NAME: Final = "aisys.registry"

#: Serve application names (the keys of ``serve status``) and their route prefixes.
APP_CORE: Final = "core"
APP_ROUTE_PREFIXES: Final[dict[str, str]] = {
    APP_CORE: "/core",
}
