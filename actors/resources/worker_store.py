"""SQLite persistence of model workers and of learned VRAM peaks (in ``resources.sqlite3``).

``workers`` holds every worker not yet over (waiting, starting, ready): a restarted scheduler
actor finds each one's Ray actor again by name or, when it is gone, releases its lease.
``learned_peaks`` holds, per kind (a model name or a worker class), the most VRAM NVML ever
measured for it; the next admission of that kind asks for at least that much.
"""

from __future__ import annotations

import threading
from pathlib import Path

from actors.resources.worker_models import WorkerStatus
from cluster.base.sqlite import open_database, transaction

__all__ = ["WorkerStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS workers (
    worker_id TEXT PRIMARY KEY,
    record    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS learned_peaks (
    kind       TEXT PRIMARY KEY,
    peak_mb    INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
"""

WHAT = (
    "the model workers the resource service runs (their leases are released at the next "
    "start instead of being found again) and the VRAM peaks learned per model kind"
)


class WorkerStore:
    """Write-through store of live workers and learned peaks; each method commits."""

    def __init__(self, path: Path) -> None:
        self._db = open_database(path, _SCHEMA, what=WHAT)
        self._lock = threading.Lock()

    def load(self) -> list[WorkerStatus]:
        with self._lock:
            rows = self._db.execute("SELECT record FROM workers").fetchall()
        return [WorkerStatus.model_validate_json(row[0]) for row in rows]

    def put(self, status: WorkerStatus) -> None:
        """Store a live worker; a stopped or failed one is deleted."""
        with self._lock, transaction(self._db):
            if status.state in ("stopped", "failed"):
                self._db.execute("DELETE FROM workers WHERE worker_id = ?", (status.worker_id,))
            else:
                self._db.execute(
                    "INSERT INTO workers (worker_id, record) VALUES (?, ?) "
                    "ON CONFLICT(worker_id) DO UPDATE SET record = excluded.record",
                    (status.worker_id, status.model_dump_json()),
                )

    def peaks(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT kind, peak_mb FROM learned_peaks").fetchall()
        return {str(kind): int(peak) for kind, peak in rows}

    def set_peak(self, kind: str, peak_mb: int, at: float) -> None:
        with self._lock, transaction(self._db):
            self._db.execute(
                "INSERT INTO learned_peaks (kind, peak_mb, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(kind) DO UPDATE SET peak_mb = excluded.peak_mb, "
                "updated_at = excluded.updated_at",
                (kind, peak_mb, at),
            )

    def close(self) -> None:
        self._db.close()
