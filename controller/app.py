"""The Flask application factory: one controller process (see docs/architecture.md)."""

from __future__ import annotations

import logging

from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from controller import commands as _commands
from controller import db as db_module
from controller import nodes as _nodes
from controller.api import db_session
from controller.api.enroll_guard import EnrollGuard
from controller.api.errors import register_error_handlers
from controller.api.proxies import TrustedProxies
from controller.api.ratelimit import poll_limiter
from controller.api.validation import check_request_text
from controller.runtime.app_state import AppState
from controller.runtime.group_commit import GroupCommit
from controller.runtime.heartbeat_pacer import HeartbeatPacer
from controller.runtime.heartbeats import HeartbeatRecorder
from controller.runtime.metrics import DatabaseCollector, Metrics, queue_depth_reader
from controller.runtime.node_cache import NodeTokenCache
from controller.runtime.notifier import NodeNotifier
from controller.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask(__name__, static_folder=None)
    app.config.update(
        SECRET_KEY=settings.load_secret_key(),
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        JSON_SORT_KEYS=False,
    )
    app.json.sort_keys = False
    app.session_interface = CookielessFastPath()
    app.wsgi_app = TrustedProxies(app.wsgi_app, settings.trusted_proxy_networks)  # type: ignore[method-assign]
    logging.basicConfig(level=settings.log_level)
    database = db_module.database_for(settings)
    db_session.init_app(app, database)
    node_cache = NodeTokenCache()
    state = AppState(
        settings=settings, db=database,
        notifier=NodeNotifier(settings.redis_url, on_node_changed=node_cache.forget_node,
                              on_resubscribed=node_cache.clear),
        heartbeats=HeartbeatRecorder(database, flush_interval=settings.heartbeat_flush_interval),
        metrics=Metrics(),
        enroll_guard=EnrollGuard.from_settings(settings),
        polls=poll_limiter(settings.redis_url, per_key=2),
        node_cache=node_cache,
        group_commit=GroupCommit(database),
        heartbeat_pacer=HeartbeatPacer(settings.heartbeat_budget),
    )
    state.metrics.add_collector(DatabaseCollector(
        read_nodes=lambda: _read(database, _nodes.count_by_state),
        read_commands=lambda: _read(database, _commands.count_by_kind_and_state),
        read_queue_depth=queue_depth_reader(settings.redis_url, settings.broker_dir),
    ))
    app.extensions["labfleet"] = state
    register_error_handlers(app)
    app.before_request(check_request_text)

    register_api(app)

    from controller.pages import init_pages

    init_pages(app)  # the instructor's pages: login, the room (docs/web.md)

    from controller.api import help as help_api

    app.register_blueprint(help_api.agent_bp)
    app.register_blueprint(help_api.bp)

    from controller.api import messages as messages_api

    app.register_blueprint(messages_api.agent_bp)
    app.register_blueprint(messages_api.bp)

    from controller.api import rescue as rescue_api

    app.register_blueprint(rescue_api.bp)

    from controller.celery_app import celery_init_app

    celery_init_app(app)
    return app


def register_api(app: Flask) -> Flask:
    """Every blueprint of the HTTP API (also what /api/openapi.json is generated from)."""
    from controller.api import agent, health, instructor
    from controller.api import attendees as _attendee_routes  # noqa: F401  (adds its routes to provision_api.bp)
    from controller.api import provision as provision_api

    for blueprint in (health.bp, agent.bp, instructor.bp, provision_api.bp):
        app.register_blueprint(blueprint)
    return app


class CookielessFastPath(SecureCookieSessionInterface):
    """Agents and the CLI never send a session cookie: skip building a signer for them.

    Opening the session was 15 % of a heartbeat's time in Flask.
    """

    def open_session(self, app: Flask, request):
        if self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)


def _read(database, reader):
    with database.session() as session:
        return reader(session)
