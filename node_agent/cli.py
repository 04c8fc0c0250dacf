"""``labfleet-agent``: the command line, the one place that turns errors into exit codes.

Exit codes: 0 clean stop, 1 runtime failure, 2 configuration error (one line on stderr).
"""

from __future__ import annotations

import argparse
import os
import sys

from node_agent import __version__
from node_agent.config import LOG_FORMATS, AgentConfig
from node_agent.errors import AgentError, ConfigurationError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labfleet-agent", description="labfleet node agent")
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run", help="enroll if needed, then serve the controller until SIGTERM")
    run.add_argument("--controller", dest="controller_url", metavar="URL", help="controller base URL (https://...)")
    run.add_argument("--ca-file", metavar="FILE",
                     help="PEM file of the CA the controller's certificate must chain to (only it is trusted)")
    run.add_argument("--insecure-http", action="store_true", default=None,
                     help="allow a plain http:// controller URL: tokens cross the network in clear (demo/test only)")
    run.add_argument("--enroll-token", metavar="TOKEN",
                     help="one-time enrollment token (prefer env LABFLEET_AGENT_ENROLL_TOKEN: flags show in ps)")
    run.add_argument("--state-dir", metavar="DIR", help="where identity, credentials and journal live")
    run.add_argument("--name", metavar="NAME", help="node name shown to the instructor (default: hostname)")
    run.add_argument("--config", metavar="FILE", help="TOML file with the same keys; flags override it")
    run.add_argument("--heartbeat-interval", type=float, metavar="S", help="override the controller's interval")
    run.add_argument("--max-backoff", type=float, metavar="S", help="longest wait between retries")
    run.add_argument("--log-format", choices=LOG_FORMATS, help="json (default) or text")
    sub.add_parser("version", help="print the agent version")
    lab = sub.add_parser("lab", help="run the labs on this VM without a controller (for lab authors)")
    lab.add_argument("--config", metavar="FILE", help="the agent's TOML config (labs_dir, attendee_user, ...)")
    lab.add_argument("--labs-dir", metavar="DIR", help="folder of lab folders")
    lab.add_argument("--attendee", dest="attendee_user", metavar="USER", help="the attendee account")
    lab.add_argument("--state-dir", metavar="DIR", help="where progress and holders are kept")
    lab.add_argument("--json", action="store_true", help="machine-readable output")
    lab_sub = lab.add_subparsers(dest="lab_action", required=True)
    lab_sub.add_parser("list", help="the labs and whether this VM can run them")
    for name in ("check", "solve", "show"):
        p = lab_sub.add_parser(name, help=f"{name} a lab, or one step")
        p.add_argument("lab_id", metavar="LAB")
        p.add_argument("step", nargs="?")
    reset = lab_sub.add_parser("reset", help="reset a lab to its start, or to a step")
    reset.add_argument("lab_id", metavar="LAB")
    reset.add_argument("--to-step", metavar="STEP")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``labfleet-agent`` script; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.action == "version":
        print(f"labfleet-agent {__version__}")
        return 0
    if args.action == "lab":
        return _lab(args)
    return _run(args)


def _lab(args: argparse.Namespace) -> int:
    import json

    from node_agent.kernel import reaper
    from node_agent.labs import render
    from node_agent.labs.engine_setup import engine_from_config
    from node_agent.labs.service import Caller

    try:
        config = AgentConfig.load(args.config, controller_url="https://offline.invalid", labs_dir=args.labs_dir,
                                  attendee_user=args.attendee_user, state_dir=args.state_dir)
    except ConfigurationError as exc:
        print(f"labfleet-agent: configuration error: {exc}", file=sys.stderr)
        return 2
    reaper.become_subreaper()
    engine = engine_from_config(config)
    try:
        if args.lab_action == "list":
            result, text = engine.list(), render.lab_list
        elif args.lab_action == "check":
            result, text = engine.check(args.lab_id, args.step), lambda r: render.check(r, evidence=True)
        elif args.lab_action == "solve":
            result, text = engine.solve(args.lab_id, args.step), lambda r: render.check(r, evidence=True)
        elif args.lab_action == "show":
            result, text = engine.instructions(args.lab_id, args.step), render.instructions
        else:
            may_solve = Caller(os.geteuid()).may_solve
            result, text = engine.reset(args.lab_id, args.to_step, solve_earlier=may_solve), render.reset
    except (LookupError, KeyError) as exc:
        print(f"labfleet-agent: {str(exc).strip(chr(39))}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=str) if args.json else text(result))
    if args.lab_action in ("check", "solve"):
        return 0 if result["passed"] else 1
    if args.lab_action == "reset":
        return 0 if result["clean"] else 1
    return 0


def _run(args: argparse.Namespace) -> int:
    from node_agent import logs
    from node_agent.daemon import Agent

    try:
        config = AgentConfig.load(
            args.config, controller_url=args.controller_url, enroll_token=args.enroll_token,
            state_dir=args.state_dir, name=args.name, heartbeat_interval=args.heartbeat_interval,
            max_backoff=args.max_backoff, log_format=args.log_format, ca_file=args.ca_file,
            insecure_http=args.insecure_http,
        )
        logs.configure(config.log_format)
        return Agent(config).run()
    except ConfigurationError as exc:
        print(f"labfleet-agent: configuration error: {exc}", file=sys.stderr)
        return 2
    except (AgentError, OSError) as exc:
        print(f"labfleet-agent: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
