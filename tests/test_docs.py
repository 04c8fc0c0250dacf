"""The repo's documents stand on their own: no file names a document outside the repo,
and every relative link in README.md and docs/*.md leads to a file that exists."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Built by concatenation so this file does not name them itself.
OUTSIDE = ["../" + "shared"] + [n + ".md" for n in ("ARCHITECTURE", "LABS", "STYLE", "BASELINES", "WEB")]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def tracked_text_files():
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in out.decode().split("\0"):
        path = ROOT / name
        if not name or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        yield name, data.decode("utf-8", errors="replace")


def test_no_tracked_file_names_an_outside_document():
    hits = [
        f"{name}:{lineno}: {word}"
        for name, text in tracked_text_files()
        for lineno, line in enumerate(text.splitlines(), 1)
        for word in OUTSIDE
        if word in line
    ]
    assert not hits, "these lines name documents outside the repo; point them at docs/*.md:\n" + "\n".join(hits)


def test_relative_links_in_readme_and_docs_lead_to_existing_files():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for lineno, line in enumerate(page.read_text().splitlines(), 1):
            for target in LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                    continue  # URL, mailto:, or an anchor in the same page
                path = target.split("#", 1)[0]
                if not (page.parent / path).exists():
                    broken.append(f"{page.relative_to(ROOT)}:{lineno}: {target}")
    assert not broken, "broken relative links:\n" + "\n".join(broken)


def test_readme_cli_table_matches_the_click_commands():
    import importlib.util

    spec = importlib.util.spec_from_file_location("cli_table", ROOT / "scripts" / "cli_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    readme = (ROOT / "README.md").read_text()
    current = readme.split(mod.START, 1)[1].split(mod.END, 1)[0].strip("\n")
    assert current == mod.table().strip("\n"), (
        "README.md's CLI table differs from the click commands: run `python scripts/cli_table.py --update`"
    )
