"""Builds the lab engine from the agent's settings: catalog, attendee, nonce, names, progress file."""

from __future__ import annotations

from node_agent.config import AgentConfig
from node_agent.identity import load_or_create_identity
from node_agent.labs.context import Attendee, LabContext, nonce_for
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
