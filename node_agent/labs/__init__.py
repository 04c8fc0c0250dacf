"""The lab engine: labs are data (``labs/<id>/lab.toml``), checks, solves and resets are code.

``model`` holds what a lab is, ``registry`` the built-in checkers, solvers and
resetters that lab files name, ``loader`` reads and validates lab folders,
``context`` is what a built-in may touch, ``engine`` runs check/solve/reset,
``residue`` finds what a lab left behind, ``attendee_files`` touches the attendee's
home without following their links, ``solve_wait`` is the bounded poll of every solve,
``engine_setup`` builds the engine from the agent's settings and ``state_view`` is the live
lab view of the state report. The built-ins themselves live in ``builtins/<topic>.py``.
"""
