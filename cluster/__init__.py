"""aisys's lowest floor (:mod:`cluster.base`) and its top floor (:mod:`cluster.ops`)."""

from cluster.base.errors import AisysError
from cluster.base.settings import Settings, load_settings

__all__ = ["AisysError", "Settings", "load_settings"]
