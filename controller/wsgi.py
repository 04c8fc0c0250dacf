"""Entry point for WSGI servers: ``gunicorn controller.wsgi:app``.

It refuses a database whose schema is not this code's, as ``labfleet serve`` does:
run ``labfleet db upgrade`` once first (docs/operations.md).
"""

from controller.app import create_app

app = create_app()
app.extensions["labfleet"].db.require_current_schema()
