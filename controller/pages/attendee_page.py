"""The attendee's page (docs/web.md): log in with the email and access code from the credentials sheet,
then see and act on their ONE node: its host and SSH command, their labs' instructions (the lab's
Markdown, rendered and sanitized), each step's status, "check my work", hints, resets.

No account: the session remembers the attendee, their node and when their code was issued. Every
request re-reads the attendee: a node reassigned or a code reissued (``credentials --reissue``) ends
the session. An attendee session is no instructor login (Flask-Login sees no user), so every
instructor page and the bearer-token APIs stay closed to it.

Actions are commands to the node's agent with the attendee's permissions, exactly those of the `lab`
command on the VM: check, hint, instructions, reset (``as_attendee``: earlier steps are skipped, never
solved). No solve. Each is audited as ``attendee:<email>`` and counted against a per-attendee rate.
"""

from __future__ import annotations

import logging
import threading
from functools import wraps
from typing import Any

import nh3
from flask import Blueprint, current_app, jsonify, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from markdown_it import MarkdownIt
from sqlalchemy import func, select
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from controller import attendees, audit, commands, counters, help_requests, messages
from controller.api.openapi import documented
from controller.errors import NotFound, TooManyRequests, ValidationFailed
from controller.models import Attendee, Command, HelpRequest, LabProgress, Message, Node
from controller.pages import EXTENSION, answers, attendee_session
from controller.pages.room import ordered_catalog
from controller.runtime.app_state import app_state
from node_agent.protocol import HELP_MESSAGE_MAX

log = logging.getLogger(__name__)

bp = Blueprint("attendee", __name__)  # nested in the pages blueprint (views.py)

# Where a login may go next: names only, never a URL a request gives (no open redirect).
AFTER_LOGIN = {"terminal": "pages.attendee_terminal"}

# Actions per attendee per minute: a page's normal use is a few; a loop of clicks or a script is not.
ACTION_LIMIT = 30
ACTION_WINDOW = 60.0
# What the page may ask the agent for, and the command kind it becomes. Never lab.solve.
KINDS = {"check": "lab.check", "hint": "lab.hint", "reset": "lab.reset", "instructions": "lab.instructions"}
COMMAND_TIMEOUT = 30.0
COMMAND_DEADLINE = 60.0

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False})


def render_markdown(text: str) -> str:
    """A lab's Markdown as HTML safe to insert: raw HTML is not parsed, and the result is allow-listed."""
    return nh3.clean(_markdown.render(text or ""), link_rel="noopener noreferrer nofollow",
                     url_schemes={"http", "https", "mailto"})


class CodeForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired(), Length(max=254)])
    code = PasswordField("Access code", validators=[DataRequired(), Length(max=64)])


class ActionLimiter:
    """Attendee actions per attendee in a fixed window (the failure counters of controller/counters.py)."""

    def __init__(self, redis_url: str) -> None:
        local = counters.LocalCounter(window=ACTION_WINDOW, max_keys=10_000)
        self.counter = (counters.RedisCounter(redis_url, window=ACTION_WINDOW, namespace="attendee-actions",
                                              fallback=local) if redis_url else local)

    def take(self, attendee_id: str) -> None:
        count, left = self.counter.count(attendee_id)
        if count >= ACTION_LIMIT:
            raise TooManyRequests(f"at most {ACTION_LIMIT} actions a minute: try again in {max(1, round(left))} s")
        self.counter.hit(attendee_id)


def _state():
    pages = current_app.extensions[EXTENSION]
    if not hasattr(pages, "attendee_actions"):
        pages.attendee_actions = ActionLimiter(app_state().settings.redis_url)
    return pages


def attendee_required(json: bool):
    def wrap(fn):
        @wraps(fn)
        def inner(*args, **kwargs):
            with app_state().db.session() as db:
                found = attendee_session.signed_in(db)
                if found is None:
                    attendee_session.sign_out()
                    if json:
                        return jsonify({"error": "unauthenticated", "detail": "log in with your access code",
                                        "field": None}), 401
                    return redirect(url_for("pages.attendee.login"))
                return fn(db, *found, *args, **kwargs)
        return inner
    return wrap


@bp.route("/attendee/login", methods=["GET", "POST"])
def login():
    form = CodeForm()
    message, status = "", 200
    if request.method == "POST":
        email = (request.form.get("email") or "").strip()[:254]
        address = request.remote_addr or ""
        limiter = current_app.extensions[EXTENSION].limiter
        wait = limiter.blocked_for("attendee:" + email, address)
        if wait > 0:
            message, status = f"Too many wrong codes: try again in {max(1, round(wait))} s.", 429
        elif form.validate_on_submit():
            held = None
            with app_state().db.session() as db:
                attendee = db.scalar(select(Attendee).where(func.lower(Attendee.email) == email.lower()))
                if (attendee is not None and attendee.node_id is not None
                        and attendees.check_access_code(form.code.data, attendee.access_code_hash)):
                    audit.record(db, actor=f"attendee:{attendee.email}", action="web.attendee_login",
                                 target=attendee.node_id, address=address)
                    attendee_session.sign_in(attendee)
                    held = attendee
            if held is not None:
                return redirect(url_for(AFTER_LOGIN.get(request.args.get("next", ""), "pages.attendee.page")))
            limiter.failed("attendee:" + email, address)
            log.warning("attendee login failed from %s", address)
            message, status = "Wrong email or access code (or no machine assigned to you yet).", 401
        else:
            message, status = "Give your email and access code.", 400
    next_page = request.args.get("next", "")
    return render_template("attendee_login.html", form=form, message=message,
                           next_page=next_page if next_page in AFTER_LOGIN else None), status


@bp.post("/attendee/logout")
def logout():
    attendee_session.sign_out()
    return redirect(url_for("pages.attendee.login"))


# node -> (state digest, catalog, message ids its agent says were read)
_catalogs: dict[str, tuple[str, dict[str, list[str]], set[str]]] = {}
_catalogs_lock = threading.Lock()
MESSAGES_SHOWN = 20  # the newest instructor messages the page lists


def _from_snapshot(db, node: Node) -> tuple[dict[str, list[str]], set[str]]:
    """The node's labs and steps and its read message ids, re-read from its state snapshot only when its
    digest moved: the pages poll every 1.5 s, and a snapshot (processes, cgroups, progress) is far larger
    than its digest."""
    with _catalogs_lock:
        held = _catalogs.get(node.id)
    if held is not None and held[0] == node.state_digest:
        return held[1], held[2]
    snapshot = db.scalar(select(Node.state_snapshot).where(Node.id == node.id))
    catalog, read = ordered_catalog(snapshot), messages.read_ids(snapshot)
    with _catalogs_lock:
        if len(_catalogs) >= 5000:
            _catalogs.clear()
        _catalogs[node.id] = (node.state_digest, catalog, read)
    return catalog, read


def node_catalog(db, node: Node) -> dict[str, list[str]]:
    return _from_snapshot(db, node)[0]


def messages_view(db, node: Node) -> list[dict[str, Any]]:
    """The newest instructor messages and hints to this node, newest first. ``read`` is what the node's
    agent reports (``messages.read``): the agent owns read state, and it marks a message read once the
    attendee saw it in their terminal (``lab status``, ``lab messages``, their next prompt)."""
    read = _from_snapshot(db, node)[1]
    rows = db.scalars(select(Message).where(Message.node_id == node.id)
                      .order_by(Message.created_at.desc(), Message.id).limit(MESSAGES_SHOWN)).all()
    return [{"id": row.id, "kind": row.kind, "lab": row.lab, "step": row.step, "text": row.text,
             "sent_by": row.sent_by, "created_at": row.created_at.isoformat(), "read": row.id in read}
            for row in rows]


def help_view(db, node: Node) -> dict[str, Any] | None:
    """The node's latest raised hand, as the attendee sees it (state, who is coming, the reply)."""
    row = db.scalar(select(HelpRequest).where(HelpRequest.node_id == node.id)
                    .order_by(HelpRequest.created_at.desc(), HelpRequest.id).limit(1))
    if row is None:
        return None
    return {"id": row.id, "state": row.state, "lab": row.lab, "step": row.step, "message": row.message,
            "claimed_by": row.claimed_by or "", "reply": row.reply or "", "replied_by": row.replied_by or "",
            "resolved_by": row.resolved_by or "", "created_at": row.created_at.isoformat()}


def progress_view(db, node: Node) -> list[dict[str, Any]]:
    catalog = node_catalog(db, node)
    rows = db.execute(select(LabProgress.lab, LabProgress.step, LabProgress.status, LabProgress.evidence)
                      .where(LabProgress.node_id == node.id)).all()
    done = {(lab, step): (status, str((evidence or {}).get("reason", ""))) for lab, step, status, evidence in rows}
    return [{"lab": lab, "steps": [{"step": step, "status": done.get((lab, step), ("not started", ""))[0],
                                    "reason": done.get((lab, step), ("", ""))[1]} for step in steps]}
            for lab, steps in catalog.items()]


@bp.get("/attendee")
@attendee_required(json=False)
def page(db, attendee: Attendee, node: Node):
    host = attendees.login_host(db, node)
    labs = progress_view(db, node)
    touched = [lab["lab"] for lab in labs if any(s["status"] != "not started" for s in lab["steps"])]
    open_lab = touched[0] if touched else (labs[0]["lab"] if labs else "")
    return render_template("attendee.html", attendee=attendee, node=node, host=host, login=attendees.LOGIN,
                           labs=labs, open_lab=open_lab)


@bp.get("/attendee/progress")
@documented("The attendee's labs and each step's status", responses={200: answers.AttendeeProgress},
            security="attendee_session", common_errors=False, errors=(401,))
@attendee_required(json=True)
def progress(db, attendee: Attendee, node: Node):
    response = jsonify({"node_state": node.state, "labs": progress_view(db, node), "help": help_view(db, node),
                        "messages": messages_view(db, node)})
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/attendee/actions")
@documented("Check, hint, reset or read instructions on the attendee's own node", request=answers.AttendeeActionRequest,
            responses={201: answers.AttendeeActionIssued}, security="attendee_session", common_errors=False,
            errors=(400, 401, 413, 429))
@attendee_required(json=True)
def act(db, attendee: Attendee, node: Node):
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValidationFailed("expected a JSON object", field="body")
    action = body.get("action")
    if action not in KINDS:
        raise ValidationFailed(f"action: one of {', '.join(KINDS)}", field="action")
    catalog = node_catalog(db, node)
    lab, step = body.get("lab"), body.get("step")
    if lab not in catalog:
        raise ValidationFailed("lab: not one of your labs", field="lab")
    if step is not None and step not in catalog[lab]:
        raise ValidationFailed("step: not a step of this lab", field="step")
    args: dict[str, Any] = {"lab": lab}
    if action in ("check", "instructions") and step:
        args["step"] = step
    elif action == "hint":
        if not step:
            raise ValidationFailed("step: which step's hint", field="step")
        level = body.get("level", 1)
        if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 20:
            raise ValidationFailed("level: an integer from 1 to 20", field="level")
        args.update(step=step, level=level)
    elif action == "reset":
        args.update(as_attendee=True, **({"to_step": step} if step else {}))
    _state().attendee_actions.take(attendee.id)
    issued = commands.issue(db, actor=f"attendee:{attendee.email}", kind=KINDS[action], args=args, nodes=[node],
                            timeout=COMMAND_TIMEOUT, deadline_in=COMMAND_DEADLINE)
    db.commit()
    app_state().notifier.notify([node.id])
    return jsonify({"command_id": issued.command_ids[0]}), 201


@bp.post("/attendee/messages/<message_id>/read")
@documented("Mark one of the attendee's messages read (its agent keeps it until read, as `lab status` marks it)",
            request=answers.AttendeeMessageRead, responses={201: answers.AttendeeActionIssued},
            security="attendee_session", common_errors=False, errors=(401, 404, 429))
@attendee_required(json=True)
def mark_read(db, attendee: Attendee, node: Node, message_id: str):
    _state().attendee_actions.take(attendee.id)
    command_id = messages.mark_read(db, node, message_id, actor=f"attendee:{attendee.email}")
    db.commit()
    app_state().notifier.notify([node.id])
    return jsonify({"command_id": command_id}), 201


@bp.post("/attendee/help")
@documented("Raise the attendee's hand (a new one: 201; the open one updated: 200)", request=answers.AttendeeHelpRequest,
            responses={200: answers.AttendeeHelp, 201: answers.AttendeeHelp}, security="attendee_session",
            common_errors=False, errors=(400, 401, 413, 429))
@attendee_required(json=True)
def raise_hand(db, attendee: Attendee, node: Node):
    """"Raise my hand": the same raised hand as ``lab help`` on the VM (controller/help_requests.py),
    with the lab and step the attendee is on and the reason of that step's last check."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValidationFailed("expected a JSON object", field="body")
    message = body.get("message", "")
    if not isinstance(message, str):
        raise ValidationFailed("message: a string", field="message")
    message = message.strip()
    if len(message) > HELP_MESSAGE_MAX:
        raise ValidationFailed(f"message: at most {HELP_MESSAGE_MAX} characters", field="message")
    catalog = node_catalog(db, node)
    lab, step = body.get("lab"), body.get("step")
    if lab is not None and lab not in catalog:
        raise ValidationFailed("lab: not one of your labs", field="lab")
    if step is not None and (lab is None or step not in catalog[lab]):
        raise ValidationFailed("step: not a step of this lab", field="step")
    _state().attendee_actions.take(attendee.id)
    rows = {(r.lab, r.step): r for r in db.scalars(select(LabProgress).where(LabProgress.node_id == node.id))}
    if lab is None and rows:  # the lab they touched last
        lab = max(rows.values(), key=lambda r: r.updated_at).lab
    if lab is not None and step is None:  # its first step not done yet
        step = next((s for s in catalog.get(lab, []) if getattr(rows.get((lab, s)), "status", "")
                     not in ("passed", "skipped")), None)
    last = rows.get((lab or "", step or ""))
    reason = str((last.evidence or {}).get("reason", "")) if last is not None else ""
    row, created = help_requests.raise_hand(db, node, lab=lab, step=step, reason=reason, message=message,
                                            actor=f"attendee:{attendee.email}")
    db.commit()
    return jsonify(help_view(db, node)), 201 if created else 200


@bp.get("/attendee/commands/<command_id>")
@documented("One of the attendee's own commands and its result", responses={200: answers.AttendeeCommand},
            security="attendee_session", common_errors=False, errors=(401, 404))
@attendee_required(json=True)
def command(db, attendee: Attendee, node: Node, command_id: str):
    found = db.get(Command, command_id)
    if found is None or found.node_id != node.id or not found.issued_by.startswith("attendee:"):
        raise NotFound("no such command of yours", field="command_id")
    result = found.result
    view: dict[str, Any] = {"id": found.id, "kind": found.kind, "state": found.state,
                            "done": result is not None or found.state == "expired",
                            "ok": result.ok if result else None, "error": (result.error or "") if result else ""}
    output = result.output if result and result.ok else {}
    if found.kind == "lab.check":
        view["steps"] = [{"step": str(s.get("step", "")), "status": str(s.get("status", "")),
                          "reason": str(s.get("reason") or "")}
                         for s in output.get("steps", []) if isinstance(s, dict)]
    elif found.kind == "lab.hint":
        view["hint_html"] = render_markdown(str(output.get("hint", "")))
        view.update(level=output.get("level", 0), of=output.get("of", 0))
    elif found.kind == "lab.instructions":
        view["title"] = str(output.get("title", ""))
        view["summary_html"] = render_markdown(str(output.get("summary", "")))
        view["steps"] = [{"step": str(s.get("id", "")), "title": str(s.get("title", "")),
                          "html": render_markdown(str(s.get("instructions", ""))),
                          "hints": len(s.get("hints") or [])}
                         for s in output.get("steps", []) if isinstance(s, dict)]
    response = jsonify(view)
    response.headers["Cache-Control"] = "no-store"
    return response
