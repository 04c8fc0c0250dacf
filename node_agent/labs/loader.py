"""Reads lab folders into ``Lab`` objects, refusing a broken one with its path, key and what was expected.

One broken lab never stops the others: ``load_catalog`` returns the labs that
loaded and a ``LabError`` for each folder that did not.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node_agent.labs import registry
from node_agent.labs.model import TOPICS, ActionSpec, Lab, LabError, Step
from node_agent.labs.requirements import REQUIREMENT_KINDS

LAB_FILE = "lab.toml"
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
LAB_KEYS = {"id", "title", "topic", "minutes", "summary", "requires", "steps", "cgroup"}
CGROUP_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
STEP_KEYS = {"id", "title", "instructions", "hints", "walkthrough", "check", "solve", "reset"}


@dataclass
class Catalog:
    labs: dict[str, Lab] = field(default_factory=dict)
    errors: list[LabError] = field(default_factory=list)

    def get(self, lab_id: str) -> Lab:
        try:
            return self.labs[lab_id]
        except KeyError:
            broken = [e for e in self.errors if Path(e.path).parent.name == lab_id or Path(e.path).name == lab_id]
            if broken:
                raise LookupError(f"lab {lab_id} did not load: {broken[0]}") from None
            raise LookupError(f"no lab {lab_id!r}; labs: {', '.join(sorted(self.labs)) or '(none)'}") from None


def load_catalog(labs_dir: Path) -> Catalog:
    catalog = Catalog()
    if not labs_dir.is_dir():
        catalog.errors.append(LabError(labs_dir, "labs_dir", "a directory of lab folders", "missing"))
        return catalog
    for folder in sorted(p for p in labs_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        try:
            lab = load_lab(folder)
        except LabError as exc:
            catalog.errors.append(exc)
        else:
            catalog.labs[lab.id] = lab
    return catalog


def load_lab(folder: Path) -> Lab:
    path = folder / LAB_FILE
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise LabError(path, LAB_FILE, "a lab.toml file in every lab folder", "missing") from None
    except tomllib.TOMLDecodeError as exc:
        raise LabError(path, "(syntax)", f"valid TOML ({exc})") from None
    _no_unknown(path, "", data, LAB_KEYS)
    lab_id = _str(path, "id", data)
    if not ID_PATTERN.match(lab_id):
        raise LabError(path, "id", "lower-case letters, digits and dashes", lab_id)
    if lab_id != folder.name:
        raise LabError(path, "id", f"the folder's name {folder.name!r}", lab_id)
    topic = _str(path, "topic", data)
    if topic not in TOPICS:
        raise LabError(path, "topic", f"one of {', '.join(TOPICS)}", topic)
    minutes = data.get("minutes")
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= 240:
        raise LabError(path, "minutes", "an integer from 1 to 240", minutes)
    requires = _str_list(path, "requires", data, required=False)
    for i, req in enumerate(requires):
        if req.split(":", 1)[0] not in REQUIREMENT_KINDS:
            raise LabError(path, f"requires[{i}]", f"a requirement of kind {', '.join(REQUIREMENT_KINDS)}", req)
    steps_data = data.get("steps")
    if not isinstance(steps_data, list) or not steps_data:
        raise LabError(path, "steps", "at least one [[steps]] table", steps_data)
    steps, seen = [], set()
    for i, step_data in enumerate(steps_data):
        step = _step(folder, path, f"steps[{i}]", step_data)
        if step.id in seen:
            raise LabError(path, f"steps[{i}].id", "a step id unique within the lab", step.id)
        seen.add(step.id)
        steps.append(step)
    return Lab(lab_id, _str(path, "title", data), topic, minutes, _str(path, "summary", data, required=False),
               tuple(requires), tuple(steps), folder, _cgroup(path, data.get("cgroup")))


def _cgroup(path: Path, value: Any) -> tuple[str, str]:
    if value is None:
        return ("cglab1", "pids")
    if not isinstance(value, dict) or set(value) - {"name", "controller"}:
        raise LabError(path, "cgroup", '{ name = "cglab1", controller = "pids" }', value)
    name, controller = value.get("name", "cglab1"), value.get("controller", "pids")
    if not isinstance(name, str) or not CGROUP_NAME.match(name):
        raise LabError(path, "cgroup.name", "one cgroup directory name (letters, digits, - and _)", name)
    if not isinstance(controller, str) or not CGROUP_NAME.match(controller):
        raise LabError(path, "cgroup.controller", "a controller name such as pids or cpu", controller)
    return (name, controller)


def _step(folder: Path, path: Path, where: str, data: Any) -> Step:
    if not isinstance(data, dict):
        raise LabError(path, where, "a table", data)
    _no_unknown(path, where + ".", data, STEP_KEYS)
    step_id = _str(path, f"{where}.id", data, key="id")
    if not ID_PATTERN.match(step_id):
        raise LabError(path, f"{where}.id", "lower-case letters, digits and dashes", step_id)
    instructions_file = _file(folder, path, f"{where}.instructions", _str(path, f"{where}.instructions", data,
                                                                          key="instructions"))
    walkthrough = data.get("walkthrough")
    walkthrough_path = None
    if walkthrough is not None:
        if not isinstance(walkthrough, str):
            raise LabError(path, f"{where}.walkthrough", "a file name in the lab folder", walkthrough)
        walkthrough_path = _file(folder, path, f"{where}.walkthrough", walkthrough)
    hints = _str_list(path, f"{where}.hints", data, key="hints", required=False)
    check = _actions(path, f"{where}.check", data.get("check"), "check", single=True)
    solve = _actions(path, f"{where}.solve", data.get("solve"), "solve")
    reset = _actions(path, f"{where}.reset", data.get("reset"), "reset")
    return Step(step_id, _str(path, f"{where}.title", data, key="title"), instructions_file.read_text(),
                tuple(hints), check[0], tuple(solve), tuple(reset), walkthrough_path)


def _actions(path: Path, where: str, value: Any, role: str, single: bool = False) -> list[ActionSpec]:
    if value is None:
        raise LabError(path, where, f"a table {{ kind = \"...\", ... }} naming a built-in {role}", "missing")
    tables = [value] if isinstance(value, dict) else value
    if not isinstance(tables, list) or (single and len(tables) != 1) or not all(isinstance(t, dict) for t in tables):
        raise LabError(path, where, "one table" if single else "a table or a list of tables", value)
    specs = []
    for i, table in enumerate(tables):
        at = where if isinstance(value, dict) else f"{where}[{i}]"
        kind = table.get("kind")
        builtin = registry.lookup(role, kind) if isinstance(kind, str) else None
        if builtin is None:
            raise LabError(path, f"{at}.kind", f"a built-in {role}: {', '.join(registry.kinds(role))}", kind)
        params = {k: v for k, v in table.items() if k != "kind"}
        try:
            decoded = registry.decode_params(builtin.params_type, params)
        except registry.ParamError as exc:
            raise LabError(path, f"{at}.{exc.key}", exc.expected, exc.got) from None
        specs.append(ActionSpec(kind, decoded))
    return specs


def _file(folder: Path, path: Path, key: str, name: str) -> Path:
    target = (folder / name).resolve()
    if folder.resolve() not in target.parents:
        raise LabError(path, key, "a file inside the lab folder", name)
    if not target.is_file():
        raise LabError(path, key, f"an existing file ({target} is missing)", name)
    return target


def _no_unknown(path: Path, prefix: str, data: dict, known: set[str]) -> None:
    for key in data:
        if key not in known:
            raise LabError(path, prefix + key, f"one of {', '.join(sorted(known))}", "unknown key")


def _str(path: Path, where: str, data: dict, *, key: str | None = None, required: bool = True) -> str:
    value = data.get(key or where)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise LabError(path, where, "a non-empty string", "missing" if value is None else value)
    return value


def _str_list(path: Path, where: str, data: dict, *, key: str | None = None, required: bool = True) -> list[str]:
    value = data.get(key or where)
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LabError(path, where, "a list of strings", value)
    return value
