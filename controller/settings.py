"""The controller's settings: one object, built once, from the environment.

Every ``LABFLEET_*`` variable maps to one field (``LABFLEET_DATABASE_URL`` ->
``database_url``). An optional TOML file (``LABFLEET_CONFIG`` or
``<data_dir>/labfleet.toml``) supplies the same keys; the environment wins.
Nothing else in the controller reads ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_PREFIX = "LABFLEET_"


class ConfigurationError(ValueError):
    """A setting is missing or has a value the controller cannot use."""


@dataclass
class Settings:
    data_dir: Path = Path(".labfleet")
    # Empty means SQLite in data_dir (WAL mode). PostgreSQL: postgresql+psycopg://...
    database_url: str = ""
    # Empty means the embedded broker (kombu's filesystem transport in data_dir).
    redis_url: str = ""
    secret_key: str = ""
    host: str = "127.0.0.1"
    port: int = 8300
    public_url: str = ""
    # 0 = automatic: 2 processes with Redis (they wake each other's long-polls through it), else 1.
    web_workers: int = 0
    web_threads: int = 600
    heartbeat_interval: float = 5.0
    # Heartbeats/s one web process serves before it asks agents to beat less often (up to 12x their
    # interval, controller/runtime/heartbeat_pacer.py); 0 = never stretch.
    heartbeat_budget: float = 600.0
    offline_after_missed: int = 3
    poll_wait_max: float = 25.0
    sweep_interval: float = 5.0
    command_timeout: float = 60.0
    command_deadline: float = 300.0
    # A delivered command without a result is offered again after this long.
    redeliver_after: float = 30.0
    enrollment_token_ttl: float = 24 * 3600.0
    # Failed enrollments allowed per client address and minute (guessing tokens); successes are free, and
    # a token prefix that belongs to a live enrollment token passes (controller/api/enroll_guard.py).
    enroll_failures_per_minute: int = 20
    # Failed enrollments allowed per token prefix (its first 10 characters) and minute, from all addresses.
    enroll_failures_per_prefix: int = 10
    # Keys (addresses, prefixes) the in-process failure counter keeps at most; with Redis, its fallback.
    enroll_limiter_max_keys: int = 10_000
    max_body_bytes: int = 1024 * 1024
    # Who may scrape /metrics: a bearer token, and/or addresses (comma-separated CIDRs). Neither: loopback only.
    metrics_token: str = ""
    metrics_allow: str = ""
    # Lab progress rows one node may hold (a lab step each; the shipped catalog has a few dozen steps).
    max_progress_rows_per_node: int = 500
    heartbeat_flush_interval: float = 0.5
    task_time_limit: int = 600
    log_level: str = "INFO"
    # Per process. Keep workers x (pool + overflow) under PostgreSQL's max_connections (100 by default).
    # Connections above the pool are closed on return, and a new PostgreSQL connection forks a
    # backend: keep the pool large enough that bursts reuse connections instead of churning them.
    db_pool_size: int = 25
    db_max_overflow: int = 10
    # Provisioning (controller/provision/runner.py). Tuned for a room; `labfleet provision --no-tune`
    # gives Ansible's defaults instead (forks 5, no pipelining, no SSH multiplexing, facts gathered).
    provision_forks: int = 25
    provision_pipelining: bool = True
    # Seconds an SSH master connection outlives its last use (ControlPersist); 0 = no multiplexing.
    provision_control_persist: float = 120.0
    provision_gather_facts: bool = False
    # The hosts' Python (Ansible's interpreter_python). A path skips Ansible's discovery, which costs
    # every host two more SSH round trips on every run (4-5 s of a 20-host run); "auto_silent"
    # discovers. A host's ansible_python_interpreter in the inventory still wins.
    provision_python_interpreter: str = "/usr/bin/python3"
    provision_time_limit: int = 3600
    # Empty: the playbooks/ folder next to the controller package (a source checkout).
    playbooks_dir: str = ""
    # A labfleet wheel to install on the hosts; empty: built from this checkout's node_agent/ per run.
    provision_agent_wheel: str = ""
    # More playbook variables for every run, a JSON object (playbooks/README.md lists them), e.g.
    # '{"labfleet_attendee_sudo_nopasswd": false}'. The controller's own (token, URL, wheel) win.
    provision_extra_vars: str = ""
    # The one folder a static inventory may name SSH keys from, by plain file name (keys are otherwise
    # uploaded with the inventory); empty: uploaded keys only. A request never names a controller path.
    provision_keys_dir: str = ""
    # The local fleet the netns driver provisions (the folder `labfleet fleet up` recorded it in);
    # empty: the fleet's default folder.
    fleet_dir: str = ""
    # The folder whose Vagrantfile the vagrant driver asks `vagrant ssh-config` about (Vagrant executes
    # it); empty: this checkout's root.
    vagrant_dir: str = ""
    # The Celery queue this controller's tasks go to and its worker reads: controllers sharing one Redis
    # database (tests run side by side) must not take each other's tasks.
    celery_queue: str = "celery"
    # TLS (controller/tls.py). Empty: what `labfleet init` made in data_dir/tls, if it did. The CA is the
    # one agents pin (installed on each VM by provisioning); with only LABFLEET_TLS_CA set the controller
    # serves plain HTTP behind a proxy that terminates TLS with a certificate from that CA.
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    # Reverse proxies whose X-Forwarded-For/-Proto are believed, comma-separated addresses or CIDRs; from
    # any other peer those headers are dropped (rate limits and node addresses see the real client).
    trusted_proxies: str = ""
    # Stuck detection (controller/stuck/, docs/help.md): seconds between passes, and rule overrides as a
    # JSON object ('{"grace_seconds": 600}'); labs_dir: the lab catalog whose hints it suggests (empty: labs/).
    stuck_interval: float = 30.0
    stuck_rules: str = ""
    labs_dir: str = ""
    # SSH rescue (controller/rescue/, docs/rescue.md): hosts rescued at once, seconds one host may take,
    # attendee processes outside the labs that count as a fork bomb, and the silent-agent beat: rescue
    # nodes silent this many seconds (0: never by itself), checked every rescue_check_interval seconds,
    # a node tried again only after rescue_retry_after seconds.
    rescue_parallel: int = 20
    rescue_host_timeout: float = 120.0
    rescue_runaway_processes: int = 300
    rescue_silent_after: float = 180.0
    rescue_check_interval: float = 30.0
    rescue_retry_after: float = 600.0

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser().resolve()
        for name in ("heartbeat_interval", "poll_wait_max", "sweep_interval", "command_timeout",
                     "command_deadline", "redeliver_after", "enrollment_token_ttl",
                     "heartbeat_flush_interval", "stuck_interval", "rescue_host_timeout",
                     "rescue_check_interval", "rescue_retry_after"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{ENV_PREFIX}{name.upper()} must be > 0")
        if self.heartbeat_budget < 0:
            raise ConfigurationError(f"{ENV_PREFIX}HEARTBEAT_BUDGET must not be negative (0 = off)")
        if self.web_workers < 0 or self.db_pool_size < 1 or self.db_max_overflow < 0:
            raise ConfigurationError(f"{ENV_PREFIX}WEB_WORKERS, DB_POOL_SIZE and DB_MAX_OVERFLOW must not be negative")
        for name in ("port", "web_threads", "offline_after_missed", "max_body_bytes",
                     "enroll_failures_per_minute", "enroll_failures_per_prefix", "max_progress_rows_per_node",
                     "enroll_limiter_max_keys", "rescue_parallel", "rescue_runaway_processes"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{ENV_PREFIX}{name.upper()} must be >= 1")
        if self.database_url and not self.database_url.startswith(("sqlite", "postgresql")):
            raise ConfigurationError(
                f"{ENV_PREFIX}DATABASE_URL must be a sqlite:// or postgresql:// URL, got {self.database_url.split(':')[0]!r}"
            )
        if self.provision_forks < 1 or self.provision_control_persist < 0 or self.provision_time_limit < 1:
            raise ConfigurationError(f"{ENV_PREFIX}PROVISION_FORKS and PROVISION_TIME_LIMIT must be >= 1, "
                                     f"PROVISION_CONTROL_PERSIST >= 0")
        if self.provision_extra_vars:
            self.provision_extra_vars_dict()
        self.metrics_networks()
        if self.rescue_silent_after < 0:
            raise ConfigurationError(f"{ENV_PREFIX}RESCUE_SILENT_AFTER must be >= 0 (0: no automatic rescue)")
        if self.stuck_rules:
            from controller.stuck.rules import Rules  # here: the rules module imports this one

            Rules.from_setting(self.stuck_rules)
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigurationError(f"{ENV_PREFIX}REDIS_URL must be a redis:// URL")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigurationError(f"{ENV_PREFIX}TLS_CERT and {ENV_PREFIX}TLS_KEY go together: set both or neither")
        self.trusted_proxy_networks  # noqa: B018 - raises ConfigurationError on a bad entry

    # -- derived values -------------------------------------------------
    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'labfleet.sqlite'}"

    @property
    def broker_url(self) -> str:
        return self.redis_url or "filesystem://"

    @property
    def web_processes(self) -> int:
        return self.web_workers or (2 if self.redis_url else 1)

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"

    @property
    def base_url(self) -> str:
        scheme = "https" if self.serves_tls else "http"
        return self.public_url.rstrip("/") or f"{scheme}://{self.host}:{self.port}"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def tls_cert_file(self) -> Path | None:
        """The certificate ``serve`` listens with: the operator's, else the one ``labfleet init`` made, else none."""
        if self.tls_cert:
            return Path(self.tls_cert).expanduser()
        made = self.tls_dir / "server.crt"
        return made if made.exists() else None

    @property
    def tls_key_file(self) -> Path | None:
        if self.tls_key:
            return Path(self.tls_key).expanduser()
        return self.tls_dir / "server.key" if self.tls_cert_file is not None else None

    @property
    def tls_ca_file(self) -> Path | None:
        """The CA agents pin and the CLI verifies with: the operator's, else the room CA in data_dir, else none."""
        if self.tls_ca:
            return Path(self.tls_ca).expanduser()
        made = self.tls_dir / "ca.crt"
        return made if made.exists() and not self.tls_cert else None

    @property
    def serves_tls(self) -> bool:
        return self.tls_cert_file is not None

    @property
    def trusted_proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        networks = []
        for entry in filter(None, (e.strip() for e in self.trusted_proxies.split(","))):
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ConfigurationError(f"{ENV_PREFIX}TRUSTED_PROXIES: {entry!r} is not an address or CIDR "
                                         f"(e.g. 10.0.0.5 or 10.0.0.0/24)") from None
        return networks

    def metrics_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """The addresses that may scrape /metrics without the token: the allow list, else loopback when no token."""
        if not self.metrics_allow.strip():
            return [] if self.metrics_token else [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
        try:
            return [ipaddress.ip_network(part.strip(), strict=False)
                    for part in self.metrics_allow.split(",") if part.strip()]
        except ValueError as exc:
            raise ConfigurationError(f"{ENV_PREFIX}METRICS_ALLOW: {exc} (comma-separated CIDRs, e.g. "
                                     f"10.0.0.5/32,127.0.0.1/32)") from None

    def provision_extra_vars_dict(self) -> dict[str, Any]:
        try:
            value = json.loads(self.provision_extra_vars or "{}")
        except ValueError as exc:
            raise ConfigurationError(f"{ENV_PREFIX}PROVISION_EXTRA_VARS is not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise ConfigurationError(f"{ENV_PREFIX}PROVISION_EXTRA_VARS must be a JSON object of variables")
        return value

    def ensure_data_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.data_dir, 0o700)

    def load_secret_key(self) -> str:
        """The secret key from settings, else one generated once and kept in data_dir."""
        if self.secret_key:
            return self.secret_key
        self.ensure_data_dir()
        path = self.data_dir / "secret_key"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
        self.secret_key = path.read_text().strip()
        return self.secret_key

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        config_file = environ.get(f"{ENV_PREFIX}CONFIG")
        data_dir = overrides.get("data_dir") or environ.get(f"{ENV_PREFIX}DATA_DIR") or ".labfleet"
        default_file = Path(data_dir) / "labfleet.toml"
        if config_file or default_file.exists():
            values.update(_read_config_file(Path(config_file) if config_file else default_file))
        for f in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _convert(f, raw, f"{ENV_PREFIX}{f.name.upper()}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigurationError(f"{path}: config file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: not valid TOML: {exc}") from exc
    known = {f.name: f for f in dataclasses.fields(Settings)}
    values = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigurationError(f"{path}: unknown key {key!r}")
        values[key] = _convert(known[key], value, f"{path}: {key}")
    return values


def _convert(f: dataclasses.Field, raw: Any, where: str) -> Any:
    kind = {"int": int, "float": float, "str": str, "Path": Path, "bool": boolean}.get(str(f.type), str)
    try:
        return kind(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{where}: expected {kind.__name__}, got {raw!r}") from exc


def boolean(raw: Any) -> bool:
    """TOML gives a bool; the environment gives 1/0, true/false, yes/no, on/off."""
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def settings_for_tests(data_dir: Path, **overrides: Any) -> Settings:
    """Settings that ignore the caller's environment: used by fixtures and benchmarks."""
    return Settings(data_dir=data_dir, secret_key="test-secret-key", **overrides)


