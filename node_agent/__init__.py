"""labfleet node agent: runs on each lab VM, speaks only to the controller, stdlib only."""

__version__ = "0.1.0"
