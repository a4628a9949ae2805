"""SQLite failures leave a store usable and say which file is broken and what to do.

A write that fails half-way (a trigger raising, a full disk simulated with
``PRAGMA max_page_count``) is rolled back and the next write works; a file of garbage bytes
is a :class:`DatabaseUnusable` naming the file; the security store, shared by the actor's
event loop and its password threads, stays consistent under concurrent use; the security
actor over a corrupt file answers every call with that error instead of failing to start.
"""

from __future__ import annotations

import asyncio
import pickle
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from actors.errors.models import ErrorEvent, StoredEvent
from actors.errors.spool import Spool
from actors.logship.actor import LogShipperActor
from actors.logship.store import PositionStore
from actors.logship.tail import FileKey, Position
from actors.registry.actor import RegistryActor
from actors.registry.core import RegistryCore
from actors.registry.models import Registration
from actors.registry.store import SqliteRegistryStore
from actors.resources.models import EndedLease
from actors.resources.store import SqliteLeaseStore
from actors.security.actor import SecurityActor
from actors.security.core import SecurityCore
from actors.security.models import Grant
from actors.security.store import SecurityStore
from cluster.base.errors import DatabaseUnusable, DatabaseWriteFailed, SpoolFull, StorageError
from cluster.base.nats_client import NatsClient
from cluster.base.settings import (
    LogShippingSettings,
    PerfLogSettings,
    RegistrySettings,
    SecuritySettings,
)
from cluster.base.sqlite import Database, open_database, transaction
from deployments.core.journal import JournalEntry, RequestJournal
from deployments.core.models import TextRequest
from deployments.errors.index import ErrorIndex
from deployments.observability.alert_models import AlertHistoryEntry
from deployments.observability.alert_store import AlertStore
from deployments.observability.perflog import MetricEntry, PerfLog

SCHEMA = "CREATE TABLE IF NOT EXISTS t (x TEXT);"


def fill_disk(db: sqlite3.Connection) -> None:
    """Let the file grow no more: the next write that needs a page fails with SQLITE_FULL."""
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    db.execute(f"PRAGMA max_page_count = {pages}")


def free_disk(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA max_page_count = 1073741823")


def garbage(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not SQLite \x00\xff" * 400)
    return path


def test_garbage_file_is_unusable_naming_the_file_the_loss_and_the_fix(tmp_path: Path) -> None:
    path = garbage(tmp_path / "x.sqlite3")
    with pytest.raises(DatabaseUnusable) as caught:
        open_database(path, SCHEMA, what="the test's rows")
    text = str(caught.value)
    assert str(path) in text
    assert "aisys restore" in text and f"mv {path} {path}.corrupt" in text
    assert "the test's rows" in text
    assert caught.value.path == str(path)
    assert DatabaseUnusable.http_status == 503
    assert path.read_bytes().startswith(b"this is not SQLite")  # left as it was


@pytest.mark.parametrize(
    "error",
    [
        DatabaseUnusable("/d/x.sqlite3", "file is not a database", "restore it"),
        DatabaseWriteFailed("/d/x.sqlite3", "the disk is full", "free disk space on pc2"),
    ],
)
def test_storage_errors_survive_pickling(error: StorageError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error) and copy.path == error.path and copy.fix == error.fix


def test_error_mid_transaction_rolls_back_and_the_connection_stays_usable(
    tmp_path: Path,
) -> None:
    db = open_database(tmp_path / "x.sqlite3", SCHEMA, what="rows")
    db.execute(
        "CREATE TRIGGER no_bad BEFORE INSERT ON t WHEN new.x = 'bad' "
        "BEGIN SELECT RAISE(ABORT, 'bad row'); END"
    )
    with pytest.raises(sqlite3.IntegrityError, match="bad row"), transaction(db):
        db.execute("INSERT INTO t VALUES ('first')")
        db.execute("INSERT INTO t VALUES ('bad')")
    assert not db.in_transaction
    with transaction(db):
        db.execute("INSERT INTO t VALUES ('next')")
    assert [r[0] for r in db.execute("SELECT x FROM t")] == ["next"]


def test_python_error_mid_transaction_rolls_back(tmp_path: Path) -> None:
    db = open_database(tmp_path / "x.sqlite3", SCHEMA, what="rows")
    with pytest.raises(KeyError), transaction(db):
        db.execute("INSERT INTO t VALUES ('first')")
        raise KeyError("x")
    assert not db.in_transaction
    assert db.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_full_disk_is_a_503_naming_file_and_host_and_the_next_write_works(
    tmp_path: Path,
) -> None:
    path = tmp_path / "x.sqlite3"
    db: Database = open_database(path, SCHEMA, what="rows")
    fill_disk(db)
    with pytest.raises(DatabaseWriteFailed) as caught, transaction(db):
        for _ in range(50):
            db.execute("INSERT INTO t VALUES (?)", ("x" * 3000,))
    assert not db.in_transaction
    assert caught.value.http_status == 503
    assert str(path) in str(caught.value) and "free disk space on" in str(caught.value)
    assert db.execute("SELECT count(*) FROM t").fetchone() == (0,)  # nothing of it stored
    free_disk(db)
    with transaction(db):
        db.execute("INSERT INTO t VALUES ('next')")
    assert db.execute("SELECT count(*) FROM t").fetchone() == (1,)


def test_busy_file_is_a_write_failure_and_the_connection_stays_usable(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite3"
    db = open_database(path, SCHEMA, what="rows", timeout_s=0.05)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(DatabaseWriteFailed, match="write lock"), transaction(db):
        db.execute("INSERT INTO t VALUES ('x')")
    other.execute("ROLLBACK")
    with transaction(db):
        db.execute("INSERT INTO t VALUES ('x')")
    assert db.execute("SELECT count(*) FROM t").fetchone() == (1,)


def test_security_revocation_after_a_full_disk_works_once_space_is_back(tmp_path: Path) -> None:
    store = SecurityStore(tmp_path / "security.sqlite3")
    db = store._db
    fill_disk(db)
    with pytest.raises(DatabaseWriteFailed):
        for i in range(200):
            store.revoke(f"jti-{i}-" + "x" * 200, 2_000_000_000, i + 1)
    assert not db.in_transaction
    free_disk(db)
    store.revoke("after", 2_000_000_000, 1000)  # failed before: "within a transaction"
    assert "after" in store.revoked(0)
    assert store.version() == 1000


def test_security_core_version_does_not_move_when_the_revocation_is_not_stored(
    tmp_path: Path,
) -> None:
    core = SecurityCore(SecuritySettings(), tmp_path, lambda: 1_800_000_000.0)
    generated = core.ensure_admin(None)
    assert generated is not None
    pair = core.grant(
        Grant.model_validate({"grant_type": "password", "username": "admin", "password": generated})
    )
    before = core.version
    db = core._store._db
    fill_disk(db)
    with pytest.raises(sqlite3.OperationalError, match="full"):
        for i in range(1000):  # fill the revoked table's last page
            db.execute("INSERT INTO revoked VALUES (?, ?)", (f"filler-{i}", 2_000_000_000))
    with pytest.raises(DatabaseWriteFailed):
        core.revoke(pair.access_token)
    assert core.version == before
    assert core.feed().version == before  # the feed still answers on a full disk
    free_disk(db)
    core.revoke(pair.access_token)
    assert core.version == before + 1
    assert core.feed().version == before + 1


def test_security_store_is_consistent_under_two_threads(tmp_path: Path) -> None:
    store = SecurityStore(tmp_path / "security.sqlite3")
    errors: list[BaseException] = []

    def revoker() -> None:
        try:
            for i in range(300):
                store.revoke(f"r{i}", 2_000_000_000, i + 1)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    def granter() -> None:
        try:
            for i in range(300):
                store.add_refresh(f"h{i}", ("admin", "user", ["read"], 2e9), f"f{i}", (f"j{i}", 1))
                assert store.spend_refresh(f"h{i}") is not None
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=revoker), threading.Thread(target=granter)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.revoked(0)) == 300
    (spent,) = store._db.execute("SELECT count(*) FROM refresh_tokens WHERE used = 1").fetchone()
    assert spent == 300


def test_security_core_over_a_garbage_file_names_it(tmp_path: Path) -> None:
    path = garbage(tmp_path / "security.sqlite3")
    with pytest.raises(DatabaseUnusable, match="security.sqlite3"):
        SecurityCore(SecuritySettings(), tmp_path, lambda: 0.0)
    assert path.exists()


def test_security_actor_over_a_garbage_file_starts_and_answers_every_call_with_the_error(
    tmp_path: Path,
) -> None:
    garbage(tmp_path / "security.sqlite3")
    actor = SecurityActor(SecuritySettings(), str(tmp_path))  # no restart loop: it starts
    grant = Grant.model_validate({"grant_type": "password", "username": "a", "password": "b"})

    async def calls() -> None:
        with pytest.raises(DatabaseUnusable, match="aisys restore"):
            await actor.grant(grant)
        with pytest.raises(DatabaseUnusable):
            await actor.wait_changes(0, 0.1)
        with pytest.raises(DatabaseUnusable):
            await actor.ensure_admin(None)

    asyncio.run(calls())


def _event(i: int) -> StoredEvent:
    return StoredEvent(
        seq=i,
        event=ErrorEvent(agent="a", host="h", error_type="t", severity="error", message="m" * 500),
    )


def test_error_index_after_a_full_disk_indexes_again_once_space_is_back(tmp_path: Path) -> None:
    index = ErrorIndex(tmp_path / "index.sqlite3")
    fill_disk(index._db)
    with pytest.raises(DatabaseWriteFailed, match="index.sqlite3"):
        index.add([_event(i) for i in range(1, 50)])
    assert len(index) == 0  # the whole batch or nothing
    with pytest.raises(DatabaseWriteFailed):
        index.remember_imported([f"id{i}" + "x" * 200 for i in range(200)], 1.0)
    free_disk(index._db)
    index.add([_event(i) for i in range(1, 50)])
    index.remember_imported(["x"], 1.0)
    assert len(index) == 49 and index.known_ids(["x"]) == {"x"}


def test_error_index_and_spool_over_garbage_files_name_them(tmp_path: Path) -> None:
    with pytest.raises(DatabaseUnusable, match="index.sqlite3.*ERRORS stream"):
        ErrorIndex(garbage(tmp_path / "index.sqlite3"))
    with pytest.raises(DatabaseUnusable, match="spool.sqlite3.*NATS was unreachable"):
        Spool(garbage(tmp_path / "spool.sqlite3"), 1 << 20)


def test_spool_after_a_full_disk_takes_events_again(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite3", 1 << 30)
    fill_disk(spool._db)
    with pytest.raises(DatabaseWriteFailed, match="free disk space"):
        spool.put([("errors.x", f"e{i}", b"p" * 2000) for i in range(50)])
    assert len(spool) == 0
    with pytest.raises(SpoolFull):  # its own rollback still leaves the connection usable
        Spool(tmp_path / "spool.sqlite3", 1).put([("errors.x", "big", b"pp")])
    free_disk(spool._db)
    spool.put([("errors.x", "e1", b"p")])
    spool.remove(["e1"])
    assert len(spool) == 0


def _registration(agent_id: str) -> Registration:
    return Registration.model_validate(
        {"agent_id": agent_id, "host": "10.0.0.5", "port": 5709, "metadata": {"x": "y" * 3000}}
    )


def test_registry_after_a_full_disk_registers_again_and_memory_matches_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "registry.sqlite3"
    store = SqliteRegistryStore(path)
    core = RegistryCore(RegistrySettings(), store, lambda: 1_800_000_000.0)
    fill_disk(store._db)
    with pytest.raises(DatabaseWriteFailed, match="registry.sqlite3"):
        for i in range(20):
            core.register(_registration(f"A{i}"))
    stored = core.version
    free_disk(store._db)
    core.register(_registration("Z"))
    assert core.version == stored + 1
    reloaded = RegistryCore(RegistrySettings(), SqliteRegistryStore(path), lambda: 1.8e9)
    assert [r.agent_id for r in reloaded.list_agents()] == [r.agent_id for r in core.list_agents()]
    assert reloaded.version == core.version


def test_registry_actor_over_a_garbage_file_starts_and_answers_with_the_error(
    tmp_path: Path,
) -> None:
    path = garbage(tmp_path / "registry.sqlite3")

    async def calls() -> None:
        actor = RegistryActor(RegistrySettings(), str(path))
        with pytest.raises(DatabaseUnusable, match="registry.sqlite3.*agent registration"):
            await actor.register(_registration("A"))
        with pytest.raises(DatabaseUnusable):
            await actor.wait_changes(0, 0.1)

    asyncio.run(calls())


def _ended(i: int) -> EndedLease:
    return EndedLease.model_validate(
        {
            "state": "released",
            "lease_id": f"lease-{i}",
            "owner": "o" * 300,
            "ended_at": 1.0,
            "reason": "r" * 300,
        }
    )


def test_lease_store_after_a_full_disk_records_again(tmp_path: Path) -> None:
    store = SqliteLeaseStore(tmp_path / "resources.sqlite3")
    fill_disk(store._db)
    with pytest.raises(DatabaseWriteFailed, match="resources.sqlite3"):
        for i in range(100):
            store.ended(_ended(i))
    assert not store._db.in_transaction
    free_disk(store._db)
    store.ended(_ended(1000))
    assert store.history("lease-1000") == ["released"]
    with pytest.raises(DatabaseUnusable, match="VRAM leases"):
        SqliteLeaseStore(garbage(tmp_path / "bad" / "resources.sqlite3"))


def test_journal_alerts_and_perflog_write_again_after_a_full_disk(tmp_path: Path) -> None:
    journal = RequestJournal(tmp_path / "coordinator-journal.sqlite3")
    request = TextRequest(data="x" * 3000)
    fill_disk(journal._db)
    with pytest.raises(DatabaseWriteFailed, match="coordinator-journal"):
        for i in range(20):
            journal.add(JournalEntry(f"r{i}", 1, 1.0, request))
    free_disk(journal._db)
    journal.add(JournalEntry("after", 1, 1.0, request))
    assert "after" in [entry.request_id for entry in journal.pending()]

    perf = PerfLog(tmp_path / "perf.sqlite3", PerfLogSettings())
    fill_disk(perf._db)
    entry = MetricEntry(agent="a" * 128, action="b" * 128, duration_s=1, metadata={"m": "x" * 500})
    with pytest.raises(DatabaseWriteFailed, match="perf.sqlite3"):
        for _ in range(50):
            perf.log_metric(entry, 1.0)
    free_disk(perf._db)
    assert perf.log_metric(entry, 1.0).id > 0

    alerts = AlertStore(tmp_path / "alerts.sqlite3")
    fill_disk(alerts._db)
    history = [
        AlertHistoryEntry(
            at=float(i),
            fingerprint=f"{i}",
            rule="r",
            state="firing",
            labels={"x": "y" * 300},
            value=1,
        )
        for i in range(50)
    ]
    with pytest.raises(DatabaseWriteFailed, match="alerts.sqlite3"):
        alerts.sync([], [], [], [], history)
    assert alerts.history(None, 100) == []
    free_disk(alerts._db)
    alerts.sync([], [], [], [], history)
    assert len(alerts.history(None, 100)) == 50


@pytest.mark.parametrize(
    ("name", "open_it", "loss"),
    [
        ("coordinator-journal.sqlite3", RequestJournal, "user requests"),
        ("alerts.sqlite3", AlertStore, "alert rules"),
        ("perf.sqlite3", lambda p: PerfLog(p, PerfLogSettings()), "performance log"),
    ],
)
def test_replica_stores_over_garbage_files_name_them(
    tmp_path: Path, name: str, open_it: Callable[[Path], object], loss: str
) -> None:
    path = garbage(tmp_path / name)
    with pytest.raises(DatabaseUnusable, match=f"{name}.*{loss}"):
        open_it(path)


def test_log_positions_save_again_after_a_full_disk(tmp_path: Path) -> None:
    store = PositionStore(tmp_path / "logship.sqlite3")
    fill_disk(store._db)
    positions = [Position("/l/" + "p" * 500 + str(i), FileKey(1, i), 10) for i in range(50)]
    with pytest.raises(DatabaseWriteFailed, match="logship.sqlite3"):
        store.save("app", positions, [])
    assert store.load("app") == []
    free_disk(store._db)
    store.save("app", positions[:1], [])
    assert store.load("app") == positions[:1]


def test_log_shipper_actor_over_a_garbage_file_starts_and_sync_raises_the_error(
    tmp_path: Path,
) -> None:
    path = garbage(tmp_path / "logship.sqlite3")
    broker = NatsClient(url="nats://127.0.0.1:1")

    async def calls() -> None:
        actor = LogShipperActor("pc2", LogShippingSettings(), str(tmp_path), broker, str(path))
        with pytest.raises(DatabaseUnusable, match="logship.sqlite3.*shipped"):
            await actor.sync(LogShippingSettings())

    asyncio.run(calls())
