"""The domain modules (controller/*.py) know nothing of HTTP, the CLI, the pages or the process runtime.

What a service does must be callable from a worker, a script or a test without a Flask app: the edge
(controller/api/, controller/pages/, controller/cli/) and the runtime (controller/runtime/) import the
domain, never the other way round. Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import controller

PACKAGE = Path(controller.__file__).parent
# The composition roots: they wire the layers together, so they may import all of them.
ROOTS = {"__init__.py", "app.py", "wsgi.py", "worker.py", "celery_app.py"}
FORBIDDEN = ("flask", "werkzeug", "controller.api", "controller.cli", "controller.pages", "controller.runtime")


def forbidden(name: str) -> bool:
    return name.split(".")[0].startswith("flask_") or any(
        name == layer or name.startswith(layer + ".") for layer in FORBIDDEN)


def imported_names(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = ("controller." if node.level else "") + node.module
            # `from controller import api` imports the package controller.api.
            found += [(node.lineno, base)] if forbidden(base) else [
                (node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def test_domain_modules_import_no_edge_and_no_runtime():
    modules = sorted(p for p in PACKAGE.glob("*.py") if p.name not in ROOTS)
    assert len(modules) > 20, f"found only {len(modules)} domain modules in {PACKAGE}"
    offences = [f"controller/{path.name}:{line} imports {name}"
                for path in modules
                for line, name in imported_names(ast.parse(path.read_text(), str(path)))
                if forbidden(name)]
    assert not offences, "domain modules reach into the edge or the runtime:\n" + "\n".join(offences)


def test_the_http_edge_does_not_import_the_cli():
    """The CLI is a client of the API; a page that needs what the CLI renders takes it from the domain."""
    modules = sorted([*PACKAGE.glob("api/*.py"), *PACKAGE.glob("pages/*.py"), *PACKAGE.glob("runtime/*.py")])
    assert len(modules) > 20, f"found only {len(modules)} edge and runtime modules in {PACKAGE}"
    offences = [f"controller/{path.relative_to(PACKAGE)}:{line} imports {name}"
                for path in modules
                for line, name in imported_names(ast.parse(path.read_text(), str(path)))
                if name == "controller.cli" or name.startswith("controller.cli.")]
    assert not offences, "the HTTP edge reaches into the CLI:\n" + "\n".join(offences)
