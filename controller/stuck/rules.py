"""The stuck rules: what each signal must reach to flag an attendee, and the words that say why.

Defaults below; ``LABFLEET_STUCK_RULES`` (a JSON object, or ``stuck_rules`` in
labfleet.toml) overrides any of them, e.g. ``{"grace_seconds": 600}``.
Rules are pure: ``evaluate`` takes one attendee's ``Signals`` and the room's
median for their step, and returns the reasons (empty: not stuck).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from controller.settings import ConfigurationError


@dataclass(frozen=True)
class Rules:
    # Nobody is flagged in their first seconds on a step.
    grace_seconds: float = 300.0
    # Slow: on the step longer than slow_factor x the room's median for it, with at least min_peers
    # attendees (this one included) in the median's sample.
    slow_factor: float = 2.0
    min_peers: int = 3
    # The same check failing this many times in a row with the same reason.
    fail_repeats: int = 3
    # Resets of the current lab while on this step.
    resets: int = 2
    # Hints read on the current step.
    hints: int = 3
    # The agent silent this long (no heartbeat).
    silent_seconds: float = 60.0
    # The attendee's session ceiling (pids or memory) was hit within this many seconds: flagged at once,
    # grace or not, lab or not (a fork bomb typed outside any lab cgroup). 0 turns the rule off.
    ceiling_seconds: float = 900.0

    @classmethod
    def from_setting(cls, raw: str) -> Rules:
        if not raw:
            return cls()
        try:
            values = json.loads(raw)
        except ValueError as exc:
            raise ConfigurationError(f"LABFLEET_STUCK_RULES: not JSON: {exc}") from None
        known = {f.name: f for f in dataclasses.fields(cls)}
        if not isinstance(values, dict) or set(values) - set(known):
            unknown = sorted(set(values) - set(known)) if isinstance(values, dict) else values
            raise ConfigurationError(f"LABFLEET_STUCK_RULES: unknown rule(s) {unknown}; known: {sorted(known)}")
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigurationError(f"LABFLEET_STUCK_RULES: {name} must be a number >= 0")
        return cls(**values)


@dataclass
class Signals:
    """What the controller knows about one attendee on their current step."""

    node_id: str
    node: str
    lab: str
    step: str
    on_step_s: float  # since they reached the step
    fail_streak: int = 0
    fail_reason: str = ""
    resets: int = 0
    hints: int = 0
    silent_s: float | None = None  # None: heard from within the silence limit (or never enrolled)
    # The agent's view of the session ceiling (its state report's ``session``) and the seconds since
    # it last saw it hit (None: never, or not reported).
    ceiling: dict[str, Any] | None = None
    ceiling_hit_ago_s: float | None = None


def evaluate(rules: Rules, s: Signals, median_s: float | None, peers: int) -> list[dict[str, Any]]:
    """The reasons this attendee looks stuck, each ``{"rule", "text"}``; empty when they do not."""
    reasons = ceiling_reasons(rules, s)
    if s.on_step_s < rules.grace_seconds:
        return reasons
    if s.silent_s is not None and s.silent_s >= rules.silent_seconds:
        reasons.append(_reason("silent", f"their agent has been silent for {_span(s.silent_s)}"))
    if (median_s is not None and peers >= rules.min_peers and median_s > 0
            and s.on_step_s > rules.slow_factor * median_s):
        reasons.append(_reason("slow", f"on {s.lab}/{s.step} for {_span(s.on_step_s)}; the room's median "
                                       f"is {_span(median_s)} ({peers} attendees)"))
    if rules.fail_repeats and s.fail_streak >= rules.fail_repeats:
        why = f": {s.fail_reason}" if s.fail_reason else ""
        reasons.append(_reason("failing", f"the check of {s.step} failed {s.fail_streak} times in a row "
                                          f"with the same reason{why}"))
    if rules.resets and s.resets >= rules.resets:
        reasons.append(_reason("resets", f"reset {s.lab} {s.resets} times on this step"))
    if rules.hints and s.hints >= rules.hints:
        reasons.append(_reason("hints", f"read {s.hints} hints for {s.step}"))
    return reasons


def ceiling_reasons(rules: Rules, s: Signals) -> list[dict[str, Any]]:
    """A session ceiling hit recently: the kernel held a fork bomb or a memory hog outside the labs."""
    c = s.ceiling
    if (not rules.ceiling_seconds or c is None or s.ceiling_hit_ago_s is None
            or s.ceiling_hit_ago_s > rules.ceiling_seconds):
        return []
    hits = []
    if c.get("pids_hits"):
        limit = f" of {c['pids_max']} processes" if c.get("pids_max") else ""
        hits.append(f"its pids ceiling{limit} ({c['pids_hits']} forks refused)")
    if c.get("oom_kills"):
        limit = f" of {c['memory_max'] // (1 << 20)} MiB" if c.get("memory_max") else ""
        hits.append(f"its memory ceiling{limit} ({c['oom_kills']} processes killed)")
    if not hits:
        return []
    return [_reason("ceiling", f"their login session hit {' and '.join(hits)} {_span(s.ceiling_hit_ago_s)} ago: "
                               f"a fork bomb or a runaway program outside the labs")]


def _reason(rule: str, text: str) -> dict[str, str]:
    return {"rule": rule, "text": text}


def _span(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
