"""The resource ledger's state actor: GPU leases, tasks and model workers, recorded in SQLite."""
