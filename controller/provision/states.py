"""States of a provisioning run and of each host in it (dependency-free, like controller/states.py)."""

from __future__ import annotations

RUN_PENDING = "pending"
RUN_RUNNING = "running"
RUN_SUCCEEDED = "succeeded"  # every host ok
RUN_FAILED = "failed"  # at least one host failed or was unreachable; the others finished
RUN_CANCELLED = "cancelled"
RUN_ERROR = "error"  # Ansible did not run the playbook at all (see the run's error)
RUN_OPEN_STATES = (RUN_PENDING, RUN_RUNNING)
RUN_DONE_STATES = (RUN_SUCCEEDED, RUN_FAILED, RUN_CANCELLED, RUN_ERROR)

HOST_PENDING = "pending"
HOST_RUNNING = "running"
HOST_OK = "ok"
HOST_FAILED = "failed"
HOST_UNREACHABLE = "unreachable"
HOST_CANCELLED = "cancelled"
HOST_DONE_STATES = (HOST_OK, HOST_FAILED, HOST_UNREACHABLE, HOST_CANCELLED)
# What --retry-failed runs again.
HOST_RETRY_STATES = (HOST_FAILED, HOST_UNREACHABLE, HOST_CANCELLED, HOST_PENDING, HOST_RUNNING)

# One stored event per host and task; these are its outcomes.
EVENT_OK = "ok"
EVENT_CHANGED = "changed"
EVENT_FAILED = "failed"
EVENT_UNREACHABLE = "unreachable"
EVENT_SKIPPED = "skipped"
EVENT_IGNORED = "ignored"  # failed, but the task says ignore_errors

PLAYBOOKS = {"site": "site.yml", "teardown": "teardown.yml"}
