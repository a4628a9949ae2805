"""Migration modes of the legacy services, and the status ``aisys migrate status`` shows.

Each legacy service is in one mode, set in the ``legacy_gateway`` settings:

* ``replace`` (the default): aisys answers its port.
* ``delegate`` (``delegate_to``): the still-running legacy agent answers; frames are forwarded
  verbatim (:mod:`legacy_gateway.delegate`) and aisys keeps no record.
* ``mirror`` (``mirror_to``): the legacy agent answers, and the registrations and events it
  accepted are recorded in aisys too (:mod:`legacy_gateway.mirror`).

:class:`PortUsage` is one bound port's mode and its callers (:mod:`legacy_gateway.usage`),
the rows of ``GET /legacy/migrate``.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel

from cluster.base.settings import LegacyGatewaySettings, LegacyService
from legacy_gateway.mirror import MirrorStats
from legacy_gateway.usage import CallStat

__all__ = ["MigrationMode", "MigrationStatus", "PortUsage", "ServiceMode", "mode_of"]


class MigrationMode(StrEnum):
    """Who answers a legacy service's port."""

    REPLACE = "replace"
    DELEGATE = "delegate"
    MIRROR = "mirror"


def mode_of(
    settings: LegacyGatewaySettings, service: LegacyService
) -> tuple[MigrationMode, str | None]:
    """The service's mode and the legacy agent's address (None in ``replace`` mode)."""
    if service in settings.delegate_to:
        return MigrationMode.DELEGATE, settings.delegate_to[service]
    if service in settings.mirror_to:
        return MigrationMode.MIRROR, settings.mirror_to[service]
    return MigrationMode.REPLACE, None


class ServiceMode(BaseModel):
    """One legacy service's mode, whether or not a gateway binds its port right now."""

    service: LegacyService
    legacy_name: str
    mode: MigrationMode
    legacy_address: str | None


class PortUsage(BaseModel):
    """One bound legacy port: its mode and who called it, how often, when last."""

    host: str
    service: LegacyService
    legacy_name: str
    port: int
    mode: MigrationMode
    legacy_address: str | None
    calls: list[CallStat]
    #: Calls counted under "(other)" because the port's table of callers was full.
    overflowed: int
    #: Mirror mode only: what was recorded in aisys.
    mirror: MirrorStats | None = None


class MigrationStatus(BaseModel):
    """``GET /legacy/migrate``: every service's mode and every bound port's callers."""

    services: list[ServiceMode]
    ports: list[PortUsage]
