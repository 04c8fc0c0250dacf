"""The instructor's web pages (docs/web.md): login, the room and its live stream.

Beside the JSON API, not on it: the pages authenticate with a session cookie
(Flask-Login) and every state-changing request they make carries a CSRF token
(Flask-WTF). The API keeps its bearer tokens; a request with a bearer token
never carries ambient credentials, so the API needs no CSRF token and gets no
check. Templates and static files live in the repository's ``web/`` folder.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

from controller.pages.live import RoomFeed
from controller.web_accounts import LoginLimiter

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
EXTENSION = "labfleet_pages"

csrf = CSRFProtect()


class PagesState:
    def __init__(self, *, limiter: LoginLimiter, feed: RoomFeed) -> None:
        self.limiter = limiter
        self.feed = feed


def init_pages(app: Flask) -> None:
    from controller.pages import views

    state = app.extensions["labfleet"]
    settings = state.settings
    app.config.update(
        SESSION_COOKIE_NAME="labfleet_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.serves_tls or settings.public_url.startswith("https:"),
        # Checked by the pages' blueprint only (views.protect): the bearer-token APIs never see it.
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the login session
    )
    csrf.init_app(app)
    login = LoginManager()
    login.init_app(app)
    login.login_view = "pages.login"
    login.login_message = "Log in to see the room."
    login.user_loader(views.load_instructor)
    app.extensions[EXTENSION] = PagesState(
        limiter=LoginLimiter.from_redis_url(settings.redis_url),
        # Streams hold a thread each: a tenth of a process's threads at most (docs/web.md).
        feed=RoomFeed(state.db, max_streams=max(2, settings.web_threads // 10)),
    )
    from controller.pages import terminal  # adds the shared terminal's routes to views.bp

    terminal.init_terminal(app)
    app.register_blueprint(views.bp)
