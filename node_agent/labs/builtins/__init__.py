"""Built-in checkers, solvers and resetters, one module per topic.

Every module in this package is imported once, the first time the registry is
asked for a kind; a module that fails to import is recorded in
``IMPORT_ERRORS`` (and its labs then fail to load with the kind named) rather
than taking every other topic down with it.
"""

from __future__ import annotations

import importlib
import pkgutil

IMPORT_ERRORS: dict[str, str] = {}


def load_all() -> None:
    for module in pkgutil.iter_modules(__path__):
        name = f"{__name__}.{module.name}"
        try:
            importlib.import_module(name)
        except Exception as exc:  # one broken topic must not hide the others
            IMPORT_ERRORS[name] = f"{type(exc).__name__}: {exc}"
