"""The attendees' credentials sheet: one printable slip per attendee (HTML) and the same rows as CSV.

`labfleet credentials` writes it to files and the provisioning page offers it as a download; both
render the rows that ``controller.attendees.issue_credentials`` returns.
"""

from __future__ import annotations

import csv
import html
import io
from typing import Any

SHEET_COLUMNS = ("name", "email", "host", "login", "access_code", "node")


def sheet_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(SHEET_COLUMNS)
    for row in rows:
        writer.writerow([_cell(row, column) for column in SHEET_COLUMNS])
    return buffer.getvalue()


def sheet_html(rows: list[dict[str, Any]]) -> str:
    slips = "\n".join(
        f'<div class="slip"><h2>{html.escape(row["name"])}</h2>'
        f'<dl><dt>Host</dt><dd>{html.escape(_cell(row, "host"))}</dd>'
        f'<dt>Login</dt><dd>{html.escape(row["login"])}</dd>'
        f'<dt>Access code</dt><dd class="code">{html.escape(_cell(row, "access_code"))}</dd></dl>'
        f'<p class="email">{html.escape(row["email"])}</p></div>'
        for row in rows
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>labfleet credentials</title>
<style>
body {{ font-family: sans-serif; margin: 1cm; }}
.slip {{ border: 1px dashed #888; padding: 0.4cm 0.6cm; margin: 0 0 0.4cm; page-break-inside: avoid; }}
h2 {{ margin: 0 0 0.2cm; font-size: 14pt; }}
dl {{ display: grid; grid-template-columns: 3.5cm auto; margin: 0; }}
dt {{ color: #555; }} dd {{ margin: 0; font-family: monospace; font-size: 12pt; }}
.code {{ font-weight: bold; letter-spacing: 0.05em; }} .email {{ color: #777; margin: 0.2cm 0 0; font-size: 9pt; }}
</style></head>
<body>
{slips}
</body></html>
"""


def _cell(row: dict[str, Any], column: str) -> str:
    value = row.get(column)
    if column == "access_code" and not value:
        return f"(issued {row['issued_at'][:10]})" if row.get("issued_at") else ""
    if column == "host" and not value:
        return "(not assigned)"
    return "" if value is None else str(value)
