"""The per-application objects every request needs, built once in create_app."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from controller.db import Database
from controller.enroll_guard import EnrollGuard
from controller.heartbeats import HeartbeatRecorder
from controller.metrics import Metrics
from controller.node_cache import NodeTokenCache
from controller.notify import CommandNotifier
from controller.ratelimit import ConcurrencyLimiter
from controller.settings import Settings
from controller.writer import WriteBatcher


@dataclass
class AppState:
    settings: Settings
    db: Database
    notifier: CommandNotifier
    heartbeats: HeartbeatRecorder
    metrics: Metrics
    enroll_guard: EnrollGuard
    polls: ConcurrencyLimiter
    node_cache: NodeTokenCache
    writer: WriteBatcher


def app_state() -> AppState:
    return current_app.extensions["labfleet"]
