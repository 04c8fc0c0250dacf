"""Every setting of the agent in one object, validated once when it is built.

Sources, lowest precedence first: defaults, the TOML file (``--config``), the
environment (only ``LABFLEET_AGENT_ENROLL_TOKEN``, so the token stays out of
``ps``), command-line flags. Nothing else in the agent reads the environment.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from node_agent.errors import ConfigurationError
from node_agent.tls import client_context

DEFAULT_STATE_DIR = Path("/var/lib/labfleet-agent")
DEFAULT_LABS_DIR = Path("/usr/share/labfleet/labs")
DEFAULT_ATTENDEE_SOCKET = Path("/run/labfleet-agent/attendee.sock")
_USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
# The prefix starts every netns, link and tag the agent creates: short, because link names max out at 15.
_PREFIX = re.compile(r"^[a-z][a-z0-9]{1,5}$")
_CGROUP_PARENT = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
ENROLL_TOKEN_ENV = "LABFLEET_AGENT_ENROLL_TOKEN"
LOG_FORMATS = ("json", "text")
MAX_NAME_LENGTH = 64  # EnrollRequest.name


@dataclass
class AgentConfig:
    """The agent's settings. Construction validates them and creates ``state_dir`` (mode 0700).

    ``heartbeat_interval`` None means "the interval the controller asks for".
    ``poll_wait`` caps the long-poll; the controller's own maximum applies too.
    ``enroll_token_file`` is the file the token came from (the env file; by default the
    config file when it holds ``enroll_token``): once enrolled, the agent removes the
    token's line from it (``token_file.py``).
    """

    controller_url: str
    enroll_token: str | None = field(default=None, repr=False)
    enroll_token_file: Path | None = None
    state_dir: Path = DEFAULT_STATE_DIR
    name: str = ""
    heartbeat_interval: float | None = None
    poll_wait: float = 25.0
    max_backoff: float = 30.0
    command_workers: int = 4
    output_limit_bytes: int = 64 * 1024
    log_format: str = "json"
    labs_dir: Path = DEFAULT_LABS_DIR
    attendee_user: str = "class"
    lab_prefix: str = "lab"
    lab_cgroup_parent: str = "labfleet"
    # The cgroup the attendee's login sessions run in, relative like lab_cgroup_parent (the playbook's
    # session ceiling: user.slice/user-<uid>.slice on a VM); empty: not watched. The agent reports when
    # its pids or memory ceiling was hit (docs/help.md).
    session_cgroup: str = ""
    attendee_socket: Path = DEFAULT_ATTENDEE_SOCKET
    attendee_max_clients: int = 16  # `lab` connections served at once; more are told "busy" at once
    attendee_client_timeout: float = 5.0  # to send the whole request, and again to take the answer
    # The CA the controller's certificate must chain to (and only it); None: the system's CAs.
    ca_file: Path | None = None
    # Plain http:// sends every token in clear: only for a demo or a test on a network you trust.
    insecure_http: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.insecure_http, bool):
            raise ConfigurationError(f"insecure_http: expected true or false, got {self.insecure_http!r}")
        self.controller_url = _controller_url(self.controller_url, self.insecure_http)
        self.ca_file = _ca_file(self.ca_file)
        self.enroll_token = _optional_str("enroll_token", self.enroll_token)
        self.enroll_token_file = _optional_path("enroll_token_file", self.enroll_token_file)
        self.name = _name(self.name)
        self.heartbeat_interval = _number("heartbeat_interval", self.heartbeat_interval, 0.1, 3600, optional=True)
        self.poll_wait = _number("poll_wait", self.poll_wait, 1, 300)
        self.max_backoff = _number("max_backoff", self.max_backoff, 0.01, 3600)
        self.command_workers = _integer("command_workers", self.command_workers, 1, 64)
        self.output_limit_bytes = _integer("output_limit_bytes", self.output_limit_bytes, 1024, 16 * 1024 * 1024)
        if self.log_format not in LOG_FORMATS:
            raise ConfigurationError(f"log_format: expected one of {', '.join(LOG_FORMATS)}, got {self.log_format!r}")
        self.state_dir = _state_dir(self.state_dir)
        self.labs_dir = Path(self.labs_dir).expanduser().absolute()
        self.attendee_socket = Path(self.attendee_socket).expanduser().absolute()
        self.attendee_max_clients = _integer("attendee_max_clients", self.attendee_max_clients, 1, 256)
        self.attendee_client_timeout = _number("attendee_client_timeout", self.attendee_client_timeout, 0.1, 120)
        self.attendee_user = _matching("attendee_user", self.attendee_user, _USER_NAME, "a user name")
        self.lab_prefix = _matching("lab_prefix", self.lab_prefix, _PREFIX, "2 to 6 lower-case letters/digits")
        self.lab_cgroup_parent = _matching("lab_cgroup_parent", self.lab_cgroup_parent, _CGROUP_PARENT,
                                           "a relative cgroup path such as labfleet or fleet/host1")
        if self.session_cgroup:
            self.session_cgroup = _matching("session_cgroup", self.session_cgroup, _CGROUP_PARENT,
                                            "a relative cgroup path such as user.slice/user-1000.slice")

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> AgentConfig:
        """Settings from a TOML file (same keys as the fields); non-None ``overrides`` win."""
        return cls(**{**_read_toml(Path(path)), **_given(overrides)})

    @classmethod
    def load(
        cls, config_file: str | Path | None = None, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> AgentConfig:
        """Settings from the file, then the environment, then ``overrides`` (the CLI flags)."""
        values = _read_toml(Path(config_file)) if config_file else {}
        if values.get("enroll_token") and "enroll_token_file" not in values:
            values["enroll_token_file"] = config_file
        environ = os.environ if environ is None else environ
        if environ.get(ENROLL_TOKEN_ENV):
            values["enroll_token"] = environ[ENROLL_TOKEN_ENV]
        values.update(_given(overrides))
        if "controller_url" not in values:
            raise ConfigurationError("controller_url: required (--controller URL or controller_url in the config file)")
        return cls(**values)


_FIELDS = {f.name for f in dataclasses.fields(AgentConfig)}


def _given(overrides: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(overrides) - _FIELDS
    if unknown:
        raise ConfigurationError(f"{sorted(unknown)[0]}: not a setting of the agent")
    return {k: v for k, v in overrides.items() if v is not None}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigurationError(f"config file {path}: cannot read it: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"config file {path}: not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        known = ", ".join(sorted(_FIELDS))
        raise ConfigurationError(f"{unknown[0]}: unknown key in {path}; known keys: {known}")
    return data


def _controller_url(value: Any, insecure_http: bool) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(f"controller_url: expected an http(s) URL string, got {type(value).__name__}")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"controller_url: expected https://host[:port] (or http://...), got {value!r}")
    if parts.scheme == "http" and not insecure_http:
        raise ConfigurationError(
            f"controller_url: {value.strip()!r} is plain HTTP: the enrollment and node tokens would cross the "
            f"network in clear. Use the controller's https:// URL (with ca_file, the room CA), or for a demo or "
            f"test on a network you trust pass --insecure-http (insecure_http = true)")
    if parts.query or parts.fragment:
        raise ConfigurationError(f"controller_url: expected no query or fragment, got {value!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigurationError(f"controller_url: bad port in {value!r}") from exc
    return value.strip().rstrip("/")


def _ca_file(value: Any) -> Path | None:
    """A readable PEM file of CA certificates, loaded once here so a bad one stops the agent at start."""
    if value is None or value == "":
        return None
    if not isinstance(value, str | Path):
        raise ConfigurationError(f"ca_file: expected a file path, got {value!r}")
    path = Path(value).expanduser().absolute()
    try:
        client_context(path)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
        raise ConfigurationError(f"ca_file: cannot load CA certificates from {path}: {reason}") from None
    return path


def _optional_str(key: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"{key}: expected a string, got {type(value).__name__}")
    return value.strip()


def _optional_path(key: str, value: Any) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str | Path) or not str(value):
        raise ConfigurationError(f"{key}: expected a file path, got {value!r}")
    return Path(value).expanduser().absolute()


def _name(value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(f"name: expected a string, got {type(value).__name__}")
    name = value.strip() or socket.gethostname()
    if not 0 < len(name) <= MAX_NAME_LENGTH:
        raise ConfigurationError(f"name: expected 1 to {MAX_NAME_LENGTH} characters, got {len(name)}")
    return name


def _number(key: str, value: Any, low: float, high: float, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{key}: expected a number of seconds, got {value!r}")
    if not low <= value <= high:
        raise ConfigurationError(f"{key}: expected a number between {low:g} and {high:g}, got {value!r}")
    return float(value)


def _integer(key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{key}: expected an integer, got {value!r}")
    if not low <= value <= high:
        raise ConfigurationError(f"{key}: expected an integer between {low} and {high}, got {value!r}")
    return value


def _matching(key: str, value: Any, pattern: re.Pattern, expected: str) -> str:
    if not isinstance(value, str) or not pattern.match(value) or ".." in value.split("/"):
        raise ConfigurationError(f"{key}: expected {expected}, got {value!r}")
    return value


def _state_dir(value: Any) -> Path:
    if not isinstance(value, str | Path) or not str(value):
        raise ConfigurationError(f"state_dir: expected a directory path, got {value!r}")
    path = Path(value).expanduser().absolute()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask; an existing dir keeps its own
    except OSError as exc:
        raise ConfigurationError(f"state_dir: cannot create {path} with mode 0700: {exc.strerror}") from exc
    return path
