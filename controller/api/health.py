"""Endpoints outside the node and instructor APIs: health and the OpenAPI document (public), metrics (scrapers).

The OpenAPI document stays public: it describes the API's shape, which the
source code publishes anyway, and holds no data of any event.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import text

from controller.api import responses as r
from controller.api.auth import require_metrics_scraper
from controller.api.openapi import TEXT, documented, openapi_document
from controller.runtime.app_state import app_state
from node_agent import __version__

bp = Blueprint("health", __name__)


@bp.get("/api/health")
@documented("Liveness and database check", responses={200: r.Health}, security=None, errors=(400,),
            common_errors=False)
def health():
    with app_state().db.session() as session:
        session.execute(text("SELECT 1"))
    return jsonify({"status": "ok", "version": __version__})


@bp.get("/metrics")
@documented("Prometheus metrics (the scrape token, or an allowed address)", responses={200: TEXT},
            security="metrics", errors=(400, 401, 403), common_errors=False)
def metrics():
    require_metrics_scraper()
    return Response(app_state().metrics.render(), mimetype="text/plain; version=0.0.4")


@bp.get("/api/openapi.json")
@documented("This document", responses={200: r.OpenAPIDocument}, security=None, errors=(400,),
            common_errors=False)
def openapi():
    return jsonify(openapi_document(current_app))
