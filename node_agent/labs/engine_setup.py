"""Builds the lab engine from the agent's settings: catalog, attendee, nonce, names, progress file."""

from __future__ import annotations

from node_agent.config import AgentConfig
from node_agent.errors import ConfigurationError
from node_agent.identity import load_or_create_identity
from node_agent.kernel import cgroup_layout
from node_agent.labs import system_cgroups
from node_agent.labs.attendee_files import excerpt
from node_agent.labs.context import Attendee, LabContext, nonce_for, v1_mounts
from node_agent.labs.engine import Engine
from node_agent.labs.loader import load_catalog
from node_agent.labs.model import Lab
from node_agent.labs.progress import ProgressStore


def engine_from_config(config: AgentConfig) -> Engine:
    catalog = load_catalog(config.labs_dir)
    identity = load_or_create_identity(config.state_dir)
    work_root = config.state_dir / "labs"

    def make_context(lab: Lab) -> LabContext:
        attendee = Attendee.lookup(config.attendee_user)
        return LabContext(lab_id=lab.id, lab_dir=lab.path, attendee=attendee,
                          nonce=nonce_for(identity.machine_id, attendee.user), prefix=config.lab_prefix,
                          cgroup_parent=config.lab_cgroup_parent, work_root=work_root, cgroup=lab.cgroup)

    return Engine(catalog, make_context, ProgressStore(work_root / "progress.json"))


def check_cgroup_parent(config: AgentConfig) -> None:
    """Refuse a ``lab_cgroup_parent`` that holds the VM's own processes (PID 1, the agent, its ancestors).

    Its labs would share a subtree with the system: resets would call the VM residue. The scan never
    reports them (``system_cgroups``), but a parent like that is a setup mistake to fix, not to run with.
    """
    v1 = v1_mounts()
    unified = cgroup_layout.unified_root(cgroup_layout.detect_layout())
    roots = sorted({root / config.lab_cgroup_parent for root in [*v1.values(), *([unified] if unified else [])]})
    found = system_cgroups.intrusions(roots, v1, unified)
    if found:
        raise ConfigurationError(
            f"lab_cgroup_parent: {config.lab_cgroup_parent!r} holds this VM's own processes "
            f"({excerpt('; '.join(found), 400)}); give the labs a cgroup of their own that nothing else uses, "
            "e.g. labfleet (a local fleet host: labfleet-fleet/<host>/labs)")
