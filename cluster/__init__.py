"""Wiring of aisys: settings, host profiles, the Serve config builder, errors, the CLI."""

from cluster.errors import AisysError
from cluster.settings import Settings, load_settings

__all__ = ["AisysError", "Settings", "load_settings"]
