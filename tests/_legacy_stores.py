"""Legacy stores made the way the legacy agents made them, for ``aisys import-legacy`` tests.

The schemas are the legacy DDL, verbatim (``docs/legacy-protocol.md`` §4.8, §4.14, §4.16); rows are
written as the legacy code wrote them (``str(datetime.now())`` through sqlite3, ``time.time()``,
``json.dumps``), plus the damaged rows a real store accumulates. Every builder returns what a
correct import must make of its store, so tests compare against it.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

__all__ = [
    "ERRORS_SCHEMA",
    "PERF_SCHEMA",
    "TRUST_SCHEMA",
    "Expected",
    "local_stamp",
    "registry_values",
    "write_errors_db",
    "write_perf_db",
    "write_trust_db",
]

# AgentTrustScorer._init_database (pc2_code/agents/AgentTrustScorer.py).
TRUST_SCHEMA = """
            CREATE TABLE IF NOT EXISTS model_scores (
                model_id TEXT PRIMARY KEY,
                trust_score REAL DEFAULT 0.5,
                total_interactions INTEGER DEFAULT 0,
                successful_interactions INTEGER DEFAULT 0,
                last_updated TIMESTAMP
            );
            CREATE TABLE IF NOT EXISTS performance_logs (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                model_id TEXT,
                success BOOLEAN,
                response_time REAL,
                error_message TEXT,
                timestamp TIMESTAMP,
                FOREIGN KEY (model_id) REFERENCES model_scores(model_id)
            );
"""

# PerformanceLoggerAgent._init_database (pc2_code/agents/PerformanceLoggerAgent.py).
PERF_SCHEMA = """
                CREATE TABLE IF NOT EXISTS metrics (
                    metric_id INTEGER PRIMARY KEY AUTOINCREMENT,
                    agent TEXT,
                    action TEXT,
                    duration REAL,
                    timestamp TIMESTAMP,
                    metadata TEXT
                );
                CREATE TABLE IF NOT EXISTS resource_usage (
                    usage_id INTEGER PRIMARY KEY AUTOINCREMENT,
                    agent TEXT,
                    cpu_percent REAL,
                    memory_mb REAL,
                    timestamp TIMESTAMP,
                    metadata TEXT
                );
                CREATE INDEX IF NOT EXISTS idx_metrics_agent ON metrics(agent);
                CREATE INDEX IF NOT EXISTS idx_metrics_timestamp ON metrics(timestamp);
                CREATE INDEX IF NOT EXISTS idx_resource_agent ON resource_usage(agent);
                CREATE INDEX IF NOT EXISTS idx_resource_timestamp ON resource_usage(timestamp);
"""

# ErrorBusService._init_database, the default schema (pc2_code/agents/error_bus_service.py).
ERRORS_SCHEMA = """
                    CREATE TABLE IF NOT EXISTS errors (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        timestamp REAL,
                        agent TEXT,
                        error_type TEXT,
                        message TEXT,
                        severity TEXT,
                        context TEXT
                    );
                    CREATE TABLE IF NOT EXISTS agent_health (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        agent TEXT,
                        status TEXT,
                        last_heartbeat REAL,
                        error_count INTEGER
                    );
                    CREATE TABLE IF NOT EXISTS recovery_actions (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        timestamp REAL,
                        agent TEXT,
                        action TEXT,
                        success INTEGER,
                        details TEXT
                    );
"""


@dataclass
class Expected:
    """What a correct import makes of a store: counts per kind, skip reasons with a row each."""

    imported: dict[str, int]
    skipped: dict[str, str] = field(default_factory=dict)  # reason -> one row it names
    agents: list[str] = field(default_factory=list)


def local_stamp(seconds: float) -> str:
    """``str(datetime.now())`` at ``seconds``, as sqlite3's default adapter stored it."""
    return str(datetime.fromtimestamp(seconds))


def _utc_iso(seconds: float) -> str:
    """``datetime.utcnow().isoformat()`` at ``seconds`` (naive, UTC)."""
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None).isoformat()


def _create(path: Path, schema: str) -> sqlite3.Connection:
    db = sqlite3.connect(path)
    db.executescript(schema)
    return db


def write_trust_db(path: Path, now: float, prefix: str = "m") -> Expected:
    """Two models with log rows, one with counts only, and damaged rows."""
    db = _create(path, TRUST_SCHEMA)
    logs = [
        (f"{prefix}-phi3", 1, 0.5, now - 3 * 3600),
        (f"{prefix}-phi3", 1, 1.2, now - 2 * 3600),
        (f"{prefix}-phi3", 0, 3.0, now - 3600),
        (f"{prefix}-phi3", 1, 0.1, now - 600),
        (f"{prefix}-whisper", 1, 0.2, now - 1800),
        (f"{prefix}-whisper", 1, 0.3, now - 900),
    ]
    for model, success, response_time, at in logs:
        db.execute(
            "INSERT INTO performance_logs (model_id, success, response_time, timestamp) "
            "VALUES (?, ?, ?, ?)",
            (model, success, response_time, local_stamp(at)),
        )
    bad_logs = [
        (f"{prefix}-phi3", "maybe", 0.1, local_stamp(now - 100)),
        (f"{prefix}-phi3", 1, 0.1, "yesterday"),
        (None, 1, 0.1, local_stamp(now - 100)),
    ]
    db.executemany(
        "INSERT INTO performance_logs (model_id, success, response_time, timestamp) "
        "VALUES (?, ?, ?, ?)",
        bad_logs,
    )
    scores = [
        (f"{prefix}-phi3", 0.6, 4, 3, local_stamp(now - 600)),
        (f"{prefix}-whisper", 0.9, 2, 2, local_stamp(now - 900)),
        (f"{prefix}-tinyllama", 0.55, 10, 7, local_stamp(now - 1200)),
        (f"{prefix}-ghost", 0.5, 0, 0, local_stamp(now - 1200)),
    ]
    db.executemany("INSERT INTO model_scores VALUES (?, ?, ?, ?, ?)", scores)
    db.commit()
    db.close()
    return Expected(
        imported={"outcomes": 6, "aggregates": 1},
        skipped={
            "success 'maybe' is not a boolean": "performance_logs #7",
            "timestamp 'yesterday' is neither ISO 8601 nor epoch": "performance_logs #8",
            "no model_id": "performance_logs #9",
            "its performance_logs rows are the evidence": f"model_scores #{prefix}-phi3",
            "inconsistent counts: 0 successes of 0": f"model_scores #{prefix}-ghost",
        },
        agents=[f"{prefix}-phi3", f"{prefix}-whisper", f"{prefix}-tinyllama"],
    )


def write_perf_db(path: Path, now: float, prefix: str = "p") -> Expected:
    """Metrics and usage in each timestamp form, one past each retention, damaged rows."""
    db = _create(path, PERF_SCHEMA)
    tts = f"{prefix}-tts"
    metrics = [
        (tts, "speak", 0.21, datetime.fromtimestamp(now - 60).isoformat(), json.dumps({"n": 1})),
        (tts, "speak", 0.34, now - 120, json.dumps({})),
        (tts, "load", 2.5, local_stamp(now - 3 * 86400)[:19], "not json"),
        (tts, "speak", 0.2, local_stamp(now - 40 * 86400), json.dumps({"old": True})),
        (tts, "speak", None, local_stamp(now - 60), json.dumps({})),
        (tts, "speak", 0.2, "soon", json.dumps({})),
    ]
    db.executemany(
        "INSERT INTO metrics (agent, action, duration, timestamp, metadata) VALUES (?, ?, ?, ?, ?)",
        metrics,
    )
    usage = [
        (tts, 12.5, 512.0, local_stamp(now - 300), json.dumps({"gpu": 0})),
        (tts, 14.0, 530.0, str(now - 200), json.dumps({})),
        (tts, 10.0, 500.0, local_stamp(now - 10 * 86400), json.dumps({})),
        (tts, -1.0, 500.0, local_stamp(now - 100), json.dumps({})),
    ]
    db.executemany(
        "INSERT INTO resource_usage (agent, cpu_percent, memory_mb, timestamp, metadata) "
        "VALUES (?, ?, ?, ?, ?)",
        usage,
    )
    db.commit()
    db.close()
    return Expected(
        imported={"metrics": 3, "usage": 2},
        skipped={
            "older than the metrics retention of 30 days": "metrics:",
            "older than the usage retention of 7 days": "resource_usage:",
            "not a valid metric: duration_s: Input should be a valid number": "metrics #5",
            "timestamp 'soon' is neither ISO 8601 nor epoch": "metrics #6",
            "not a valid usage sample: cpu_percent: Input should be greater than or equal to 0": (
                "resource_usage #4"
            ),
        },
        agents=[tts],
    )


def write_errors_db(path: Path, now: float, prefix: str = "e") -> Expected:
    """Errors as the bus stored them (epoch floats, one ISO string), and two health rows."""
    db = _create(path, ERRORS_SCHEMA)
    auth, mem = f"{prefix}-Auth", f"{prefix}-Memory"
    errors = [
        (now - 500, auth, "LOGIN_ERROR", "bad password", "ERROR", json.dumps({"user": "x"})),
        (now - 400, auth, "TIMEOUT", "slow", "WARNING", json.dumps({})),
        (_utc_iso(now - 300), mem, "resource_error", "Out of memory", "CRITICAL", "{}"),
        (now - 200, mem, "unknown", "odd context", "high", "not json"),
        (None, mem, "x", "no time", "ERROR", "{}"),
    ]
    db.executemany(
        "INSERT INTO errors (timestamp, agent, error_type, message, severity, context) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        errors,
    )
    db.executemany(
        "INSERT INTO agent_health (agent, status, last_heartbeat, error_count) VALUES (?, ?, ?, ?)",
        [(auth, "error", now - 400, 2), (mem, "error", now - 200, 3)],
    )
    db.commit()
    db.close()
    return Expected(
        imported={"events": 6},
        skipped={"no timestamp": "errors #5"},
        agents=[auth, mem],
    )


def registry_values(now: float, prefix: str = "r") -> tuple[dict[str, bytes], Expected]:
    """``service_registry:*`` values as the legacy registry SET them, and broken ones."""

    def record(port: int, health: int | None, caps: list[str], **extra: object) -> bytes:
        body = {
            "host": "10.0.0.5",
            "port": port,
            "health_check_port": health,
            "agent_type": "LegacyAgent",
            "capabilities": caps,
            "metadata": {"version": "1.0"},
            "last_registered": _utc_iso(now - 3600),
        }
        body.update(extra)
        return json.dumps(body, separators=(",", ":")).encode()

    nlu, tts, old = f"{prefix}-NLUAgent", f"{prefix}-TTSAgent", f"{prefix}-OldAgent"
    values = {
        f"service_registry:{nlu}": record(5709, None, ["reasoning", "nlu"]),
        f"service_registry:{tts}": record(5801, None, ["tts"], dependencies=["x"]),
        f"service_registry:{old}": record(5900, None, [], last_registered=None),
        f"service_registry:{prefix}-Broken": b"{not json",
        f"service_registry:{prefix}-List": b"[1, 2]",
        f"service_registry:{prefix}-Spaces": record(5902, None, ["text generation"]),
        f"service_registry:{prefix}-When": record(5903, None, [], last_registered="someday"),
    }
    return values, Expected(
        imported={"agents": 3},
        skipped={
            "value is not JSON (Expecting property name enclosed in double quotes)": (
                f"service_registry:{prefix}-Broken"
            ),
            "value is a JSON list, not an object": f"service_registry:{prefix}-List",
            "last_registered: timestamp 'someday' is neither ISO 8601 nor epoch": (
                f"service_registry:{prefix}-When"
            ),
        },
        agents=[nlu, tts, old],
    )
