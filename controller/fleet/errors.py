"""The one exception the local fleet raises, so the CLI translates it in one place."""

from __future__ import annotations


class FleetError(Exception):
    """A fleet operation cannot be done; the message names the field, host or path."""
