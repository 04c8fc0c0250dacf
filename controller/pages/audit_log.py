"""The audit log page: who did what to which node, filtered by who, action, node and time, paged.

The same query and filters as ``GET /api/v1/audit`` (``audit.list_query``,
``instructor.audit_filters``) and the same keyset paging (``?cursor=``).
"""

from __future__ import annotations

from flask import render_template, request
from flask_login import login_required

from controller import audit
from controller.api.instructor import audit_filters
from controller.api.pagination import Key, page
from controller.errors import ValidationFailed
from controller.models import AuditEntry
from controller.pages.views import bp
from controller.runtime.app_state import app_state

PAGE_SIZE = 50


@bp.get("/audit")
@login_required
def audit_log():
    args = request.args
    form = {name: (args.get(name) or "")[:160] for name in ("actor", "action", "node", "since", "until")}
    error, entries, next_cursor = "", [], None
    with app_state().db.session() as session:
        actions = audit.actions(session)
        try:
            found = page(session, audit.list_query(**audit_filters(args, session)),
                         [Key(AuditEntry.id, descending=True)], default_limit=PAGE_SIZE)
        except ValidationFailed as exc:
            error = exc.detail
        else:
            entries = [audit.to_dict(entry) for entry in found.items]
            next_cursor = found.next
    filters = {name: value for name, value in form.items() if value}
    return render_template("audit.html", entries=entries, form=form, filters=filters, actions=actions,
                           next_cursor=next_cursor, first_page=not args.get("cursor"),
                           error=error), 400 if error else 200


@bp.app_template_filter("detail_text")
def detail_text(detail: dict) -> str:
    """An entry's detail as ``key=value`` pairs (escaped by the template like every node-supplied text)."""
    parts = []
    for key, value in (detail or {}).items():
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value[:20]) + (f" … (+{len(value) - 20})" if len(value) > 20 else "")
        elif isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        parts.append(f"{key}={value}")
    return "; ".join(parts)
