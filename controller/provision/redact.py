"""Keeping secrets out of stored events and messages.

The playbooks mark secret tasks ``no_log``; this is the second line: every text
that leaves a runner event for the database passes through ``Redactor``, which
removes the run's own secret values and anything shaped like a labfleet token
or a private key, wherever a module happened to echo it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "********"
_PATTERNS = (
    re.compile(r"\blf[eni]_[A-Za-z0-9_-]{16,}"),  # enrollment, node and instructor tokens
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S),
    re.compile(r"(?i)(password|passwd|secret|token)(\"?\s*[:=]\s*\"?)[^\s\",}]+"),
)


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        if not text:
            return text
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        text = _PATTERNS[0].sub(MASK, text)
        text = _PATTERNS[1].sub(MASK, text)
        return _PATTERNS[2].sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
