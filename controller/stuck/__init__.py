"""Stuck detection: rules (``rules.py``) over the room's data (``store.py``), run by a beat task.

See docs/help.md for the signals, the rules and their settings.
"""
