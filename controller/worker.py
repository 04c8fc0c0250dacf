"""Entry point for Celery: ``celery -A controller.worker worker`` (and ``beat``).

Like ``labfleet worker``, it refuses a database whose schema is not this code's:
``labfleet db upgrade`` migrates it, once (docs/operations.md).
"""

from controller.app import create_app

flask_app = create_app()
flask_app.extensions["labfleet"].db.require_current_schema()
celery_app = flask_app.extensions["celery"]
