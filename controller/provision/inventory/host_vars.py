"""Which variables an inventory may give a host: labfleet's own playbook variables that act on the VM.

Ansible reads an inventory's ``ansible_*`` variables as connection and
privilege settings (``ansible_connection: local`` runs every task on the
worker, ``ansible_ssh_common_args: -o ProxyCommand=...`` runs a command there,
``ansible_become_*``, ``ansible_python_interpreter``, host key checking) and it
templates every value it uses, so ``{{ lookup('pipe', ...) }}`` would run on
the controller too. The worker's environment holds the database and Redis
passwords: an inventory a request sends may set neither. Some labfleet
variables name controller paths or programs (the staging task runs on the
controller); those are the operator's (``LABFLEET_PROVISION_EXTRA_VARS``).
A host's address, port, user and key are its own fields, checked by
``base.check_host``; the drivers set the SSH host-key options themselves.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

# Defaults in playbooks/roles/{lab_vm,node_agent}/defaults/main.yml (and the VM-side ones of
# provision_state), documented in playbooks/README.md; labfleet_cgroup_parent is the netns driver's.
VM_VARS = frozenset({
    # lab_vm: packages, the attendee account, where the catalog and readiness report go on the VM
    "labfleet_lab_packages", "labfleet_apt_cache_valid_time", "labfleet_attendee_user",
    "labfleet_attendee_shell", "labfleet_attendee_password_hash", "labfleet_attendee_ssh_keys",
    "labfleet_attendee_sudo_nopasswd", "labfleet_sudoers_file", "labfleet_share_dir", "labfleet_labs_dir",
    "labfleet_catalog_archive", "labfleet_rootfs_dest", "labfleet_readiness_file", "labfleet_readiness_script",
    "labfleet_readiness_python",
    # node_agent: the agent's name, paths and config on the VM
    "labfleet_agent_name", "labfleet_agent_python", "labfleet_pip_wheels", "labfleet_agent_dir",
    "labfleet_agent_venv", "labfleet_agent_config_dir", "labfleet_agent_state_dir", "labfleet_agent_log_dir",
    "labfleet_agent_labs_dir", "labfleet_agent_attendee_user", "labfleet_agent_lab_cgroup_parent",
    "labfleet_agent_extra_config", "labfleet_agent_init", "labfleet_agent_unit", "labfleet_agent_supervisor",
    "labfleet_agent_pidfile", "labfleet_cgroup_parent", "labfleet_agent_lab_command",
    # node_agent: the attendee's login sessions' pids and memory ceiling (labfleet_session_cgroup: the
    # netns driver's, beside the host's own group)
    "labfleet_session_pids_max", "labfleet_session_memory_max", "labfleet_session_cgroup",
    # provision_state, on the VM: the venv's Python; the old fast path's manifest (teardown removes it)
    "labfleet_python", "labfleet_manifest", "labfleet_manifest_script",
    # node_agent: how long the role waits for the agent to enroll (a slow VM may need longer)
    "labfleet_agent_enroll_timeout",
})

# Set by the controller for each run, read or run on the controller, or the fast path's own bookkeeping.
OPERATOR_VARS = frozenset({
    "labfleet_controller_url", "labfleet_enroll_token", "labfleet_project_dir", "labfleet_labs_src",
    "labfleet_stage_dir", "labfleet_busybox", "labfleet_rootfs_tarball", "labfleet_agent_wheel",
    "labfleet_agent_wheel_python", "labfleet_agent_unit_src",
    # TLS: the CA the agents pin comes from the controller's own files; where it lands on the VM and
    # whether plain HTTP is allowed are the operator's (LABFLEET_PROVISION_EXTRA_VARS), never a host's.
    "labfleet_ca_pem", "labfleet_agent_ca_file", "labfleet_agent_insecure_http",
    # A path root writes on the VM (the attendee's prompt hook): never a host's to point elsewhere.
    "labfleet_agent_help_hook",
    # The program root runs at every SSH login (pam_exec): never a host's to point elsewhere.
    "labfleet_session_join",
    # The same for the attendee's login hook of the shared terminal (docs/terminal.md).
    "labfleet_agent_terminal_hook",
})

# Ansible evaluates these in any string it templates.
_TEMPLATE = re.compile(r"\{\{|\{%|\{#")
MAX_DEPTH = 8


def check_vars(values: dict[str, Any], fail: Callable[[str, str], Exception]) -> None:
    """Refuse any variable outside :data:`VM_VARS`, and any value Ansible would evaluate.

    ``fail(key, message)`` builds the error; ``key`` is ``vars.<name>``, so the caller's prefix
    makes it ``hosts[2].vars.ansible_connection``.
    """
    for name, value in values.items():
        key = f"vars.{name}"
        if not isinstance(name, str):
            raise fail("vars", f"{name!r} is not a variable name")
        if name not in VM_VARS:
            raise fail(key, _why_refused(name))
        where = _template_in(value, 0)
        if where is not None:
            raise fail(key, f"{where}; Ansible would evaluate it on the controller: give a plain value")


def _why_refused(name: str) -> str:
    if name.startswith("ansible_") or name.startswith("become") or name in ("connection", "remote_user"):
        return ("an Ansible connection or privilege setting: an inventory may not set it (a host's "
                "address, port, user and key are its own fields; host keys are checked by the controller)")
    if name in OPERATOR_VARS:
        return "set by the controller or the operator (LABFLEET_PROVISION_EXTRA_VARS), not by an inventory"
    if name.startswith("labfleet_run_"):
        return "a fact the playbook sets for itself, not an inventory variable"
    return "not a labfleet playbook variable a host may set (playbooks/README.md lists them)"


def _template_in(value: Any, depth: int) -> str | None:
    """Why ``value`` may not be used as given (a template, or nested too deep); None when it may."""
    if depth > MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, str):
        return "holds a Jinja template ('{{', '{%' or '{#')" if _TEMPLATE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _template_in(key, depth + 1) or _template_in(item, depth + 1)
            if found:
                return found
    elif isinstance(value, list | tuple):
        for item in value:
            found = _template_in(item, depth + 1)
            if found:
                return found
    return None
