"""The pages' routes: login, logout, the room and its live stream."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    redirect,
    render_template,
    request,
    session,
    stream_with_context,
    url_for,
)
from flask_login import UserMixin, current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFError
from sqlalchemy import select
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from controller import audit, web_accounts
from controller.models import Instructor
from controller.pages import EXTENSION, WEB_DIR, csrf
from controller.pages.live import FeedUnavailable, TooManyStreams
from controller.pages.room import CHECK_GLYPHS, ROOM_STATES, sort_key
from controller.runtime.app_state import app_state

log = logging.getLogger(__name__)

bp = Blueprint("pages", __name__, template_folder=str(WEB_DIR / "templates"),
               static_folder=str(WEB_DIR / "static"), static_url_path="/static")

STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")


class WebInstructor(UserMixin):
    def __init__(self, instructor: Instructor) -> None:
        self.instructor_id = instructor.id
        self.name = instructor.name
        self._key = web_accounts.session_key(instructor)

    def get_id(self) -> str:
        return f"{self.instructor_id}:{self._key}"


def load_instructor(user_id: str) -> WebInstructor | None:
    instructor_id, _, key = user_id.partition(":")
    with app_state().db.session() as db:
        instructor = db.scalar(select(Instructor).where(Instructor.id == instructor_id))
        if instructor is None or instructor.disabled_at is not None or not instructor.password_hash:
            return None
        user = WebInstructor(instructor)
    return user if user.get_id() == user_id else None  # a new password ends older sessions


class LoginForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=120)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


@bp.before_request
def protect() -> None:
    """CSRF on every state-changing request to a page (the login form included)."""
    if request.method in STATE_CHANGING:
        csrf.protect()


@bp.errorhandler(CSRFError)
def csrf_refused(exc: CSRFError):
    return render_template("error.html", title="Request refused",
                           message="This form was not sent from a labfleet page, or it expired. "
                                   "Go back, reload the page and try again."), 403


@bp.after_request
def page_headers(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
    if request.endpoint != "pages.static":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _pages():
    return current_app.extensions[EXTENSION]


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("pages.room")


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    message, status = "", 200
    if request.method == "POST":
        name = (request.form.get("name") or "").strip()[:120]
        address = request.remote_addr or ""
        limiter = _pages().limiter
        wait = limiter.blocked_for(name, address)
        if wait > 0:
            message, status = (f"Too many wrong passwords for {name!r} from your address: "
                               f"try again in {max(1, round(wait))} s."), 429
        elif form.validate_on_submit():
            with app_state().db.session() as db:
                instructor = web_accounts.authenticate(db, name, form.password.data)
                if instructor is not None:
                    audit.record(db, actor=f"instructor:{instructor.name}", action="web.login",
                                 target=instructor.id, address=address)
                    user = WebInstructor(instructor)
            if instructor is not None:
                session.clear()
                login_user(user)
                return redirect(_safe_next(request.args.get("next")))
            limiter.failed(name, address)
            log.warning("web login failed for %r from %s", name, address)
            message, status = "Wrong name or password.", 401
        else:
            message, status = "Give your name and password.", 400
    return render_template("login.html", form=form, message=message), status


@bp.post("/logout")
@login_required
def logout():
    with app_state().db.session() as db:
        audit.record(db, actor=f"instructor:{current_user.name}", action="web.logout",
                     target=current_user.instructor_id)
    logout_user()
    session.clear()
    return redirect(url_for("pages.login"))


@bp.get("/")
def index():
    return redirect(url_for("pages.room"))


@bp.get("/room")
@login_required
def room():
    tiles = sorted(_pages().feed.read_all().values(), key=sort_key)
    counts = {state: 0 for state in ROOM_STATES}
    for tile in tiles:
        counts[tile["state"]] += 1
    return render_template(
        "room.html", tiles=tiles, counts=counts, states=ROOM_STATES, check_glyphs=CHECK_GLYPHS,
        large=request.args.get("large") in ("1", "true"), query=request.args.get("q", "")[:200],
        state_filter=request.args.get("state", "") if request.args.get("state") in ROOM_STATES else "",
        now=datetime.now(UTC),
    )


@bp.get("/room/stream")
@login_required
def room_stream():
    feed = _pages().feed
    try:
        subscription = feed.subscribe()
    except TooManyStreams as exc:
        response = Response(f"{exc}; the page retries by itself\n", status=503, mimetype="text/plain")
        response.headers["Retry-After"] = "5"
        return response
    try:
        first = feed.first_frame(subscription)  # the feed's current tiles: no read of its own
    except FeedUnavailable as exc:
        feed.unsubscribe(subscription)
        response = Response(f"{exc}; the page retries by itself\n", status=503, mimetype="text/plain")
        response.headers["Retry-After"] = "5"
        return response
    except BaseException:
        feed.unsubscribe(subscription)
        raise
    response = Response(stream_with_context(feed.stream(subscription, first)), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # nginx in front: do not buffer the stream
    return response


@bp.app_template_filter("ago")
def ago(value: Any, now: datetime | None = None) -> str:
    if not value:
        return ""
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    seconds = max(0, int(((now or datetime.now(UTC)) - when).total_seconds()))
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"



# The node page and the attendee's pages, nested: they share this blueprint's CSRF check, headers and
# CSRF error page, and like every page they are not operations of the API document.
from controller.pages import attendee_page, node_page, provisioning_page  # noqa: E402

bp.register_blueprint(node_page.bp)
bp.register_blueprint(attendee_page.bp)
bp.register_blueprint(provisioning_page.bp)
