"""The shared terminal's pages and WebSockets (docs/terminal.md).

- ``/terminal/<node>``: an instructor watches a node's terminal (types with the attendee's consent);
- ``/attendee/terminal``: the attendee's own terminal (their access code signs them in);
- ``/terminal/<node>/ws``, ``/attendee/terminal/ws``: the browsers' WebSockets;
- ``/api/agent/v1/nodes/<id>/terminal/<session>``: the agent's WebSocket (its node token);
- ``/terminal/<node>/recordings[/<name>]``: recordings and their replay;
- ``/vendor/<file>``: the front-end packages npm installed in ``web/node_modules`` (a fixed list).

The WebSockets are simple-websocket servers on the request's own socket
(gunicorn's threaded workers and werkzeug both hand it over): each browser and
each agent connection holds one thread while open, like a long-poll.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import urlsplit

from flask import (
    Response,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_login import current_user, login_required
from simple_websocket import ConnectionClosed, Server
from sqlalchemy import select

from controller import audit, commands
from controller import terminal_recordings as recordings
from controller.api.auth import require_node
from controller.api.db_session import get_session
from controller.errors import Forbidden, Unauthenticated
from controller.models import Node
from controller.pages import WEB_DIR
from controller.pages import attendee_session as attendees
from controller.pages.views import bp
from controller.runtime.app_state import app_state
from controller.runtime.terminal_hub import Elsewhere, Owners, Session, TerminalHub, Viewer

log = logging.getLogger(__name__)

EXTENSION = "labfleet_terminal"
OPEN_TIMEOUT = 10.0
OPEN_DEADLINE = 30.0
RECEIVE_TIMEOUT = 30.0  # a browser or agent loop wakes this often to notice an ended session
VENDOR = {
    "xterm.js": "@xterm/xterm/lib/xterm.js",
    "xterm.css": "@xterm/xterm/css/xterm.css",
    "addon-fit.js": "@xterm/addon-fit/lib/addon-fit.js",
    "asciinema-player.js": "asciinema-player/dist/bundle/asciinema-player.min.js",
    "asciinema-player.css": "asciinema-player/dist/bundle/asciinema-player.css",
}


def init_terminal(app) -> TerminalHub:
    state = app.extensions["labfleet"]

    def open_agent(session: Session) -> None:
        with state.db.session() as db:
            node = db.get(Node, session.node_id)
            if node is None:
                return
            commands.issue(db, actor="controller:terminal", kind="terminal.open", args={"session": session.id},
                           nodes=[node], timeout=OPEN_TIMEOUT, deadline_in=OPEN_DEADLINE)
        state.notifier.notify([session.node_id])

    def make_recorder(session: Session):
        return recordings.AsciicastWriter(
            state.settings.data_dir, session.node_id, session.id, width=session.size[0], height=session.size[1],
            title=f"{session.node_name}")

    def record(actor: str, action: str, session: Session, **detail) -> None:
        try:
            with state.db.session() as db:
                audit.record(db, actor=actor, action=action, target=session.node_id, node=session.node_name,
                             terminal_session=session.id, **detail)
        except Exception:  # an audit row must not take a live terminal down; the log keeps it
            log.exception("terminal audit %s by %s on %s not stored", action, actor, session.node_name)

    hub = TerminalHub(open_agent=open_agent, make_recorder=make_recorder, audit=record,
                      owners=Owners(state.settings.redis_url))
    app.extensions[EXTENSION] = hub
    return hub


# xterm.js and asciinema-player add <style> elements: these pages allow inline styles (scripts stay 'self').
TERMINAL_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                "connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'none'; form-action 'self'; "
                "base-uri 'none'")


# asciinema-player's terminal emulator is WebAssembly, embedded in its bundle as a data: URL.
REPLAY_CSP = TERMINAL_CSP.replace("script-src 'self'", "script-src 'self' 'wasm-unsafe-eval'").replace(
    "connect-src 'self'", "connect-src 'self' data:")


def _page(html: str, status: int = 200, csp: str = TERMINAL_CSP) -> Response:
    response = Response(html, status=status, mimetype="text/html")
    response.headers["Content-Security-Policy"] = csp
    return response


def _hub() -> TerminalHub:
    return current_app.extensions[EXTENSION]


# -- WebSocket plumbing ------------------------------------------------------------------------


def _accept() -> Server:
    return Server(request.environ, max_message_size=1 << 20)


def _after(ws: Server) -> Response:
    """What the view returns once the socket is done (the server already spoke on the raw socket)."""
    try:
        ws.close()
    except Exception:
        pass

    class WebSocketResponse(Response):
        def __call__(self, *args, **kwargs):
            if ws.mode == "gunicorn":
                raise StopIteration()
            if ws.mode == "werkzeug":
                return super().__call__(*args, **kwargs)
            return []

    return WebSocketResponse()


def _ws_path(endpoint: str, **values) -> str:
    """The path of a WebSocket route (url_for makes ws:// URLs for them; the page picks ws: or wss:)."""
    return urlsplit(url_for(endpoint, **values)).path


def _same_origin() -> bool:
    """A browser's WebSocket must come from our own pages (no cross-site WebSocket hijacking)."""
    origin = request.headers.get("Origin")
    if not origin:
        return False
    return urlsplit(origin).netloc == request.host


def _browser_loop(node_id: str, node_name: str, viewer: Viewer) -> Response:
    get_session().close()  # the relay lives long: hold no database connection meanwhile
    ws = _accept()
    viewer.ws = ws
    hub = _hub()
    try:
        session = hub.join(node_id, node_name, viewer)
    except Elsewhere:
        # Another web process relays this node: the page reconnects at once and lands on another one.
        ws.send(json.dumps({"t": "elsewhere"}))
        return _after(ws)
    try:
        while not session.ended:
            message = ws.receive(timeout=RECEIVE_TIMEOUT)
            hub.owners.claim(node_id)  # keep this process's claim alive while the session lives
            if message is None:
                continue
            try:
                body = json.loads(message)
            except (TypeError, ValueError):
                continue
            hub.browser_message(session, viewer, body)
    except ConnectionClosed:
        pass
    finally:
        hub.leave(session, viewer)
    return _after(ws)


# -- instructors ------------------------------------------------------------------------------


def _node(ref: str) -> Node:
    db = get_session()
    node = db.get(Node, ref) if len(ref) == 32 else None
    node = node or db.scalar(select(Node).where(Node.name == ref).order_by(Node.enrolled_at.desc()).limit(1))
    if node is None:
        abort(404)
    return node


@bp.get("/terminal/<ref>")
@login_required
def terminal_page(ref: str):
    node = _node(ref)
    return _page(render_template("terminal.html", role="instructor", node=node,
                                 ws_path=_ws_path("pages.terminal_ws", ref=node.id),
                                 recordings_url=url_for("pages.terminal_recordings", ref=node.id)))


@bp.route("/terminal/<ref>/ws", websocket=True)
@login_required
def terminal_ws(ref: str):
    if not _same_origin():
        abort(403)
    node = _node(ref)
    viewer = Viewer(ws=None, role="instructor", name=current_user.name)  # type: ignore[arg-type]
    return _browser_loop(node.id, node.name, viewer)


# -- the attendee ------------------------------------------------------------------------------


@bp.get("/attendee/terminal")
def attendee_terminal():
    """The attendee's own terminal; they sign in on the attendee page's login, which comes back here."""
    db = get_session()
    me = attendees.current_attendee(db)
    if me is None:
        return redirect(url_for("pages.attendee.login", next="terminal"))
    return _page(render_template("terminal.html", role="attendee", node={"id": me.node_id, "name": me.node_name},
                                 ws_path=_ws_path("pages.attendee_terminal_ws"), recordings_url=None))


@bp.route("/attendee/terminal/ws", websocket=True)
def attendee_terminal_ws():
    if not _same_origin():
        abort(403)
    me = attendees.current_attendee(get_session())
    if me is None or me.node_id is None:
        abort(401)
    viewer = Viewer(ws=None, role="attendee", name=me.name)  # type: ignore[arg-type]
    return _browser_loop(me.node_id, me.node_name or "", viewer)


@bp.get("/attendee/terminal/status")
def attendee_terminal_status():
    """For the attendee page: is an instructor watching, may they type (the banner)."""
    me = attendees.current_attendee(get_session())
    if me is None:
        return jsonify(error="unauthenticated", detail="sign in with your access code", field=None), 401
    session = _hub().session_for(me.node_id) if me.node_id else None
    return jsonify(watching=session.instructors() if session else [], consent=bool(session and session.consent))


# -- the agent ---------------------------------------------------------------------------------


@bp.route("/api/agent/v1/nodes/<node_id>/terminal/<session_id>", websocket=True)
def agent_terminal_ws(node_id: str, session_id: str):
    try:
        require_node(node_id)  # the node's own token, checked before the upgrade
    except Unauthenticated:
        abort(401)
    except Forbidden:
        abort(403)
    get_session().close()
    hub = _hub()
    session = hub.agent_for(node_id, session_id)
    if session is None:
        abort(404)  # not this process's session (another web worker's, or ended): the agent retries
    ws = _accept()
    hub.agent_connected(session, ws)
    try:
        while not session.ended:
            message = ws.receive(timeout=RECEIVE_TIMEOUT)
            if message is not None:
                hub.agent_message(session, message)
    except ConnectionClosed:
        pass
    finally:
        hub.agent_disconnected(session, ws)
    return _after(ws)


# -- recordings --------------------------------------------------------------------------------


@bp.get("/terminal/<ref>/recordings")
@login_required
def terminal_recordings(ref: str):
    node = _node(ref)
    items = recordings.list_for_node(app_state().settings.data_dir, node.id)
    return render_template("recordings.html", node=node, recordings=items)


@bp.get("/terminal/<ref>/recordings/<name>")
@login_required
def terminal_replay(ref: str, name: str):
    node = _node(ref)
    if recordings.recording_path(app_state().settings.data_dir, node.id, name) is None:
        abort(404)
    db = get_session()
    audit.record(db, actor=f"instructor:{current_user.name}", action="terminal.replay", target=node.id,
                 node=node.name, recording=name)
    db.commit()
    return _page(render_template("replay.html", node=node, name=name,
                                 cast_url=url_for("pages.terminal_cast", ref=node.id, name=name)), csp=REPLAY_CSP)


@bp.get("/terminal/<ref>/recordings/<name>.cast")
@login_required
def terminal_cast(ref: str, name: str):
    node = _node(ref)
    path = recordings.recording_path(app_state().settings.data_dir, node.id, name)
    if path is None:
        abort(404)
    return send_file(path, mimetype="application/x-asciicast", max_age=0)


# -- front-end packages --------------------------------------------------------------------------


@bp.get("/vendor/<name>")
def vendor(name: str):
    relative = VENDOR.get(name)
    if relative is None:
        abort(404)
    path = WEB_DIR / "node_modules" / relative
    if not path.is_file():
        abort(404, description="front-end packages are not installed: run `make install` (npm ci in web/)")
    mimetype = "text/css" if name.endswith(".css") else "text/javascript"
    return send_file(path, mimetype=mimetype, max_age=3600)
