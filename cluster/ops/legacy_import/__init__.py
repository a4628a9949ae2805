"""``aisys import-legacy``: the legacy system's stores read into the running aisys services.

Four sources, each optional: the ServiceRegistry's Redis backend (registry entries), the
AgentTrustScorer's SQLite (trust evidence), the PerformanceLoggerAgent's SQLite (performance
log) and the error bus's SQLite (ErrorBus events). Every imported row carries a key derived from
its content, and every target skips keys it already holds, so importing twice imports once.

Only :mod:`cluster.base.tally` is imported here: the actors and deployments that
receive the rows use it, and must not pull in the readers (Redis, SQLite) with it.
"""

from cluster.base.tally import ImportTally, SkipGroup

__all__ = ["ImportTally", "SkipGroup"]
