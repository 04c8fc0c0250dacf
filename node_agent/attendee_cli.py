"""``lab``: the attendee's command on their VM. No sudo: the local agent decides from the caller's uid.

    lab list                 the labs on this VM and your progress
    lab use LAB              choose the lab you are working on
    lab status               where you are in the current lab
    lab show [STEP|LAB]      the instructions
    lab check [STEP|LAB]     check your work (the result also reaches your instructor)
    lab hint [STEP|LAB] [-n N]
                             a hint; -n 2, 3 are more explicit
    lab reset [LAB] [--to-step S]
                             start the lab again from a clean state; with --to-step, the steps
                             before S are marked skipped (not done for you: only root may solve)

Without LAB (or --lab) these act on the current lab: the one chosen with `lab use`, else the
one last worked on.
    lab help [MESSAGE]       raise your hand: your instructor sees where you are and your message;
                             their answer shows in `lab status` and on your next prompt
    lab messages [--all]     messages and hints from your instructor (they also show in
                             `lab status` and on your next prompt)
    lab consent yes|no       let an instructor who watches your terminal type in it, or stop them

Exit status: 0 passed/done, 1 not passed, 2 usage or agent error.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path
from typing import Any

from node_agent.config import DEFAULT_ATTENDEE_SOCKET
from node_agent.help_desk import help_lines
from node_agent.labs import render
from node_agent.message_box import message_lines

TIMEOUT = 120.0  # a reset of a big lab (network, fork bomb) is still well under this


def request(path: Path, payload: dict[str, Any]) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(TIMEOUT)
        conn.connect(str(path))
        try:
            conn.sendall(json.dumps(payload).encode() + b"\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # a busy agent answers and closes without reading: its one line is still there to read
        data = b""
        while not data.endswith(b"\n"):
            try:
                chunk = conn.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    if not data:
        raise ConnectionError("the lab agent closed the connection without an answer")
    return json.loads(data)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lab", description="check, get hints for and reset your lab")
    parser.add_argument("--socket", type=Path, default=DEFAULT_ATTENDEE_SOCKET, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print the agent's answer as JSON")
    parser.add_argument("--lab", help="the lab to act on (default: the current one)")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="the labs on this VM and your progress")
    use = sub.add_parser("use", help="choose the lab you are working on")
    use.add_argument("lab_id", metavar="LAB")
    sub.add_parser("status", help="where you are in the current lab")
    show = sub.add_parser("show", help="the instructions")
    show.add_argument("step", nargs="?", metavar="STEP|LAB")
    check = sub.add_parser("check", help="check your work")
    check.add_argument("step", nargs="?", metavar="STEP|LAB")
    check.add_argument("-v", "--evidence", action="store_true", help="show what the check looked at")
    hint = sub.add_parser("hint", help="a hint for the step you are on")
    hint.add_argument("step", nargs="?", metavar="STEP|LAB")
    hint.add_argument("-n", "--level", type=int, default=1, help="1 gentle ... 3 explicit")
    reset = sub.add_parser("reset", help="start again from a clean state")
    reset.add_argument("lab_id", nargs="?", metavar="LAB", help="the lab to reset (default: the current one)")
    reset.add_argument("--to-step", metavar="STEP", help="start at STEP; the steps before it are marked skipped")
    consent = sub.add_parser("consent", help="let an instructor who watches your terminal type in it (yes), or stop it (no)")
    consent.add_argument("answer", choices=["yes", "no"])
    raise_hand = sub.add_parser("help", help="ask your instructor for help (what you are stuck on, in a few words)")
    raise_hand.add_argument("message", nargs="*", metavar="MESSAGE")
    inbox = sub.add_parser("messages", help="messages and hints from your instructor")
    inbox.add_argument("--all", action="store_true", help="the recent ones too, not only the unread")
    inbox.add_argument("--new", action="store_true", help=argparse.SUPPRESS)  # the prompt hook: quiet when none
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    payload: dict[str, Any] = {"action": args.action, "lab": args.lab}
    if args.action == "use":
        payload["lab"] = args.lab_id
    elif args.action == "show":
        payload.update(action="instructions", step=args.step)
    elif args.action == "check":
        payload["step"] = args.step
    elif args.action == "hint":
        payload.update(step=args.step, level=args.level)
    elif args.action == "reset":
        payload.update(to_step=args.to_step, lab=args.lab_id or args.lab)
    elif args.action == "help":
        payload["message"] = " ".join(args.message)
    elif args.action == "messages":
        payload["all"] = bool(args.all)
    elif args.action == "consent":
        payload["value"] = args.answer == "yes"
    try:
        answer = request(args.socket, payload)
    except (FileNotFoundError, ConnectionRefusedError):
        print(f"lab: the lab agent is not running on this VM ({args.socket}); tell your instructor", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"lab: could not talk to the lab agent: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(answer, indent=2))
    if not answer.get("ok"):
        if not args.json:
            print(f"lab: {answer.get('detail') or answer.get('error')}", file=sys.stderr)
        return 2
    result = answer["result"]
    if not args.json:
        text = _human(args, result)
        if text:
            print(text)
    if args.action == "check":
        return 0 if result["passed"] else 1
    if args.action == "reset":
        return 0 if result["clean"] else 1
    return 0


def _human(args: argparse.Namespace, result: dict[str, Any]) -> str:
    if args.action == "list":
        return render.lab_list(result)
    if args.action in ("use", "status"):
        unread = message_lines(result.get("messages"), prefix="  ")
        return (render.lab_list({"labs": [result["current"]]}) + help_lines(result.get("help"))
                + (f"\n\nMessages:\n{unread}" if unread else ""))
    if args.action == "messages":
        if args.new:
            return message_lines(result["messages"], prefix="[lab message] ")
        return message_lines(result["messages"]) or "No new messages."
    if args.action == "help":
        return help_lines(result, raised=True)
    if args.action == "consent":
        return ("an instructor watching your terminal may now type in it; `lab consent no` stops it"
                if result["consent"] else "instructors may no longer type in your terminal")
    if args.action == "show":
        return render.instructions(result)
    if args.action == "check":
        return render.check(result, evidence=args.evidence)
    if args.action == "hint":
        return render.hint(result)
    return render.reset(result)


if __name__ == "__main__":
    sys.exit(main())
