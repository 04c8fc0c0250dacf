"""Provisioning: turning the hosts of an inventory into lab VMs with running agents.

The pieces, each in its own module:

- ``inventory/``: where the hosts come from (``static`` file, ``vagrant``, the local
  ``netns`` fleet), one small interface like JupyterHub's spawners.
- ``runner.py``: the only module that calls ansible-runner; ``Tuning`` gathers
  forks, pipelining, SSH multiplexing and fact gathering in one place.
- ``recorder.py``: turns runner events into per-host, per-task rows (redacted by
  ``redact.py``) and per-host progress, and reads the cancel flag.
- ``runs.py``: the database side: asking for a run, retrying the failed hosts,
  cancelling, and the views the API and CLI show.
- ``execute.py``: what the Celery task does with a run: claim (pending -> running),
  run (agent wheel, extra vars, the playbook), settle (end state, audit), with
  per-playbook hooks (``HOOKS``: site mints each host's enrollment token, teardown
  retires the nodes of the hosts it cleaned).
"""
