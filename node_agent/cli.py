"""``labfleet-agent``: the command line, the one place that turns errors into exit codes.

Exit codes: 0 clean stop, 1 runtime failure, 2 configuration error (one line on stderr).
"""

from __future__ import annotations

import argparse
import sys

from node_agent import __version__
from node_agent.config import LOG_FORMATS, AgentConfig
from node_agent.errors import AgentError, ConfigurationError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labfleet-agent", description="labfleet node agent")
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run", help="enroll if needed, then serve the controller until SIGTERM")
    run.add_argument("--controller", dest="controller_url", metavar="URL", help="controller base URL (http/https)")
    run.add_argument("--enroll-token", metavar="TOKEN",
                     help="one-time enrollment token (prefer env LABFLEET_AGENT_ENROLL_TOKEN: flags show in ps)")
    run.add_argument("--state-dir", metavar="DIR", help="where identity, credentials and journal live")
    run.add_argument("--name", metavar="NAME", help="node name shown to the instructor (default: hostname)")
    run.add_argument("--config", metavar="FILE", help="TOML file with the same keys; flags override it")
    run.add_argument("--heartbeat-interval", type=float, metavar="S", help="override the controller's interval")
    run.add_argument("--max-backoff", type=float, metavar="S", help="longest wait between retries")
    run.add_argument("--log-format", choices=LOG_FORMATS, help="json (default) or text")
    sub.add_parser("version", help="print the agent version")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``labfleet-agent`` script; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.action == "version":
        print(f"labfleet-agent {__version__}")
        return 0
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    from node_agent import logs
    from node_agent.daemon import Agent

    try:
        config = AgentConfig.load(
            args.config, controller_url=args.controller_url, enroll_token=args.enroll_token,
            state_dir=args.state_dir, name=args.name, heartbeat_interval=args.heartbeat_interval,
            max_backoff=args.max_backoff, log_format=args.log_format,
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
