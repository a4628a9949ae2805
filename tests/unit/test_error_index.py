"""The ErrorBus query index (filters, paging, counts, pruning) and the on-disk spool."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from actors.errors.models import ErrorEvent, ErrorQuery, StoredEvent
from actors.errors.spool import Spool
from cluster.base.errors import SpoolFull
from deployments.errors.index import ErrorIndex

T0 = datetime(2025, 7, 15, tzinfo=UTC)


def _events() -> list[StoredEvent]:
    rows = [
        ("tts", "pc2", "timeout", "debug", "voice took long"),
        ("tts", "pc2", "crash", "critical", "Segfault in voice"),
        ("nlu", "mainpc", "timeout", "warning", "slow model"),
        ("nlu", "mainpc", "parse", "error", "bad VOICE command"),
        ("auth", "pc2", "LOGIN_ERROR", "error", "bad password"),
    ]
    return [
        StoredEvent(
            seq=i + 1,
            event=ErrorEvent(
                agent=a, host=h, error_type=t, severity=s, message=m, time=T0 + timedelta(minutes=i)
            ),
        )
        for i, (a, h, t, s, m) in enumerate(rows)
    ]


@pytest.fixture
def index(tmp_path: Path) -> ErrorIndex:
    idx = ErrorIndex(tmp_path / "index.sqlite3")
    idx.add(_events())
    return idx


def _seqs(index: ErrorIndex, **filters: object) -> list[int]:
    return [item.seq for item in index.query(ErrorQuery.model_validate(filters)).items]


def test_filters_combine_and_results_are_newest_first(index: ErrorIndex) -> None:
    assert _seqs(index) == [5, 4, 3, 2, 1]
    assert _seqs(index, agent="tts") == [2, 1]
    assert _seqs(index, host="mainpc", min_severity="error") == [4]
    assert _seqs(index, min_severity="warning", error_type="timeout") == [3]
    assert _seqs(index, text="voice") == [4, 2, 1]  # case-insensitive substring
    assert _seqs(index, since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3)) == [3, 2]
    assert _seqs(index, since="2025-07-15T00:03:00") == [5, 4]  # naive means UTC


def test_paging_walks_every_row_once(index: ErrorIndex) -> None:
    seen: list[int] = []
    cursor: int | None = None
    while True:
        page = index.query(ErrorQuery(limit=2, before_seq=cursor))
        seen += [item.seq for item in page.items]
        if page.next_before_seq is None:
            break
        cursor = page.next_before_seq
    assert seen == [5, 4, 3, 2, 1]


def test_counts_per_agent_by_severity(index: ErrorIndex) -> None:
    counts = index.counts(None).agents
    assert counts["tts"].total == 2
    assert counts["tts"].by_severity == {"debug": 1, "critical": 1}
    assert counts["nlu"].by_severity == {"warning": 1, "error": 1}
    assert set(index.counts(T0 + timedelta(minutes=4)).agents) == {"auth"}


def test_a_duplicate_event_id_is_indexed_once_and_prune_follows_retention(
    index: ErrorIndex,
) -> None:
    again = index.query(ErrorQuery(limit=1)).items[0].event
    index.add([StoredEvent(seq=99, event=again)])
    assert len(index) == 5
    assert index.prune_before(3) == 2
    assert _seqs(index) == [5, 4, 3]


def _item(n: int, size: int = 100) -> tuple[str, str, bytes]:
    return ("errors.error.x", f"id-{n}", b"x" * size)


def test_spool_keeps_order_across_reopen_and_removes_acked(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite3", max_bytes=10_000)
    spool.put([_item(1), _item(2)])
    spool.put([_item(3)])
    spool.put([_item(2)])  # the same event twice is kept once
    spool.close()
    spool = Spool(tmp_path / "spool.sqlite3", max_bytes=10_000)
    assert [i for _, i, _ in spool.peek(10)] == ["id-1", "id-2", "id-3"]
    spool.remove(["id-1", "id-3"])
    assert [i for _, i, _ in spool.peek(10)] == ["id-2"]
    assert (len(spool), spool.size_bytes()) == (1, 100)


def test_spool_full_accepts_nothing_of_the_batch_and_says_so(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite3", max_bytes=250)
    spool.put([_item(1), _item(2)])
    with pytest.raises(SpoolFull) as caught:
        spool.put([_item(3, 30), _item(4, 30)], stored=["id-0"])
    assert (caught.value.needed_bytes, caught.value.free_bytes, caught.value.stored) == (
        60,
        50,
        ["id-0"],
    )
    assert caught.value.http_status == 507
    assert "AISYS_ERRORS__SPOOL_MAX_MB" in str(caught.value)
    assert len(spool) == 2
    # It pickles across Ray like every AisysError.
    import pickle

    assert pickle.loads(pickle.dumps(caught.value)).stored == ["id-0"]
