"""Reproducible performance runs of labfleet, each printing labfleet and its baseline side by side.

Run one with ``python -m benchmarks.fanout`` (``heartbeats``, ``agent_footprint``) or all with
``python -m benchmarks.run_all [--quick]``. Only 127.0.0.1 is ever contacted.
"""
