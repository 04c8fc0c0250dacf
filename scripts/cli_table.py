"""Print the markdown table of `labfleet` commands, generated from the click group.

    python scripts/cli_table.py            # print the table
    python scripts/cli_table.py --update   # rewrite README.md between the cli-table markers

tests/test_docs.py fails when README.md's table differs from this output.
"""

import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

START, END = "<!-- cli-table:start -->", "<!-- cli-table:end -->"


def _usage(cmd: click.Command) -> str:
    parts = []
    for p in cmd.params:
        if isinstance(p, click.Argument):
            name = p.human_readable_name
            name = f"{name}..." if p.nargs == -1 else name
            parts.append(name if p.required else f"[{name}]")
        elif isinstance(p, click.Option) and not p.hidden:
            opt = "/".join(p.opts + p.secondary_opts) if p.is_flag and p.secondary_opts else p.opts[0]
            if not p.is_flag:
                opt += " " + (p.metavar or p.type.name.upper())
            if p.multiple:
                opt += "..."
            parts.append(opt if p.required else f"[{opt}]")
    return " ".join(parts)


def _walk(group: click.Group, prefix: str = ""):
    ctx = click.Context(group)
    for name in sorted(group.list_commands(ctx)):
        cmd = group.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        full = f"{prefix}{name}"
        if isinstance(cmd, click.Group):
            yield from _walk(cmd, full + " ")
        else:
            yield full, _usage(cmd), (cmd.get_short_help_str(limit=200) or "").replace("|", "\\|")


def table() -> str:
    from controller.cli.main import cli

    rows = ["| command | what it does |", "|---|---|"]
    for full, usage, help_ in _walk(cli):
        shown = f"{full} {usage}".strip().replace("|", "\\|")
        rows.append(f"| `{shown}` | {help_} |")
    return "\n".join(rows) + "\n"


def update(readme: Path = ROOT / "README.md") -> None:
    text = readme.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{table()}{END}{tail}")


if __name__ == "__main__":
    if "--update" in sys.argv[1:]:
        update()
    else:
        sys.stdout.write(table())
