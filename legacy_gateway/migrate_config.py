"""``aisys migrate-config``: a legacy ``startup_config.yaml`` without the consolidated agents.

Both legacy layouts are read: MainPC's ``agent_groups`` (group -> agent name -> entry) and PC2's
``pc2_services`` (a list of entries with ``name``). The 15 consolidated agents are removed; every
dependency on one of them is dropped where the legacy gateway now answers that agent's port
(ServiceRegistry, SystemDigitalTwin, the error bus) and otherwise rewritten to the aisys service
that replaced it. Dependencies that name no agent of the file and no aisys service are reported
as dangling. An agent still in ``delegate`` or ``mirror`` mode (``legacy_gateway.delegate_to``
and ``mirror_to``: its legacy agent still answers) is kept, and so are the dependencies on it.
YAML comments and anchors are not kept (the file is re-serialised).

Example::

    result = migrate(yaml.safe_load(Path("startup_config.yaml").read_text()))
    Path("startup_config.aisys.yaml").write_text(yaml.safe_dump(result.config, sort_keys=False))
    print("\\n".join(result.report.summary()))
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict

from cluster.base.errors import ConfigError

__all__ = [
    "CONSOLIDATED",
    "GATEWAY_ANSWERS",
    "KeptAgent",
    "MigrationReport",
    "MigrationResult",
    "migrate",
]

#: Every consolidated legacy agent and the aisys service that replaced it.
CONSOLIDATED: Final[dict[str, str]] = {
    "ServiceRegistry": "CoreOrchestrator",
    "SystemDigitalTwin": "CoreOrchestrator",
    "RequestCoordinator": "CoreOrchestrator",
    "UnifiedSystemAgent": "CoreOrchestrator",
    "PredictiveHealthMonitor": "ObservabilityHub",
    "PerformanceMonitor": "ObservabilityHub",
    "HealthMonitor": "ObservabilityHub",
    "PerformanceLoggerAgent": "ObservabilityHub",
    "SystemHealthManager": "ObservabilityHub",
    "ObservabilityHub": "ObservabilityHub",
    "ResourceManager": "ResourceScheduler",
    "TaskScheduler": "ResourceScheduler",
    "AsyncProcessor": "ResourceScheduler",
    "VRAMOptimizerAgent": "ResourceScheduler",
    "ErrorBus": "ErrorBus",
    "AuthenticationAgent": "SecurityGateway",
    "AgentTrustScorer": "SecurityGateway",
}
#: Consolidated agents whose legacy port the gateway answers: a dependency on them is dropped.
GATEWAY_ANSWERS: Final = frozenset({"ServiceRegistry", "SystemDigitalTwin", "ErrorBus"})
_AISYS_SERVICES: Final = frozenset(CONSOLIDATED.values())


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DependencyChange(_Model):
    """One dependency of one remaining agent that was dropped or rewritten."""

    agent: str
    dependency: str
    replaced_by: str | None  # None: dropped


class KeptAgent(_Model):
    """A consolidated agent left in the file: the gateway still forwards its port to it."""

    agent: str
    mode: Literal["delegate", "mirror"]
    in_file: bool  # False: the file does not start it (another host's file may)


class MigrationReport(_Model):
    """What :func:`migrate` changed, and what it could not resolve."""

    layout: Literal["agent_groups", "pc2_services"]
    removed: list[str]
    kept: list[KeptAgent] = []
    rewritten: list[DependencyChange]
    dropped: list[DependencyChange]
    dangling: list[DependencyChange]
    kept_agents: int

    def summary(self) -> list[str]:
        """Human-readable lines: the diff summary ``aisys migrate-config`` prints."""
        lines = [
            f"layout: {self.layout}; {self.kept_agents} agents kept, "
            f"{len(self.removed)} consolidated agents removed",
        ]
        lines += [f"  - removed {name} (now {CONSOLIDATED[name]})" for name in self.removed]
        lines += [
            f"  = kept {k.agent} ({k.mode} mode: the legacy gateway forwards its port to it)"
            + ("" if k.in_file else "; this file does not start it")
            for k in self.kept
        ]
        lines += [
            f"  ~ {c.agent}: dependency {c.dependency} -> {c.replaced_by}" for c in self.rewritten
        ]
        lines += [
            f"  ~ {c.agent}: dependency {c.dependency} dropped (the legacy gateway answers it)"
            for c in self.dropped
        ]
        if self.dangling:
            lines.append(f"{len(self.dangling)} dependencies would dangle:")
            lines += [
                f"  ! {c.agent} depends on {c.dependency}, which no agent here provides"
                for c in self.dangling
            ]
        return lines


class MigrationResult(_Model):
    config: dict[str, Any]
    report: MigrationReport


def _entries(config: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, entry) of every agent of either layout, in file order."""
    groups = config.get("agent_groups")
    if isinstance(groups, dict):
        for group in groups.values():
            if isinstance(group, dict):
                for name, entry in group.items():
                    if isinstance(entry, dict):
                        yield str(name), entry
    services = config.get("pc2_services")
    if isinstance(services, list):
        for entry in services:
            if isinstance(entry, dict) and "name" in entry:
                yield str(entry["name"]), entry


def _layout(config: object) -> Literal["agent_groups", "pc2_services"]:
    if isinstance(config, dict):
        if isinstance(config.get("agent_groups"), dict):
            return "agent_groups"
        if isinstance(config.get("pc2_services"), list):
            return "pc2_services"
    raise ConfigError(
        "not a legacy startup_config.yaml: expected an 'agent_groups' mapping (MainPC) or a "
        "'pc2_services' list (PC2) at the top level"
    )


def _remove_consolidated(config: dict[str, Any], gone: frozenset[str]) -> list[str]:
    removed: list[str] = []
    groups = config.get("agent_groups")
    if isinstance(groups, dict):
        for group in groups.values():
            if isinstance(group, dict):
                for name in [n for n in group if n in gone]:
                    del group[name]
                    removed.append(str(name))
    services = config.get("pc2_services")
    if isinstance(services, list):
        kept = [e for e in services if not (isinstance(e, dict) and e.get("name") in gone)]
        removed += [str(e["name"]) for e in services if e not in kept]
        services[:] = kept
    return removed


def migrate(
    config: object, still_answering: Mapping[str, Literal["delegate", "mirror"]] | None = None
) -> MigrationResult:
    """Remove the consolidated agents from a parsed legacy startup config; the input is unchanged.

    Args:
        config: the parsed legacy ``startup_config.yaml``.
        still_answering: consolidated agents the legacy gateway still forwards to (by legacy
            name, with their mode): kept, with every dependency on them.

    Raises:
        ConfigError: ``config`` is in neither legacy layout.
    """
    layout = _layout(config)
    assert isinstance(config, dict)  # _layout checked it
    keep = dict(still_answering or {})
    result = copy.deepcopy(config)
    present = {name for name, _ in _entries(result)}
    removed = _remove_consolidated(result, frozenset(CONSOLIDATED) - set(keep))
    remaining = {name for name, _ in _entries(result)}
    rewritten: list[DependencyChange] = []
    dropped: list[DependencyChange] = []
    dangling: list[DependencyChange] = []
    for name, entry in _entries(result):
        deps = entry.get("dependencies")
        if not isinstance(deps, list):
            continue
        new_deps: list[str] = []
        for dep in (str(d) for d in deps):
            if dep in keep:
                if dep not in new_deps:
                    new_deps.append(dep)
                continue
            if dep in GATEWAY_ANSWERS:
                dropped.append(DependencyChange(agent=name, dependency=dep, replaced_by=None))
                continue
            target = CONSOLIDATED.get(dep, dep)
            if target != dep:
                rewritten.append(DependencyChange(agent=name, dependency=dep, replaced_by=target))
            elif dep not in remaining and dep not in _AISYS_SERVICES:
                dangling.append(DependencyChange(agent=name, dependency=dep, replaced_by=None))
            if target not in new_deps:
                new_deps.append(target)
        entry["dependencies"] = new_deps
    report = MigrationReport(
        layout=layout,
        removed=removed,
        kept=[
            KeptAgent(agent=name, mode=mode, in_file=name in present)
            for name, mode in sorted(keep.items())
        ],
        rewritten=rewritten,
        dropped=dropped,
        dangling=dangling,
        kept_agents=len(remaining),
    )
    return MigrationResult(config=result, report=report)
