"""The labfleet controller.

The package itself imports nothing heavy, so that the instructor's CLI
(`controller.cli`) starts without loading Flask or SQLAlchemy; the application
factory lives in `controller.app` and is also reachable as
`controller.create_app`.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from controller.app import create_app

        return create_app
    raise AttributeError(f"module 'controller' has no attribute {name!r}")
