"""Action for library/labfleet_host.py: the bundle travels in the same task as the converge.

One task per host instead of a ``copy`` and a module call (Ansible costs the
controller per task and host): the module is called with the sha256 of the
controller's bundle; when the host's copy differs it answers ``need_bundle``
before changing anything, the bundle is transferred to the task's remote temp
folder and the module runs again with it. A host that has the bundle costs one
module run. The host's readiness verdict goes into the play's custom stats
(``labfleet_readiness``) from here too, instead of a set_stats task per host.
"""

from __future__ import annotations

import hashlib

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    TRANSFERS_FILES = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        src = args.pop("bundle_src", None)
        if not src:
            raise AnsibleActionFail("labfleet_host: bundle_src (the controller's bundle) is required")
        digest = hashlib.sha256()
        with open(src, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        args["bundle_sha256"] = digest.hexdigest()
        answer = self._execute_module(module_name="labfleet_host", module_args=args, task_vars=task_vars)
        if answer.get("need_bundle"):
            tmpdir = self._make_tmp_path()
            remote = self._connection._shell.join_path(tmpdir, "bundle.tar")
            self._transfer_file(src, remote)
            self._fixup_perms2((tmpdir, remote))
            args["bundle_upload"] = remote
            answer = self._execute_module(module_name="labfleet_host", module_args=args, task_vars=task_vars)
            self._remove_tmp_path(tmpdir)
        result.update(answer)
        report = answer.get("readiness") or {}
        if report:
            # The host's verdict into the play's custom stats, as a set_stats task would put it there (aggregated
            # over hosts), without a second task per host.
            host = task_vars.get("inventory_hostname", args.get("name"))
            result["ansible_stats"] = {"data": {"labfleet_readiness": {host: {
                "ready": report.get("ready"), "not_ready": report.get("not_ready"),
                "broken_labs": list(report.get("broken_labs") or {})}}}, "per_host": False, "aggregate": True}
        return result
