"""Read the legacy AgentTrustScorer's SQLite into trust evidence.

The scorer (``docs/legacy-protocol.md`` §4.16) kept ``model_scores(model_id, trust_score,
total_interactions, successful_interactions, last_updated)`` and one ``performance_logs(id,
model_id, success, response_time, error_message, timestamp)`` row per call, stamped with
``datetime.now()`` (the PC's local time). Its score formula ignored history, so the scores are
not carried over; the evidence is:

* every ``performance_logs`` row becomes one outcome at its own time (success, response time),
  so the new score's decay weighs it by its age;
* a ``model_scores`` row whose model has log rows adds nothing (the rows are its evidence);
  one without log rows (the logs were lost or pruned) is imported as its counts — successes and
  failures — observed at ``last_updated``, and the report says so.

Example::

    read = read_trust(Path("cache/agent_trust_scores.db"), local_zone=None, now=time.time())
"""

from __future__ import annotations

from collections import Counter
from datetime import tzinfo
from pathlib import Path
from typing import Final

from pydantic import ValidationError

from actors.security.models import ImportedAggregate, ImportedOutcome, TrustOutcome
from cluster.ops.legacy_import._store import SourceRead, Table, read_sqlite, row_key
from cluster.ops.legacy_import.timestamps import parse_time

__all__ = ["SOURCE", "read_trust"]

SOURCE: Final = "trust"
_LOGS: Final = "performance_logs"
_SCORES: Final = "model_scores"
_LOG_COLUMNS: Final = ("id", "model_id", "success", "response_time", "error_message", "timestamp")
_SCORE_COLUMNS: Final = (
    "model_id",
    "trust_score",
    "total_interactions",
    "successful_interactions",
    "last_updated",
)
_TRUTH: Final = {"1": True, "true": True, "0": False, "false": False}

Evidence = ImportedOutcome | ImportedAggregate


def _model_id(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("no model_id")
    if len(value) > 128:
        raise ValueError("model_id longer than 128 characters")
    return value


def _success(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUTH:
        return _TRUTH[value.strip().lower()]
    raise ValueError(f"success {value!r} is not a boolean")


def _outcome(row: tuple[object, ...], zone: tzinfo | None, now: float) -> ImportedOutcome:
    _, model_id, success, response_time, _, timestamp = row
    latency = 0.0 if response_time is None else response_time  # the scorer's default
    if isinstance(latency, bool) or not isinstance(latency, int | float):
        raise ValueError(f"response_time {latency!r} is not a number")
    try:
        outcome = TrustOutcome(kind="interaction", success=_success(success), latency_s=latency)
    except ValidationError:
        raise ValueError(f"response_time {latency!r} is outside 0-3600 s") from None
    return ImportedOutcome(
        key=row_key(_LOGS, row),
        agent=_model_id(model_id),
        at=parse_time(timestamp, zone, now=now),
        outcome=outcome,
    )


def _aggregate(row: tuple[object, ...], zone: tzinfo | None, now: float) -> ImportedAggregate:
    model_id, _, total, successes, last_updated = row
    if not isinstance(total, int) or not isinstance(successes, int):
        raise ValueError("interaction counts are not integers")
    if total <= 0 or not 0 <= successes <= total:
        raise ValueError(f"inconsistent counts: {successes} successes of {total}")
    return ImportedAggregate(
        key=row_key(_SCORES, row),
        agent=_model_id(model_id),
        at=parse_time(last_updated, zone, now=now),
        successes=successes,
        failures=total - successes,
    )


def read_trust(path: Path, local_zone: tzinfo | None, now: float) -> SourceRead[Evidence]:
    """Read both tables of the scorer's database at ``path``, sorted by time.

    Args:
        path: the legacy ``agent_trust_scores.db``.
        local_zone: the legacy PCs' zone, for the naive ``datetime.now()`` stamps (None: this
            machine's zone).
        now: the time of the import; later timestamps are refused.

    Raises:
        LegacySourceUnreadable: the file is missing, not SQLite, or has neither table.
    """
    logged: Counter[str] = Counter()

    def outcome(row: tuple[object, ...]) -> Evidence:
        item = _outcome(row, local_zone, now)
        logged[item.agent] += 1
        return item

    def aggregate(row: tuple[object, ...]) -> Evidence:
        if isinstance(row[0], str) and logged[row[0]]:
            raise ValueError("its performance_logs rows are the evidence")
        return _aggregate(row, local_zone, now)

    # The log rows first: whether a model_scores row is needed depends on them.
    tables = [
        Table(_LOGS, _LOG_COLUMNS, outcome),
        Table(_SCORES, _SCORE_COLUMNS, aggregate),
    ]
    result = read_sqlite(path, SOURCE, "AgentTrustScorer", tables)
    # In time order, so each batch continues the evidence the one before it stored.
    result.items.sort(key=lambda item: (item.at, item.key))
    return result
