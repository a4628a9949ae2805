"""Classification of log lines by the configured patterns (the legacy log scanner's rules).

Patterns are searched case-insensitively, in order; the first that matches gives the line its
``error_type`` and ``severity``. A line no pattern matches is shipped unclassified.

Example::

    classifier = LineClassifier(settings.observability.logs.patterns)
    classifier.classify("redis: Connection refused").error_type   # "connection_error"
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from cluster.base.settings import LogPattern

__all__ = ["LineClassifier"]


class LineClassifier:
    """The compiled patterns of one configuration."""

    def __init__(self, patterns: Sequence[LogPattern]) -> None:
        # Settings validated every pattern already; compiling cannot fail here.
        self._rules = [(re.compile(p.pattern, re.IGNORECASE), p) for p in patterns]

    def classify(self, text: str) -> LogPattern | None:
        """The first pattern found in ``text``, or None."""
        for regex, pattern in self._rules:
            if regex.search(text):
                return pattern
        return None
