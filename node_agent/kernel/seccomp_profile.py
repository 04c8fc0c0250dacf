"""Docker's JSON seccomp profile: read it, compile it with libseccomp as runc does, and load it.

The format is the one Docker, runc and Podman read (``/usr/share/containers/seccomp.json`` from Debian's
golang-github-containers-common): ``defaultAction``/``defaultErrnoRet``, ``archMap``, and ``syscalls[]``
with ``names``, ``action``, ``errnoRet``, ``args`` and ``includes``/``excludes`` by capability, arch and
kernel version. The rules a container gets depend on its capabilities (Docker's default set unless
told otherwise) and its arch. Two things come out of one parsed profile:

* ``reference()``: the verdict of every x86_64 syscall computed from the JSON alone, in Python — what a
  check compares a dumped filter against;
* ``build()``/``load()``: the real libseccomp filter (Debian's python3-seccomp, imported lazily: the
  agent runs without it and reports the steps that need it as unavailable).

``python3 -m node_agent.kernel.seccomp_profile PROFILE.json -- CMD ARGS...`` runs CMD under the profile,
the way ``docker run --security-opt seccomp=PROFILE.json`` would confine it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node_agent.kernel import syscalls

DEFAULT_PROFILE = Path("/usr/share/containers/seccomp.json")
# Docker's default capability set (moby oci/caps/defaults.go); Podman's default set is a subset of it.
DEFAULT_CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
                "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE")
NATIVE_ARCH = "SCMP_ARCH_X86_64"
NATIVE_GOARCH = "amd64"  # how includes/excludes.arches name it
_GOARCH = {"SCMP_ARCH_X86_64": "amd64", "SCMP_ARCH_X86": "x86", "SCMP_ARCH_X32": "x32"}
ACTIONS = ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP",
           "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_LOG", "SCMP_ACT_ALLOW")
OPS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
       "SCMP_CMP_MASKED_EQ")
EPERM = 1
UNAVAILABLE = "unavailable: libseccomp bindings not installed (Debian package python3-seccomp)"


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the file and the key."""


class LibseccompUnavailable(RuntimeError):
    """libseccomp's Python bindings are not installed."""

    def __init__(self) -> None:
        super().__init__(UNAVAILABLE)


@dataclass(frozen=True)
class Action:
    """A profile action: ``SCMP_ACT_ERRNO`` with its errno, or another action (errno None)."""

    name: str
    errno: int | None = None

    def verdict(self) -> tuple[str, int]:
        """As ``bpf.Verdict`` names it: (``"errno"``, 1), (``"allow"``, 0)..."""
        short = {"SCMP_ACT_KILL": "kill_thread"}.get(self.name, self.name.removeprefix("SCMP_ACT_").lower())
        return short, self.errno or 0


@dataclass(frozen=True)
class ArgCond:
    """One ``args[]`` entry: compare syscall argument ``index`` with ``value`` (and ``value_two``)."""

    index: int
    op: str
    value: int
    value_two: int = 0

    def holds(self, args: tuple[int, ...]) -> bool:
        arg = args[self.index] if self.index < len(args) else 0
        if self.op == "SCMP_CMP_MASKED_EQ":
            return arg & self.value == self.value_two
        return {"SCMP_CMP_NE": arg != self.value, "SCMP_CMP_LT": arg < self.value,
                "SCMP_CMP_LE": arg <= self.value, "SCMP_CMP_EQ": arg == self.value,
                "SCMP_CMP_GE": arg >= self.value, "SCMP_CMP_GT": arg > self.value}[self.op]


@dataclass(frozen=True)
class Rule:
    """One ``syscalls[]`` entry after parsing."""

    names: tuple[str, ...]
    action: Action
    args: tuple[ArgCond, ...]
    includes: dict[str, Any]
    excludes: dict[str, Any]

    def applies(self, caps: Iterable[str], arch: str, kernel: tuple[int, ...]) -> bool:
        """Whether a container with ``caps`` on ``arch`` gets this rule (moby profiles/seccomp)."""
        caps = set(caps)
        inc, exc = self.includes, self.excludes
        if inc.get("arches") and arch not in inc["arches"]:
            return False
        if inc.get("caps") and not set(inc["caps"]) <= caps:
            return False
        if inc.get("minKernel") and kernel < _kernel_tuple(inc["minKernel"]):
            return False
        if exc.get("arches") and arch in exc["arches"]:
            return False
        return not (exc.get("caps") and set(exc["caps"]) & caps)

    def or_groups(self) -> list[tuple[ArgCond, ...]]:
        """The argument conditions as libseccomp rules: ANDed in one rule, unless two conditions test the
        same argument, which libseccomp cannot AND; runc then adds one rule per condition (an OR)."""
        indexes = [c.index for c in self.args]
        if len(indexes) != len(set(indexes)):
            return [(c,) for c in self.args]
        return [self.args]


@dataclass(frozen=True)
class Profile:
    """A parsed profile."""

    path: str
    default: Action
    arches: tuple[str, ...]
    rules: tuple[Rule, ...]

    def rules_for(self, caps: Iterable[str] = DEFAULT_CAPS, arch: str = NATIVE_GOARCH,
                  kernel: tuple[int, ...] | None = None) -> list[Rule]:
        """The rules a container with ``caps`` on ``arch`` gets, without those equal to the default action
        (runc skips them: libseccomp refuses a rule that repeats the default)."""
        kernel = kernel if kernel is not None else _running_kernel()
        caps = tuple(caps)
        return [r for r in self.rules if r.action != self.default and r.applies(caps, arch, kernel)]

    def reference(self, caps: Iterable[str] = DEFAULT_CAPS, args: tuple[int, ...] = (0,) * 6
                  ) -> dict[int, tuple[str, int]]:
        """Every x86_64 syscall number → the (action, data) the profile gives it for ``args``.

        libseccomp's rule semantics, not a naive reading of the JSON: the first argument-free rule for a
        syscall wins and later rules for it are dropped (``db_col_rule_add``/``_db_tree_add`` in
        libseccomp's src/db.c). So a syscall in the big allow list stays allowed even when a later rule
        denies it, e.g. ``setns`` without CAP_SYS_ADMIN in containers-common's profile. Among matching
        argument rules, the most restrictive action wins (the kernel's precedence).
        """
        first_plain, conditional = self._by_name(caps)
        return {nr: self._decide(name, args, first_plain, conditional).verdict()
                for nr, name in syscalls.table().items()}

    def verdict_at(self, nr: int, args: tuple[int, ...], caps: Iterable[str] = DEFAULT_CAPS) -> tuple[str, int]:
        """The (action, data) the profile gives syscall ``nr`` called with ``args``."""
        first_plain, conditional = self._by_name(caps)
        return self._decide(syscalls.name(nr), args, first_plain, conditional).verdict()

    def argument_probes(self, caps: Iterable[str] = DEFAULT_CAPS) -> list[tuple[int, tuple[int, ...]]]:
        """(nr, args) worth asking a filter beyond all-zero arguments: for each syscall whose rules compare
        arguments, each compared value, its neighbours and every combination the rule's own values make."""
        _, conditional = self._by_name(caps)
        probes = []
        for name, rules in sorted(conditional.items()):
            try:
                nr = syscalls.number(name)
            except syscalls.UnknownSyscall:
                continue
            values: dict[int, set[int]] = {}
            for rule in rules:
                for c in rule.args:
                    wanted = {c.value, c.value_two} if c.op == "SCMP_CMP_MASKED_EQ" else {c.value}
                    wanted |= {v + 1 for v in wanted if v < 2**64 - 1} | {v - 1 for v in wanted if v > 0}
                    values.setdefault(c.index, set()).update(wanted)
                full = [0] * 6
                for c in rule.args:
                    full[c.index] = c.value_two if c.op == "SCMP_CMP_MASKED_EQ" else c.value
                probes.append((nr, tuple(full)))
            for index, vals in sorted(values.items()):
                for v in sorted(vals):
                    args = [0] * 6
                    args[index] = v
                    probes.append((nr, tuple(args)))
        return sorted(set(probes))

    def _by_name(self, caps: Iterable[str]) -> tuple[dict[str, Action], dict[str, list[Rule]]]:
        first_plain: dict[str, Action] = {}
        conditional: dict[str, list[Rule]] = {}
        for rule in self.rules_for(caps):
            for name in rule.names:
                if not rule.args:
                    first_plain.setdefault(name, rule.action)
                else:
                    conditional.setdefault(name, []).append(rule)
        return first_plain, conditional

    def _decide(self, name: str, args: tuple[int, ...], first_plain: dict[str, Action],
                conditional: dict[str, list[Rule]]) -> Action:
        action = first_plain.get(name)
        if action is not None:
            return action
        matching = [r.action for r in conditional.get(name, ())
                    if any(all(c.holds(args) for c in group) for group in r.or_groups())]
        return min(matching, key=_severity) if matching else self.default

    def blocked(self, caps: Iterable[str] = DEFAULT_CAPS) -> set[str]:
        """Names of the x86_64 syscalls not allowed with all-zero arguments."""
        return {syscalls.name(nr) for nr, (action, _) in self.reference(caps).items() if action != "allow"}


_SEVERITY = ("SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL", "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO",
             "SCMP_ACT_TRACE", "SCMP_ACT_LOG", "SCMP_ACT_ALLOW")


def _severity(action: Action) -> int:
    return _SEVERITY.index(action.name)


def _kernel_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("-")[0].split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _running_kernel() -> tuple[int, ...]:
    return _kernel_tuple(os.uname().release)


# ---- parsing -----------------------------------------------------------------------------------------

def load(path: Path | str = DEFAULT_PROFILE) -> Profile:
    """Read and validate a profile file; ProfileError names the file and the key when it is wrong."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read the profile: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ProfileError(f"{path}: not JSON: {exc}") from None
    return parse(doc, str(path))


def parse(doc: Any, where: str = "<profile>") -> Profile:
    """Validate an already decoded profile."""
    if not isinstance(doc, dict):
        raise ProfileError(f"{where}: expected a JSON object at the top, got {type(doc).__name__}")
    default = _action(doc, "defaultAction", "defaultErrnoRet", where, "")
    rules = tuple(_rule(entry, where, f"syscalls[{i}]") for i, entry in enumerate(_list(doc, "syscalls", where, "")))
    return Profile(where, default, _arches(doc, where), rules)


def _list(obj: dict, key: str, where: str, at: str) -> list:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ProfileError(f"{where}: {at}{key}: expected a list, got {type(value).__name__}")
    return value


def _int(obj: dict, key: str, where: str, at: str, default: int | None = None) -> int:
    value = obj.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProfileError(f"{where}: {at}{key}: expected a non-negative integer, got {value!r}")
    return value


def _action(obj: dict, key: str, errno_key: str, where: str, at: str) -> Action:
    name = obj.get(key)
    if name not in ACTIONS:
        raise ProfileError(f"{where}: {at}{key}: expected one of {', '.join(ACTIONS)}, got {name!r}")
    if name != "SCMP_ACT_ERRNO":
        return Action(name)
    # Without errnoRet runc answers EPERM (libcontainer/seccomp: ActErrno.SetReturnCode(EPERM)).
    value = _int(obj, errno_key, where, at, EPERM) if obj.get(errno_key) is not None else EPERM
    return Action(name, value)


def _arches(doc: dict, where: str) -> tuple[str, ...]:
    # Docker: the native arch and its sub-arches from archMap (or the legacy flat "architectures").
    for i, entry in enumerate(_list(doc, "archMap", where, "")):
        if not isinstance(entry, dict) or "architecture" not in entry:
            raise ProfileError(f"{where}: archMap[{i}]: expected an object with an 'architecture' key")
        if entry["architecture"] == NATIVE_ARCH:
            return (NATIVE_ARCH, *_list(entry, "subArchitectures", where, f"archMap[{i}]."))
    flat = _list(doc, "architectures", where, "")
    return tuple(flat) if NATIVE_ARCH in flat else (NATIVE_ARCH,)


def _rule(entry: Any, where: str, at: str) -> Rule:
    if not isinstance(entry, dict):
        raise ProfileError(f"{where}: {at}: expected an object, got {type(entry).__name__}")
    names = entry.get("names") or ([entry["name"]] if entry.get("name") else [])
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ProfileError(f"{where}: {at}.names: expected a non-empty list of syscall names")
    action = _action(entry, "action", "errnoRet", where, f"{at}.")
    args = tuple(_arg(a, where, f"{at}.args[{j}]") for j, a in enumerate(_list(entry, "args", where, f"{at}.")))
    includes, excludes = entry.get("includes") or {}, entry.get("excludes") or {}
    for key, value in (("includes", includes), ("excludes", excludes)):
        if not isinstance(value, dict):
            raise ProfileError(f"{where}: {at}.{key}: expected an object, got {type(value).__name__}")
    return Rule(tuple(names), action, args, includes, excludes)


def _arg(arg: Any, where: str, at: str) -> ArgCond:
    if not isinstance(arg, dict):
        raise ProfileError(f"{where}: {at}: expected an object, got {type(arg).__name__}")
    index = _int(arg, "index", where, f"{at}.")
    if index > 5:
        raise ProfileError(f"{where}: {at}.index: a syscall has arguments 0..5, got {index}")
    if arg.get("op") not in OPS:
        raise ProfileError(f"{where}: {at}.op: expected one of {', '.join(OPS)}, got {arg.get('op')!r}")
    return ArgCond(index, arg["op"], _int(arg, "value", where, f"{at}."), _int(arg, "valueTwo", where, f"{at}.", 0))


# ---- compiling and loading with libseccomp --------------------------------------------------------------

def _seccomp():
    try:
        import seccomp
    except ImportError:
        raise LibseccompUnavailable() from None
    return seccomp


def _scmp_action(seccomp, action: Action):
    if action.name == "SCMP_ACT_ERRNO":
        return seccomp.ERRNO(action.errno)
    if action.name == "SCMP_ACT_TRACE":
        return seccomp.TRACE(action.errno or 0)
    return {"SCMP_ACT_KILL": seccomp.KILL, "SCMP_ACT_KILL_THREAD": seccomp.KILL,
            "SCMP_ACT_KILL_PROCESS": seccomp.KILL_PROCESS, "SCMP_ACT_TRAP": seccomp.TRAP,
            "SCMP_ACT_LOG": seccomp.LOG, "SCMP_ACT_ALLOW": seccomp.ALLOW}[action.name]


def build(profile: Profile, caps: Iterable[str] = DEFAULT_CAPS):
    """The profile as a ``seccomp.SyscallFilter`` for this machine (x86_64 plus the profile's sub-arches).

    Names libseccomp does not know are skipped, as runc skips them; NoNewPrivs is set on load (libseccomp's
    default), which lets an unprivileged attendee load it.
    """
    seccomp = _seccomp()
    flt = seccomp.SyscallFilter(defaction=_scmp_action(seccomp, profile.default))
    for arch in profile.arches[1:]:
        arch_name = arch.removeprefix("SCMP_ARCH_")
        if hasattr(seccomp.Arch, arch_name):
            flt.add_arch(getattr(seccomp.Arch, arch_name))
    for rule in profile.rules_for(caps):
        action = _scmp_action(seccomp, rule.action)
        for name in rule.names:
            for group in rule.or_groups():
                conds = [seccomp.Arg(c.index, getattr(seccomp, c.op.removeprefix("SCMP_CMP_")), c.value,
                                     c.value_two) for c in group]
                try:
                    flt.add_rule(action, name, *conds)
                except (RuntimeError, ValueError):
                    continue  # a syscall this libseccomp does not know on any of the filter's arches
    return flt


def load_into_self(profile: Profile, caps: Iterable[str] = DEFAULT_CAPS) -> None:
    """Compile the profile and load it into the calling process (irrevocably; children inherit it)."""
    build(profile, caps).load()


def exec_under(profile_path: Path | str, argv: list[str]) -> None:
    """Load the profile into this process, then exec ``argv`` under it (never returns on success)."""
    load_into_self(load(profile_path))
    os.execvp(argv[0], argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python3 -m node_agent.kernel.seccomp_profile PROFILE.json -- COMMAND [ARGS...]",
              file=sys.stderr)
        return 2
    try:
        exec_under(argv[0], argv[2:])
    except (ProfileError, LibseccompUnavailable) as exc:
        print(exc, file=sys.stderr)
        return 1
    except FileNotFoundError:
        print(f"{argv[2]}: command not found", file=sys.stderr)
        return 127
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
