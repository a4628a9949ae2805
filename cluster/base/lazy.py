"""Re-exports a package imports on first use, so that importing one light module of it stays light.

Python imports a package's ``__init__`` before any module in it: a package that re-exports its
classes at the top makes ``from pkg.models import X`` pay for every heavy import of the package
(NATS, aiohttp, the service cores). With :func:`lazy_exports`, the package keeps its public names
(``from pkg import X`` and ``pkg.X`` still work) and loads each one's module when it is asked for
(PEP 562).

Example (a package's ``__init__.py``)::

    from typing import TYPE_CHECKING

    from cluster.base.lazy import lazy_exports

    if TYPE_CHECKING:  # what type checkers and readers see
        from pkg.core import Core

    __all__ = ["Core"]
    __getattr__ = lazy_exports(__name__, {"Core": "pkg.core"})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, sources: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: each name of ``sources`` comes from its module.

    Args:
        package: the package's ``__name__``.
        sources: exported name -> the module that defines it.
    """

    def __getattr__(name: str) -> Any:  # noqa: N807 (the name Python looks up, PEP 562)
        source = sources.get(name)
        if source is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source), name)
        setattr(sys.modules[package], name, value)  # found by plain lookup from now on
        return value

    return __getattr__
