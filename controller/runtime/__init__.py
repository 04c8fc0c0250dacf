"""The per-process runtime: what one controller process runs beside its requests.

Each piece is built once in ``controller.app.create_app`` and held in
``AppState``; the threads among them restart after a fork (``per_process``):

- ``group_commit``: many request threads' small writes in one transaction.
- ``heartbeats``: heartbeats buffered in memory and flushed in batches.
- ``node_cache``: the calling node's identity by token hash, for a few seconds.
- ``notifier``: news about a node for every web process (wake its polls,
  end superseded polls, drop cached identities).
- ``metrics``: the Prometheus registry.
- ``app_state``: the bundle of the above, reachable from a request.

Domain services (``controller/*.py``) never import from here.
"""
