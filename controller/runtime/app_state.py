"""The per-application objects every request needs, built once in create_app."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from controller.api.enroll_guard import EnrollGuard
from controller.api.ratelimit import ConcurrencyLimiter, SharedConcurrencyLimiter
from controller.db import Database
from controller.runtime.group_commit import GroupCommit
from controller.runtime.heartbeat_pacer import HeartbeatPacer
from controller.runtime.heartbeats import HeartbeatRecorder
from controller.runtime.metrics import Metrics
from controller.runtime.node_cache import NodeTokenCache
from controller.runtime.notifier import NodeNotifier
from controller.settings import Settings


@dataclass
class AppState:
    settings: Settings
    db: Database
    notifier: NodeNotifier
    heartbeats: HeartbeatRecorder
    metrics: Metrics
    enroll_guard: EnrollGuard
    polls: ConcurrencyLimiter | SharedConcurrencyLimiter
    node_cache: NodeTokenCache
    group_commit: GroupCommit
    heartbeat_pacer: HeartbeatPacer


def app_state() -> AppState:
    return current_app.extensions["labfleet"]
