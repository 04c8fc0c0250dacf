"""Entry point for WSGI servers: ``gunicorn controller.wsgi:app``."""

from controller.app import create_app

app = create_app()
