"""``aisys import-legacy``: read each named legacy store, then hand its rows to their owner.

Every store is read first, so an unreadable one is reported before anything is sent. The rows
then go, in batches, to the service that owns them, over the same Ray connection the other
admin commands use (works from either host of a two-host cluster):

=================  ===========================================  ================================
source             owner (where it runs)                        Ray call
=================  ===========================================  ================================
``--redis``        registry actor (CoreOrchestrator's host)     ``import_agents``
``--trust-db``     security actor (SecurityGateway's host)      ``import_trust``
``--perf-db``      ObservabilityHub deployment (its host)       ``import_perf`` (Serve handle)
``--errors-db``    ErrorBus deployment (its host)               ``import_events`` (Serve handle)
=================  ===========================================  ================================

Each owner skips the keys it already holds, so a second import adds nothing; an import that
stopped half-way is completed by running it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import tzinfo
from pathlib import Path
from typing import Any, TextIO, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field
from ray import serve
from ray.exceptions import RayError
from ray.serve.exceptions import RayServeException

from actors.registry.client import RegistryClient
from actors.security.client import SecurityClient
from cluster.base.constants import (
    APP_ERRORS,
    APP_OBSERVABILITY,
)
from cluster.base.errors import ClusterError, ConfigError, LegacySourceUnreadable
from cluster.base.settings import Settings
from cluster.base.tally import ImportTally
from cluster.ops._progress import Progress
from cluster.ops.legacy_import import errorbus, perf, registry, trust
from cluster.ops.legacy_import._store import SourceRead
from cluster.ops.system import connect
from deployments.observability.perflog import ImportedMetric, ImportedUsage, PerfImport

__all__ = ["ImportReport", "LegacySources", "SourceReport", "import_legacy", "render_report"]

T = TypeVar("T")
C = TypeVar("C")
#: Rows per Ray call: small enough for one quick transaction, large enough to be cheap.
BATCH = 1000
#: Longest one batch may take before the import reports the owner as unavailable.
CALL_TIMEOUT_S = 300.0


class LegacySources(BaseModel):
    """The stores to import (each optional) and the zone of the legacy PCs' local times."""

    redis_url: str | None = None
    trust_db: Path | None = None
    perf_db: Path | None = None
    errors_db: Path | None = None
    local_zone: str | None = Field(default=None, description="IANA name; None: this machine's.")


class SourceReport(BaseModel):
    """What one source gave: rows read, imported, skipped (by reason), and its problems."""

    source: str
    location: str
    read: dict[str, int] = Field(default_factory=dict)
    tally: ImportTally = Field(default_factory=ImportTally)
    notes: dict[str, int] = Field(default_factory=dict)
    problems: list[str] = Field(default_factory=list)


class ImportReport(BaseModel):
    sources: list[SourceReport]

    @property
    def complete(self) -> bool:
        """True when every store (and every table of it) could be read."""
        return not any(source.problems for source in self.sources)


def _zone(name: str | None) -> tzinfo | None:
    if name is None:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"--local-tz {name!r} is not a known time zone (e.g. Asia/Manila)"
        ) from exc


Reader = tuple[str, str, Callable[[], SourceRead[Any]]]


def _readers(sources: LegacySources, now: float) -> list[Reader]:
    """(source, location, read) of every store named, in the order they are imported."""
    zone = _zone(sources.local_zone)
    readers: list[Reader] = []
    if sources.redis_url is not None:
        url = sources.redis_url
        location = registry.safe_url(url)
        readers.append((registry.SOURCE, location, lambda: registry.read_registry(url, now)))
    if sources.trust_db is not None:
        trust_db = sources.trust_db
        readers.append((trust.SOURCE, str(trust_db), lambda: trust.read_trust(trust_db, zone, now)))
    if sources.perf_db is not None:
        perf_db = sources.perf_db
        readers.append((perf.SOURCE, str(perf_db), lambda: perf.read_perf(perf_db, zone, now)))
    if sources.errors_db is not None:
        errors_db = sources.errors_db
        readers.append(
            (errorbus.SOURCE, str(errors_db), lambda: errorbus.read_errors(errors_db, now))
        )
    if not readers:
        raise ConfigError("name at least one source: --redis, --trust-db, --perf-db or --errors-db")
    return readers


def _in_batches(items: Sequence[T], call: Callable[[list[T]], ImportTally]) -> ImportTally:
    tally = ImportTally()
    for start in range(0, len(items), BATCH):
        tally.merge(call(list(items[start : start + BATCH])))
    return tally


def _client(named: Callable[[], C], service: str) -> C:
    try:
        return named()
    except ValueError as exc:
        raise ClusterError(
            f"the {service} is not deployed; run `aisys up` or `aisys deploy`"
        ) from exc


def _app(name: str) -> Any:
    try:
        return serve.get_app_handle(name)
    except RayServeException as exc:
        raise ClusterError(
            f"the Serve application {name!r} is not deployed; run `aisys up` or `aisys deploy`"
        ) from exc


def _send_registry(items: list[Any]) -> ImportTally:
    registry = _client(RegistryClient.named, "agent registry")
    return _in_batches(
        items, lambda batch: registry.import_agents(batch).get(timeout_s=CALL_TIMEOUT_S)
    )


def _send_trust(items: list[Any]) -> ImportTally:
    security = _client(SecurityClient.named, "SecurityGateway")
    return _in_batches(
        items, lambda batch: security.import_trust(batch).get(timeout_s=CALL_TIMEOUT_S)
    )


def _send_perf(items: list[Any]) -> ImportTally:
    handle = _app(APP_OBSERVABILITY)

    def call(batch: list[Any]) -> ImportTally:
        rows = PerfImport(
            metrics=[i for i in batch if isinstance(i, ImportedMetric)],
            usage=[i for i in batch if isinstance(i, ImportedUsage)],
        )
        tally: ImportTally = handle.import_perf.remote(rows).result(timeout_s=CALL_TIMEOUT_S)
        return tally

    return _in_batches(items, call)


def _send_errors(items: list[Any]) -> ImportTally:
    handle = _app(APP_ERRORS)

    def call(batch: list[Any]) -> ImportTally:
        tally: ImportTally = handle.import_events.remote(batch).result(timeout_s=CALL_TIMEOUT_S)
        return tally

    return _in_batches(items, call)


_SENDERS: dict[str, Callable[[list[Any]], ImportTally]] = {
    registry.SOURCE: _send_registry,
    trust.SOURCE: _send_trust,
    perf.SOURCE: _send_perf,
    errorbus.SOURCE: _send_errors,
}


def import_legacy(settings: Settings, sources: LegacySources, progress: Progress) -> ImportReport:
    """Read every named store, then import what it holds into the running system.

    Raises:
        ConfigError: no store is named, or ``local_zone`` is not a time zone.
        ClusterError: the cluster, or a service that owns a source's rows, is unreachable.
            What was imported before stays; running the import again completes it.
    """
    now = time.time()
    reports: list[SourceReport] = []
    reads: list[tuple[SourceReport, list[Any]]] = []
    for source, location, read in _readers(sources, now):
        report = SourceReport(source=source, location=location)
        reports.append(report)
        try:
            with progress.step(f"Reading {source} from {location}"):
                got = read()
        except LegacySourceUnreadable as exc:
            report.problems.append(exc.reason)
            continue
        report.read, report.notes, report.problems = got.read, got.notes, got.problems
        report.tally.merge(got.tally)
        reads.append((report, got.items))
    if any(items for _, items in reads):
        connect(settings)
    for report, items in reads:
        if not items:
            continue
        with progress.step(f"Importing {len(items)} {report.source} rows"):
            try:
                report.tally.merge(_SENDERS[report.source](items))
            except (RayError, RayServeException, TimeoutError) as exc:
                raise ClusterError(
                    f"importing {report.source} failed: {exc}; what was imported is kept, and "
                    "running the same import again completes it"
                ) from exc
    return ImportReport(sources=reports)


def _examples(examples: list[str], count: int) -> str:
    more = count - len(examples)
    return ", ".join(examples) + (f" (and {more} more)" if more > 0 else "")


def render_report(report: ImportReport, out: TextIO) -> None:
    """Print, per source, what was read, imported and skipped (with the reasons)."""
    for source in report.sources:
        out.write(f"{source.source}: {source.location}\n")
        read = ", ".join(f"{n} {what}" for what, n in source.read.items()) or "nothing"
        out.write(f"  read      {read}\n")
        imported = ", ".join(f"{n} {what}" for what, n in source.tally.imported.items())
        out.write(f"  imported  {imported or 'nothing'}\n")
        for reason, group in source.tally.skipped.items():
            examples = _examples(group.examples, group.count)
            out.write(f"  skipped   {group.count} ({reason}): {examples}\n")
        for note, count in source.notes.items():
            out.write(f"  note      {count} {note}\n")
        for problem in source.problems:
            out.write(f"  FAILED    {problem}\n")
    if not report.complete:
        out.write(
            "Some stores could not be read (FAILED above); fix them and run the import again.\n"
        )
