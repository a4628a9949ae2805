"""Logging set-up, done once by the CLI (replicas and actors use Ray's own handlers)."""

from __future__ import annotations

import logging

__all__ = ["configure_logging"]


def configure_logging(verbose: bool = False) -> None:
    """Send aisys's log records to stderr; quiet Ray's driver-side chatter unless verbose."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        for name in ("ray", "filelock", "httpx", "asyncio"):
            logging.getLogger(name).setLevel(logging.WARNING)
