"""Endpoints outside the node and instructor APIs: health and the OpenAPI document (public), metrics (scrapers).

The OpenAPI document stays public: it describes the API's shape, which the
source code publishes anyway, and holds no data of any event.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from controller.auth import require_metrics_scraper
from controller.openapi import openapi_document
from controller.runtime.app_state import app_state
from node_agent import __version__

bp = Blueprint("health", __name__)


@bp.get("/api/health")
def health():
    with app_state().db.session() as session:
        session.execute(text("SELECT 1"))
    return jsonify({"status": "ok", "version": __version__})


@bp.get("/metrics")
def metrics():
    require_metrics_scraper()
    return Response(app_state().metrics.render(), mimetype="text/plain; version=0.0.4")


@bp.get("/api/openapi.json")
def openapi():
    return jsonify(openapi_document())
