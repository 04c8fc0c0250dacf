"""The ``static`` driver: a list of hosts with user and key, in YAML, INI or CSV.

YAML (``.yml``/``.yaml``)::

    defaults: {user: ubuntu, private_key: keys/room.key}   # optional, for every host
    hosts:
      - {name: lab-1, address: 192.0.2.11}
      - {name: lab-2, address: 192.0.2.12, port: 2222, vars: {labfleet_attendee_shell: /bin/zsh}}

INI (``.ini`` or an Ansible ``hosts`` file), Ansible's own host-line syntax::

    [all:vars]
    ansible_user=ubuntu
    ansible_ssh_private_key_file=keys/room.key
    [lab]
    lab-1 ansible_host=192.0.2.11
    lab-2 ansible_host=192.0.2.12 ansible_port=2222 labfleet_attendee_shell=/bin/zsh

CSV (``.csv``), one host per row: ``name,address,port,user,private_key``.

Keys are ``name address port user private_key`` or their Ansible names
(``ansible_host ansible_port ansible_user ansible_ssh_private_key_file``), also
inside a host's ``vars``. ``vars`` holds labfleet's own VM-side playbook
variables only (``host_vars.py``). ``private_key`` is a reference, never read
here: the CLI uploads the key file it names (relative to the inventory file),
and ``keys.KeyResolver`` turns it into the controller's copy. Every error names
the file, the line and the key.
"""

from __future__ import annotations

import csv
import io
import shlex
from pathlib import Path
from typing import Any

import yaml

from controller.provision.inventory.base import (
    Inventory,
    InventoryError,
    InventoryHost,
    check_host,
    check_unique,
)
from controller.provision.inventory.keys import KeyRefused, KeyResolver

ALIASES = {
    "name": "name", "address": "address", "ansible_host": "address", "port": "port", "ansible_port": "port",
    "user": "user", "ansible_user": "user", "private_key": "private_key",
    "ansible_ssh_private_key_file": "private_key", "ansible_private_key_file": "private_key",
}
FORMATS = {".yml": "yaml", ".yaml": "yaml", ".ini": "ini", ".cfg": "ini", "": "ini", ".csv": "csv"}


class StaticInventory(Inventory):
    """Hosts listed in a file. ``content`` (sent by the CLI) is parsed instead of reading ``path``.

    With ``keys``, each host's ``private_key`` becomes the controller's copy of that key; without,
    it stays the reference the file wrote (for tools that only list hosts).
    """

    driver = "static"

    def __init__(self, path: str, content: str | None = None, keys: KeyResolver | None = None) -> None:
        self.path = Path(path).expanduser()
        self.content = content
        self.keys = keys

    def hosts(self) -> list[InventoryHost]:
        kind = FORMATS.get(self.path.suffix.lower())
        if kind is None:
            raise InventoryError(f"unknown inventory format {self.path.suffix!r}: use .yml, .yaml, .ini or .csv",
                                 path=self.path)
        text = self.content
        if text is None:
            try:
                text = self.path.read_text()
            except OSError as exc:
                raise InventoryError(f"cannot read the inventory: {exc.strerror}", path=self.path) from None
        located = _parse(kind, text, self.path)
        if not located:
            raise InventoryError("lists no hosts", path=self.path)
        hosts = [(_build(fields, line, self.path, self.keys, prefix), line) for fields, line, prefix in located]
        check_unique(hosts, path=self.path)
        if self.keys is not None:
            try:
                self.keys.commit()
            except KeyRefused as exc:
                raise InventoryError(exc.message, key=exc.key) from None
        return [host for host, _ in hosts]


def key_references(path: str | Path, content: str) -> list[str]:
    """The ``private_key`` values an inventory writes, as written (what ``labfleet provision`` uploads)."""
    kind = FORMATS.get(Path(path).suffix.lower())
    if kind is None:
        return []
    found = []
    for fields, _, _ in _parse(kind, content, Path(path)):
        reference = str(fields.get("private_key", ("", 0))[0] or "").strip()
        if reference and reference not in found:
            found.append(reference)
    return found


def _parse(kind: str, text: str, path: Path) -> list[tuple[Fields, int, str]]:
    parser = {"yaml": _parse_yaml, "ini": _parse_ini, "csv": _parse_csv}[kind]
    return parser(text, path)


# One host before checking: field name -> (raw value, line it came from).
Fields = dict[str, tuple[Any, int]]


def _build(fields: Fields, line: int, path: Path, keys: KeyResolver | None, prefix: str) -> InventoryHost:
    def value(key: str, default: Any = "") -> Any:
        return fields[key][0] if key in fields else default

    def where(key: str) -> int:
        return fields[key][1] if key in fields else line

    address = str(value("address", "")).strip()
    raw_port = value("port", 22)
    try:
        port = raw_port if isinstance(raw_port, int) and not isinstance(raw_port, bool) else int(str(raw_port))
    except ValueError:
        raise InventoryError(f"{raw_port!r} is not a port (1-65535)", path=path, line=where("port"),
                             key=f"{prefix}port") from None
    key = str(value("private_key", "")).strip()
    if key and keys is not None:
        try:
            key = keys.resolve(key)
        except KeyRefused as exc:
            raise InventoryError(exc.message, path=path, line=where("private_key"),
                                 key=f"{prefix}private_key") from None
    host_vars = value("vars", {})
    host = InventoryHost(name=str(value("name", "") or address).strip(), address=address, port=port,
                         user=str(value("user", "")).strip(), private_key=key,
                         vars=dict(host_vars) if isinstance(host_vars, dict) else host_vars)
    # The line of the first field at fault is the most useful one to name.
    try:
        return check_host(host, path=path, line=line, prefix=prefix, check_key=False)
    except InventoryError as exc:
        field_name = (exc.key or "").removeprefix(prefix).split(".")[0]
        raise InventoryError(exc.message, path=path, line=where(field_name), key=exc.key) from None


# -- YAML -------------------------------------------------------------------

class _LineMap(dict):
    """A YAML mapping that remembers the line of each key (1-based)."""

    line: int = 0
    lines: dict[Any, int]


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings are ``_LineMap`` (error messages can name the line of a key)."""


def _construct_map(loader: _LineLoader, node: yaml.MappingNode) -> _LineMap:
    mapping = _LineMap(loader.construct_mapping(node, deep=True))
    mapping.line = node.start_mark.line + 1
    mapping.lines = {loader.construct_object(k, deep=True): k.start_mark.line + 1 for k, _ in node.value}
    return mapping


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)


def _parse_yaml(text: str, path: Path) -> list[tuple[Fields, int, str]]:
    try:
        doc = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise InventoryError(f"not valid YAML: {exc.problem}", path=path,
                             line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise InventoryError(f"not valid YAML: {exc}", path=path) from None
    except RecursionError:
        raise InventoryError("nested too deeply to be an inventory", path=path) from None
    if not isinstance(doc, _LineMap):
        raise InventoryError("must be a mapping with a 'hosts' key", path=path, line=1)
    unknown = [k for k in doc if k not in ("hosts", "defaults")]
    if unknown:
        raise InventoryError("unknown key (known: hosts, defaults)", path=path, line=doc.lines[unknown[0]],
                             key=str(unknown[0]))
    defaults = _yaml_fields(doc.get("defaults") or _LineMap(), path, "defaults.", doc.lines.get("defaults", 1))
    entries = doc.get("hosts")
    if isinstance(entries, _LineMap):  # name -> fields
        items = []
        for name, entry in entries.items():
            if entry is None:  # "lab-1:" with nothing under it
                entry = _LineMap()
                entry.line, entry.lines = entries.lines[name], {}
            if isinstance(entry, _LineMap):
                entry.setdefault("name", name)
                entry.lines.setdefault("name", entries.lines[name])
            items.append((entry, entries.lines[name], f"hosts.{name}."))
    elif isinstance(entries, list):
        items = [(entry, getattr(entry, "line", doc.lines["hosts"]), f"hosts[{i}].")
                 for i, entry in enumerate(entries)]
    else:
        raise InventoryError("must be a list of hosts or a mapping of names to hosts", path=path,
                             line=doc.lines.get("hosts", 1), key="hosts")
    located = []
    for entry, line, prefix in items:
        fields = {**defaults, **_yaml_fields(entry, path, prefix, line)}
        located.append((fields, line, prefix))
    return located


def _yaml_fields(entry: Any, path: Path, prefix: str, line: int) -> Fields:
    if not isinstance(entry, dict):
        raise InventoryError("must be a mapping of host fields", path=path, line=line, key=prefix.rstrip("."))
    lines = getattr(entry, "lines", {})
    fields: Fields = {}
    for key, value in entry.items():
        where = lines.get(key, line)
        if key == "vars":
            for name, lifted in _lift_connection(value, where).items():
                fields.setdefault(name, lifted)  # the host's own field, when it has one, wins
            fields["vars"] = ({k: v for k, v in value.items() if k not in ALIASES} if isinstance(value, dict)
                              else value, where)
            continue
        if key not in ALIASES:
            raise InventoryError(f"unknown key (known: {', '.join(sorted(set(ALIASES.values())))}, vars)",
                                 path=path, line=where, key=f"{prefix}{key}")
        fields[ALIASES[key]] = (value, where)
    return fields


def _lift_connection(host_vars: Any, line: int) -> Fields:
    """``vars: {ansible_host: ..., ansible_user: ...}`` says the same as the host's own fields."""
    if not isinstance(host_vars, dict):
        return {}
    return {ALIASES[k]: (v, line) for k, v in host_vars.items() if k in ALIASES and ALIASES[k] != "name"}


# -- INI --------------------------------------------------------------------

def _parse_ini(text: str, path: Path) -> list[tuple[Fields, int, str]]:
    group_vars: dict[str, Fields] = {}
    host_groups: dict[str, list[str]] = {}
    hosts: list[tuple[str, Fields, int]] = []
    section, section_kind = "ungrouped", "hosts"
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise InventoryError(f"section header {line!r} lacks its ']'", path=path, line=number)
            section, _, section_kind = line[1:-1].strip().partition(":")
            section_kind = section_kind or "hosts"
            if section_kind not in ("hosts", "vars"):
                raise InventoryError(f"[{section}:{section_kind}] sections are not supported "
                                     f"(use [group] and [group:vars])", path=path, line=number)
            continue
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as exc:
            raise InventoryError(f"cannot split the line: {exc}", path=path, line=number) from None
        if section_kind == "vars":
            group_vars.setdefault(section, {}).update(_ini_pairs(tokens, path, number))
            continue
        name, *pairs = tokens
        if "=" in name:
            raise InventoryError(f"a host line starts with the host name, not {name!r}", path=path, line=number)
        fields = _ini_pairs(pairs, path, number)
        fields["name"] = (name, number)
        hosts.append((name, fields, number))
        host_groups.setdefault(name, []).append(section)
    located = []
    for name, fields, number in hosts:
        merged: Fields = dict(group_vars.get("all", {}))
        for group in host_groups[name]:
            merged.update(group_vars.get(group, {}))
        merged.update(fields)
        located.append((merged, number, ""))
    return located


def _ini_pairs(tokens: list[str], path: Path, number: int) -> Fields:
    fields: Fields = {}
    extra: dict[str, Any] = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise InventoryError(f"expected key=value, got {token!r}", path=path, line=number)
        if key in ALIASES and ALIASES[key] != "name":
            fields[ALIASES[key]] = (value, number)
        else:
            extra[key] = value
    if extra:
        fields["vars"] = (extra, number)
    return fields


# -- CSV --------------------------------------------------------------------

def _parse_csv(text: str, path: Path) -> list[tuple[Fields, int, str]]:
    reader = csv.reader(io.StringIO(text))
    try:
        header = [column.strip() for column in next(reader)]
    except StopIteration:
        return []
    except csv.Error as exc:
        raise InventoryError(f"not valid CSV: {exc}", path=path, line=1) from None
    for column in header:
        if column not in ALIASES:
            raise InventoryError(f"unknown column (known: {', '.join(sorted(set(ALIASES.values())))})",
                                 path=path, line=1, key=column or "(empty)")
    if "address" not in {ALIASES[c] for c in header}:
        raise InventoryError("the header has no address column", path=path, line=1, key="address")
    located = []
    try:
        for row in reader:
            number = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise InventoryError(f"has {len(row)} columns, the header has {len(header)}", path=path,
                                     line=number)
            fields = {ALIASES[column]: (cell.strip(), number) for column, cell in zip(header, row, strict=True)
                      if cell.strip()}
            located.append((fields, number, ""))
    except csv.Error as exc:
        raise InventoryError(f"not valid CSV: {exc}", path=path, line=reader.line_num) from None
    return located
