"""The lab engine: labs are data (``labs/<id>/lab.toml``), checks, solves and resets are code.

``model`` holds what a lab is, ``registry`` the built-in checkers, solvers and
resetters that lab files name, ``loader`` reads and validates lab folders,
``context`` is what a built-in may touch, ``engine`` runs check/solve/reset,
``residue`` finds what a lab left behind. The built-ins themselves live in
``builtins/<topic>.py``.
"""
