#!/usr/bin/python
"""labfleet_host: converge one lab VM in a single module call (site.yml's one host-side step).

Ansible's cost on the controller is per task and per host (a worker process,
templating, a connection, a module shipped), about 0.1 CPU-second each, so a
first run of ~45 small tasks per host cost the controller 4-7 CPU-seconds per
host. This module does, on the VM, what those tasks did, in one call:

1. the lab packages (apt only when one is missing);
2. the attendee account, its SSH keys and its sudo drop-in (checked by visudo);
3. the bundle site.yml copied (catalog archive, ns-mount-2 root fs, agent
   wheel, readiness check, prompt hook, systemd unit): each member placed
   where it goes, the catalog unpacked fresh when its archive changed;
4. the agent's venv and the wheel (unpacked here, checked against its RECORD; pip only for a wheel
   with compiled code);
5. the hooks, the session ceiling (systemd slice drop-in or cgroup + pam_exec),
   the CA, agent.toml, the one-time token;
6. the agent kept running (systemd or the supervisor): restarted when one of
   its inputs changed, else started unless it runs;
7. waits for the agent to enroll, removes the token, runs the readiness check.

Every step compares before it writes, so a second run reports changed=false
and only reads (the catalog and the venv by the manifest their install
recorded: a stat per file, its bytes only when the stat moved); check mode reports what would change and writes nothing; with
--diff the small text files it would change are shown. The result says what
changed (``changes``: one line per change) and carries the readiness report.
Standard library only; runs with the VM's python3.
"""

from __future__ import annotations

import base64
import configparser
import csv
import fcntl
import glob
import hashlib
import importlib.util
import io
import json
import os
import pwd
import py_compile
import re
import shutil
import sys
import tarfile
import tempfile
import time
import zipfile

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: labfleet_host
short_description: Converge a labfleet lab VM (packages, account, catalog, agent, readiness) in one call
description: See the module's docstring and playbooks/README.md.
options: {}
author: labfleet
"""


# -- the agent's wheel, installed without pip -----------------------------------------------------

# What pip writes for a console script, pointed at the venv's python.
SCRIPT = """#!{python}
# -*- coding: utf-8 -*-
import re
import sys
from {module} import {top}
if __name__ == "__main__":
    sys.argv[0] = re.sub(r"(-script\\.pyw|\\.exe)?$", "", sys.argv[0])
    sys.exit({attr}())
"""
DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class WheelError(Exception):
    """The wheel is not one this installer takes (the module then falls back to pip) or is corrupt."""


def record_hash(data: bytes) -> str:
    """A file's hash as a wheel's RECORD writes it."""
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def site_packages(venv: str) -> str:
    found = sorted(glob.glob(os.path.join(venv, "lib", "python3*", "site-packages")))
    if len(found) != 1:
        raise WheelError(f"{venv}: expected one lib/python3*/site-packages, found {len(found)}")
    return found[0]


def wheel_files(venv: str, wheel: bytes) -> tuple[str, dict[str, tuple[bytes, int]]]:
    """What installing a pure-Python ``wheel`` into ``venv`` writes: its dist-info name and {path: (bytes, mode)}.

    Every member is checked against the wheel's RECORD (as pip does); console scripts are made from
    entry_points.txt. A wheel with compiled code or .data other than libs and scripts raises WheelError.
    """
    site, bindir = site_packages(venv), os.path.join(venv, "bin")
    python = os.path.join(bindir, "python")
    try:
        zf = zipfile.ZipFile(io.BytesIO(wheel))
    except zipfile.BadZipFile as exc:
        raise WheelError(f"not a wheel: {exc}") from None
    with zf:
        names = zf.namelist()
        infos = {n.split("/", 1)[0] for n in names if n.split("/", 1)[0].endswith(".dist-info")}
        if len(infos) != 1:
            raise WheelError(f"expected one .dist-info folder, found {sorted(infos)}")
        dist_info = infos.pop()
        if not re.search(r"^Root-Is-Purelib: *true *$", zf.read(f"{dist_info}/WHEEL").decode(), re.M | re.I):
            raise WheelError("not a pure-Python wheel")
        record_name = f"{dist_info}/RECORD"
        record = {row[0]: row[1] for row in csv.reader(io.StringIO(zf.read(record_name).decode()))
                  if len(row) >= 2}
        data_prefix = dist_info[:-len(".dist-info")] + ".data/"
        files: dict[str, tuple[bytes, int]] = {}
        for info in zf.infolist():
            name = info.filename
            if name.endswith("/") or name == record_name:
                continue
            if name.startswith("/") or "\\" in name or ".." in name.split("/"):
                raise WheelError(f"refusing member {name!r}")
            data = zf.read(info)
            if record.get(name) != record_hash(data):
                raise WheelError(f"{name}: its bytes are not what the wheel's RECORD says")
            mode = 0o755 if (info.external_attr >> 16) & 0o111 else 0o644
            if name.startswith(data_prefix):
                kind, _, rest = name[len(data_prefix):].partition("/")
                if kind in ("purelib", "platlib"):
                    files[os.path.join(site, rest)] = (data, mode)
                elif kind == "scripts":
                    if data.startswith(b"#!python"):
                        data = b"#!" + python.encode() + data[len(b"#!python"):]
                    files[os.path.join(bindir, rest)] = (data, 0o755)
                else:
                    raise WheelError(f"{name}: .data/{kind} is not installed by labfleet_host")
            else:
                files[os.path.join(site, name)] = (data, mode)
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode() if \
            f"{dist_info}/entry_points.txt" in names else ""
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str  # script names keep their case
    parser.read_string(entry_points)
    for section in ("console_scripts", "gui_scripts"):
        if not parser.has_section(section):
            continue
        for script, value in parser.items(section):
            module, _, attr = value.strip().partition(":")
            if "/" in script or not DOTTED.match(module) or not DOTTED.match(attr):
                raise WheelError(f"entry point {script} = {value!r} is not module:function")
            files[os.path.join(bindir, script)] = (
                SCRIPT.format(python=python, module=module, top=attr.split(".")[0], attr=attr).encode(), 0o755)
    return dist_info, files


def remove_installed(venv: str, dist_info: str) -> None:
    """Remove the files an earlier install of the same distribution listed in its RECORD (pip's or ours), so a
    module dropped from the wheel does not linger; only paths inside the venv are touched."""
    site = site_packages(venv)
    project = dist_info.split("-", 1)[0].lower().replace("_", "-")
    root = os.path.realpath(venv) + os.sep
    for old in glob.glob(os.path.join(site, "*.dist-info")):
        if os.path.basename(old).split("-", 1)[0].lower().replace("_", "-") != project:
            continue
        try:
            with open(os.path.join(old, "RECORD"), newline="") as fh:
                listed = [row[0] for row in csv.reader(fh) if row]
        except FileNotFoundError:
            listed = []
        dirs = set()
        for rel in listed:
            path = os.path.normpath(os.path.join(site, rel))
            if not os.path.realpath(path).startswith(root) or not os.path.isfile(path):
                continue
            os.unlink(path)
            if path.endswith(".py"):
                cached = importlib.util.cache_from_source(path)
                if os.path.exists(cached):
                    os.unlink(cached)
            dirs.add(os.path.dirname(path))
        shutil.rmtree(old, ignore_errors=True)
        for folder in sorted(dirs, key=len, reverse=True):  # deepest first; only those left empty
            for candidate in (os.path.join(folder, "__pycache__"), folder):
                try:
                    os.rmdir(candidate)
                except OSError:
                    pass


def install_wheel(venv: str, wheel: bytes) -> dict[str, list]:
    """Install ``wheel`` into ``venv`` as ``pip install --no-deps --force-reinstall`` would, without starting
    pip (pip's own start costs a host about 1.3 CPU-seconds; this about 0.1). Returns the manifest of what it
    wrote: {path: [size, mtime_ns, mode, sha256]}."""
    dist_info, files = wheel_files(venv, wheel)
    remove_installed(venv, dist_info)
    site = site_packages(venv)
    manifest: dict[str, list] = {}
    for path, (data, mode) in sorted(files.items()):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".labfleet-new"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        st = os.stat(path)
        manifest[path] = [st.st_size, st.st_mtime_ns, mode, hashlib.sha256(data).hexdigest()]
    info_dir = os.path.join(site, dist_info)
    with open(os.path.join(info_dir, "INSTALLER"), "w") as fh:
        fh.write("labfleet_host\n")
    rows = [[os.path.relpath(p, site), record_hash(d), str(len(d))] for p, (d, _) in sorted(files.items())]
    rows += [[os.path.join(dist_info, "INSTALLER"), record_hash(b"labfleet_host\n"), "14"],
             [os.path.join(dist_info, "RECORD"), "", ""]]
    # Byte-compiled once here, as pip does, when this Python is the venv's: the attendee's `lab` cannot
    # write into the root-owned venv and would otherwise compile on every start.
    compiled = []
    if os.path.basename(os.path.dirname(site)) == f"python{sys.version_info[0]}.{sys.version_info[1]}":
        for path in files:
            if path.endswith(".py") and path.startswith(site + os.sep):
                cfile = importlib.util.cache_from_source(path)
                if py_compile.compile(path, cfile=cfile, doraise=False, quiet=2):
                    compiled.append([os.path.relpath(cfile, site), "", ""])
    with open(os.path.join(info_dir, "RECORD"), "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows + compiled)
    return manifest


def read_manifest(stamp: str) -> dict[str, list] | None:
    """The manifest kept in ``stamp``; None when there is no stamp or it holds none (an older labfleet_host's
    empty stamp: the install is then redone once, which records one)."""
    try:
        with open(stamp) as fh:
            data = json.load(fh)
    except (FileNotFoundError, ValueError):
        return None
    return data.get("files") if isinstance(data, dict) and isinstance(data.get("files"), dict) else None


def write_manifest(stamp: str, manifest: dict[str, list]) -> None:
    tmp = stamp + ".new"
    with open(tmp, "w") as fh:
        json.dump({"files": manifest}, fh, separators=(",", ":"))
    os.replace(tmp, stamp)


def tree_files(root: str, *, skip: str = "") -> list[str]:
    """Every file under ``root`` but ``skip`` and Python's byte-code caches (the agent may write those)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        found.extend(os.path.join(dirpath, f) for f in filenames)
    return [f for f in found if f != skip]


def file_manifest(paths: list[str]) -> dict[str, list]:
    """{path: [size, mtime_ns, mode, sha256]} of files as they are now."""
    manifest = {}
    for path in paths:
        st = os.lstat(path)
        with open(path, "rb") as fh:
            manifest[path] = [st.st_size, st.st_mtime_ns, st.st_mode & 0o7777, hashlib.sha256(fh.read()).hexdigest()]
    return manifest


def supervisor_running(pidfile: str) -> bool:
    """Whether the supervisor runs: it holds an flock on its pidfile for its whole life (the rule of its own
    ``start``/``status``, so a stale pidfile or a reused pid never counts)."""
    if not pidfile:
        return False
    try:
        fd = os.open(pidfile, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def describe(paths: list[str], shown: int = 3) -> str:
    """A few of ``paths`` for a change line."""
    more = f" and {len(paths) - shown} more" if len(paths) > shown else ""
    return ", ".join(paths[:shown]) + more


def manifest_drift(manifest: dict[str, list]) -> list[str]:
    """The paths of ``manifest`` ({path: [size, mtime_ns, mode, sha256]}) that are missing or whose bytes or mode
    differ. A file whose size and mtime are as recorded is taken as unchanged without reading it; otherwise its
    bytes are hashed, so a file only touched is not drift."""
    drift = []
    for path, (size, mtime_ns, mode, digest) in manifest.items():
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            drift.append(path)
            continue
        if not os.path.isfile(path) or os.path.islink(path) or st.st_mode & 0o7777 != mode:
            drift.append(path)
        elif (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
            with open(path, "rb") as fh:
                if hashlib.sha256(fh.read()).hexdigest() != digest:
                    drift.append(path)
    return drift


class Host:
    def __init__(self, module: AnsibleModule) -> None:
        self.m = module
        self.p = module.params
        self.check = module.check_mode
        self.changes: list[str] = []
        self.diffs: list[dict] = []
        self.restart = False

    # -- helpers ---------------------------------------------------------------

    def run(self, argv, *, check=True, env=None, data=None):
        rc, out, err = self.m.run_command(argv, check_rc=False, environ_update=env or {}, data=data,
                                          binary_data=data is None)
        if check and rc != 0:
            self.m.fail_json(msg=f"{' '.join(argv[:3])} failed (rc {rc}): {(err or out).strip()[-800:]}",
                             changes=self.changes)
        return rc, out, err

    def changed(self, what: str) -> None:
        self.changes.append(what)

    def ensure_dir(self, path: str, mode: int, uid: int = 0, gid: int = 0) -> None:
        if os.path.isdir(path):
            st = os.stat(path)
            if (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (mode, uid, gid):
                return
            self.changed(f"{path}: mode/owner")
        else:
            self.changed(f"{path}: created")
        if not self.check:
            os.makedirs(path, exist_ok=True)
            os.chmod(path, mode)
            os.chown(path, uid, gid)

    def ensure_file(self, path: str, data: bytes, mode: int, uid: int = 0, gid: int = 0, *,
                    validate: list[str] | None = None, secret: bool = False, show: bool = True) -> bool:
        """Write ``data`` atomically unless the file already holds it (mode and owner fixed too)."""
        try:
            with open(path, "rb") as fh:
                old = fh.read()
        except FileNotFoundError:
            old = None
        if old == data:
            st = os.stat(path)
            if (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (mode, uid, gid):
                return False
            self.changed(f"{path}: mode/owner")
            if not self.check:
                os.chmod(path, mode)
                os.chown(path, uid, gid)
            return True
        self.changed(f"{path}: {'written' if old is None else 'updated'}")
        if show and not secret and len(data) < 8192 and self.m._diff:
            self.diffs.append({"before_header": path, "after_header": path,
                               "before": (old or b"").decode(errors="replace"),
                               "after": data.decode(errors="replace")})
        if self.check:
            return True
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".labfleet-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, mode)
            os.chown(tmp, uid, gid)
            if validate:
                rc, out, err = self.m.run_command([*validate, tmp], check_rc=False)
                if rc != 0:
                    self.m.fail_json(msg=f"{path}: {' '.join(validate)} refused it: {(err or out).strip()}",
                                     changes=self.changes)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return True

    def ensure_symlink(self, target: str, path: str) -> None:
        if os.path.islink(path) and os.readlink(path) == target:
            return
        self.changed(f"{path}: linked to {target}")
        if not self.check:
            if os.path.lexists(path):
                os.unlink(path)
            os.symlink(target, path)

    # -- steps -----------------------------------------------------------------

    def packages(self) -> None:
        wanted = self.p["packages"]
        if not wanted:
            return
        _, out, _ = self.run(["dpkg-query", "--show", "--showformat=${Package} ${db:Status-Abbrev}\n", *wanted],
                             check=False)
        have = {line.split(" ")[0].split(":")[0] for line in out.splitlines() if re.match(r"^\S+ ii", line)}
        missing = [p for p in wanted if p not in have]
        if not missing:
            return
        self.changed("packages installed: " + " ".join(missing))
        if self.check:
            return
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        stamp = "/var/lib/apt/periodic/update-success-stamp"
        lists = "/var/lib/apt/lists"
        newest = max([os.path.getmtime(p) for p in (stamp, lists) if os.path.exists(p)] or [0])
        if time.time() - newest > self.p["apt_cache_valid_time"]:
            self.run(["apt-get", "update", "-q"], env=env)
        self.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env)

    def account(self) -> tuple[int, int, str]:
        user, shell = self.p["attendee_user"], self.p["attendee_shell"]
        password = self.p["attendee_password_hash"] or "!"
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            entry = None
        if entry is None:
            self.changed(f"account {user}: created")
            if self.check:
                return 65534, 65534, f"/home/{user}"
            self.run(["useradd", "--create-home", "--shell", shell, "--password", password, "--user-group",
                      user])
            entry = pwd.getpwnam(user)
        else:
            if entry.pw_shell != shell:
                self.changed(f"account {user}: shell")
                if not self.check:
                    self.run(["usermod", "--shell", shell, user])
            if self._shadow_hash(user) != password:
                self.changed(f"account {user}: password")
                if not self.check:
                    self.run(["usermod", "--password", password, user])
        if not os.path.isdir(entry.pw_dir):
            self.ensure_dir(entry.pw_dir, 0o750, entry.pw_uid, entry.pw_gid)
        keys = self.p["attendee_ssh_keys"]
        if keys:
            ssh = os.path.join(entry.pw_dir, ".ssh")
            self.ensure_dir(ssh, 0o700, entry.pw_uid, entry.pw_gid)
            self.ensure_file(os.path.join(ssh, "authorized_keys"), ("\n".join(keys) + "\n").encode(), 0o600,
                             entry.pw_uid, entry.pw_gid)
        sudo = (f"# Managed by labfleet (playbooks/library/labfleet_host.py); removed by teardown.yml.\n"
                f"{user} ALL=(ALL:ALL) {'NOPASSWD: ' if self.p['attendee_sudo_nopasswd'] else ''}ALL\n")
        self.ensure_file(self.p["sudoers_file"], sudo.encode(), 0o440, validate=["/usr/sbin/visudo", "-cf"])
        return entry.pw_uid, entry.pw_gid, entry.pw_dir

    @staticmethod
    def _shadow_hash(user: str) -> str | None:
        with open("/etc/shadow") as fh:
            for line in fh:
                fields = line.split(":")
                if fields[0] == user:
                    return fields[1]
        return None

    def bundle_current(self) -> bool:
        """Whether the host's bundle is the controller's (the action then sends it only when not)."""
        if self.p["bundle_upload"]:
            return True
        try:
            with open(self.p["bundle"], "rb") as fh:
                digest = hashlib.sha256()
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        except FileNotFoundError:
            return False
        return digest.hexdigest() == self.p["bundle_sha256"]

    def bundle(self) -> dict[str, bytes]:
        """The members of the bundle the action sent, by name."""
        out: dict[str, bytes] = {}
        path = self.p["bundle"]
        upload = self.p["bundle_upload"]
        if upload:
            with open(upload, "rb") as fh:
                self.ensure_dir(self.p["share_dir"], 0o755)
                self.ensure_file(path, fh.read(), 0o644, show=False)
            path = upload
        if self.check and not os.path.exists(path):
            self.changed(f"{path}: would be sent")
            return out
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                if member.isfile():
                    out[member.name] = tar.extractfile(member).read()
        return out

    def catalog(self, files: dict[str, bytes]) -> None:
        share, labs = self.p["share_dir"], self.p["labs_dir"]
        self.ensure_dir(share, 0o755)
        archive = files.get("labs.tar.gz")
        rootfs = files.get("rootfs.tar.gz")
        if archive is None or rootfs is None:
            if not self.check:
                self.m.fail_json(msg=f"{self.p['bundle']}: no catalog or root fs in the bundle")
            return
        self.ensure_file(self.p["catalog_archive"], archive, 0o644, show=False)
        self.ensure_file(self.p["rootfs_dest"], rootfs, 0o644, show=False)
        stamp = os.path.join(labs, ".catalog-" + hashlib.sha256(archive).hexdigest()[:16])
        manifest = read_manifest(stamp)
        if manifest is None:
            self.changed(f"{labs}: unpacked")
        else:
            # Each unpacked file as recorded (stat, then bytes only when the stat differs), and nothing added:
            # a lab file changed or dropped in on the host is put back by unpacking the catalog again.
            drift = manifest_drift(manifest) + sorted(set(tree_files(labs, skip=stamp)) - set(manifest))
            if not drift:
                return
            self.changed(f"{labs}: unpacked again, {describe(drift)} differed")
        if self.check:
            return
        new = labs + ".new"
        shutil.rmtree(new, ignore_errors=True)
        os.makedirs(new)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            for member in tar.getmembers():
                parts = member.name.split("/", 1)
                if len(parts) < 2 or not parts[1]:
                    continue
                if member.name.startswith("/") or ".." in member.name.split("/") or not (member.isfile()
                                                                                       or member.isdir()):
                    self.m.fail_json(msg=f"catalog archive: refusing member {member.name!r}")
                member.name = parts[1]
                member.uid = member.gid = 0
                tar.extract(member, new, set_attrs=True, numeric_owner=True)
        shutil.rmtree(labs, ignore_errors=True)
        os.replace(new, labs)
        write_manifest(stamp, file_manifest(tree_files(labs, skip=stamp)))

    def agent_install(self, files: dict[str, bytes]) -> None:
        """The venv and the wheel in it. The install's manifest (each file's size, mtime, mode and sha256) is
        kept in a stamp named by the wheel's digest: a second run stats those files instead of running pip or
        reading them, and reinstalls (restarting the agent) when one is missing or its bytes changed."""
        venv, agent_dir = self.p["agent_venv"], self.p["agent_dir"]
        wheel_name = self.p["wheel_name"]
        wheel = files.get(wheel_name)
        python = os.path.join(venv, "bin", "python")
        if not os.path.exists(python):
            self.changed(f"{venv}: created")
            if not self.check:
                self.run([self.p["agent_python"], "-m", "venv", "--system-site-packages", "--without-pip", venv])
        if wheel is None:
            return
        self.ensure_file(os.path.join(agent_dir, wheel_name), wheel, 0o644, show=False)
        stamp = os.path.join(venv, ".labfleet-wheel-" + hashlib.sha256(wheel).hexdigest()[:16])
        manifest = read_manifest(stamp)
        drift = [] if manifest is None else manifest_drift(manifest)
        if manifest is None or drift:
            self.changed(f"agent reinstalled from {wheel_name}: {describe(drift)} differed" if drift
                         else f"agent installed from {wheel_name}")
            self.restart = True
            if not self.check:
                try:
                    manifest = install_wheel(venv, wheel)
                except WheelError as exc:
                    self.m.warn(f"{wheel_name}: installed with pip ({exc})")
                    self._pip_install(python, os.path.join(agent_dir, wheel_name))
                    manifest = {}  # pip's install is not checked file by file on later runs
                for old in glob.glob(os.path.join(venv, ".labfleet-wheel-*")):
                    os.unlink(old)
                write_manifest(stamp, manifest)
        self.ensure_symlink(os.path.join(venv, "bin", "lab"), self.p["lab_command"])

    def _pip_install(self, python: str, wheel_path: str) -> None:
        pip_wheels = sorted(glob.glob(self.p["pip_wheels"]))
        if pip_wheels:
            pip = [python, pip_wheels[-1] + "/pip"]
        else:
            self.run([python, "-m", "ensurepip", "--default-pip"])
            pip = [python, "-m", "pip"]
        self.run([*pip, "install", "--quiet", "--no-index", "--no-deps", "--disable-pip-version-check",
                  "--force-reinstall", wheel_path])

    def hooks(self, files: dict[str, bytes]) -> None:
        if "labfleet-help.sh" in files:
            self.ensure_file(self.p["help_hook"], files["labfleet-help.sh"], 0o644)
        self.ensure_file(self.p["terminal_hook"], self.p["terminal_hook_content"].encode(), 0o644)
        if "labfleet-readiness" in files:
            self.ensure_file(self.p["readiness_script"], files["labfleet-readiness"], 0o755, show=False)

    def session_ceiling(self, init: str, uid: int) -> str:
        """The attendee's sessions' ceiling; returns the cgroup the agent watches ('' for none)."""
        if init == "systemd":
            dropin = f"/etc/systemd/system/user-{uid}.slice.d"
            self.ensure_dir(dropin, 0o755)
            text = ("# Managed by labfleet (playbooks/library/labfleet_host.py): the attendee's login sessions' "
                    "ceiling (docs/help.md)\n[Slice]\n"
                    f"TasksMax={self.p['session_pids_max']}\nMemoryMax={self.p['session_memory_max']}\n")
            if self.ensure_file(os.path.join(dropin, "50-labfleet-ceiling.conf"), text.encode(), 0o644) \
                    and not self.check:
                self.run(["systemctl", "daemon-reload"])
            return f"user.slice/user-{uid}.slice"
        cgroup = self.p["session_cgroup"]
        if not cgroup:
            return ""
        join = self.p["session_join"]
        self.ensure_file(join, self.p["session_join_content"].encode(), 0o755)
        line = f"session optional pam_exec.so quiet {join}"
        pam = "/etc/pam.d/sshd"
        try:
            with open(pam) as fh:
                lines = fh.read().splitlines()
        except FileNotFoundError:
            lines = []
        kept = [x for x in lines if not re.search(r"pam_exec\.so .*labfleet-session-join", x)]
        wanted = lines if (line in lines and len(lines) - len(kept) == 1) else kept + [line]
        self.ensure_file(pam, ("\n".join(wanted) + "\n").encode(), 0o644)
        return cgroup

    def agent_config(self, session_cgroup: str, enrolled: bool) -> None:
        config_dir = self.p["agent_config_dir"]
        self.ensure_dir(config_dir, 0o755)
        ca = self.p["ca_pem"]
        if ca:
            self.restart |= self.ensure_file(self.p["agent_ca_file"], ca.encode(), 0o644)
        elif os.path.exists(self.p["agent_ca_file"]):
            self.changed(f"{self.p['agent_ca_file']}: removed")
            if not self.check:
                os.unlink(self.p["agent_ca_file"])
        text = self.p["agent_toml"]
        if session_cgroup:
            text = text.rstrip("\n") + f"\nsession_cgroup = {json.dumps(session_cgroup)}\n"
        self.restart |= self.ensure_file(os.path.join(config_dir, "agent.toml"), text.encode(), 0o644)
        env = os.path.join(config_dir, "env")
        if not enrolled:
            token = self.p["enroll_token"]
            self.restart |= self.ensure_file(env, f"LABFLEET_AGENT_ENROLL_TOKEN={token}\n".encode(), 0o600,
                                             secret=True)
        elif not os.path.exists(env):
            self.ensure_file(env, b"", 0o600)

    def keep_running(self, init: str, files: dict[str, bytes]) -> None:
        if init == "systemd":
            unit = files.get("labfleet-agent.service")
            if unit is not None:
                self.restart |= self.ensure_file(self.p["agent_unit"], unit, 0o644)
            if self.check:
                return
            self.run(["systemctl", "daemon-reload"])
            rc, _, _ = self.run(["systemctl", "is-enabled", "labfleet-agent"], check=False)
            if rc != 0:
                self.changed("labfleet-agent: enabled")
                self.run(["systemctl", "enable", "labfleet-agent"])
            if self.restart:
                self.changed("labfleet-agent: restarted")
                self.run(["systemctl", "restart", "labfleet-agent"])
            elif self.run(["systemctl", "is-active", "labfleet-agent"], check=False)[0] != 0:
                self.changed("labfleet-agent: started")
                self.run(["systemctl", "start", "labfleet-agent"])
            return
        supervisor = self.p["agent_supervisor"]
        self.restart |= self.ensure_file(supervisor, self.p["supervisor_content"].encode(), 0o755, show=False)
        if self.check:
            return
        if self.restart:
            self.changed("agent restarted (supervisor)")
            self.run([supervisor, "restart"])
        elif supervisor_running(self.p["agent_pidfile"]):
            return  # what `supervisor start` would find, without starting a Python for it
        else:
            _, out, _ = self.run([supervisor, "start"])
            if out.startswith("started"):
                self.changed("agent started (supervisor)")

    def wait_enrolled(self) -> None:
        creds = os.path.join(self.p["agent_state_dir"], "credentials.json")
        deadline = time.monotonic() + self.p["enroll_timeout"]
        while not os.path.exists(creds):
            if time.monotonic() > deadline:
                self.m.fail_json(msg=self.p["enroll_timeout_msg"], changes=self.changes)
            time.sleep(0.2)
        env = os.path.join(self.p["agent_config_dir"], "env")
        try:
            with open(env) as fh:
                lines = fh.read().splitlines(keepends=True)
        except FileNotFoundError:
            return
        kept = [x for x in lines if not re.match(r"^\s*(export\s+)?LABFLEET_AGENT_ENROLL_TOKEN\s*=", x)]
        if kept != lines:
            self.ensure_file(env, "".join(kept).encode(), 0o600, secret=True)

    def readiness(self) -> dict:
        if self.check and not os.path.exists(self.p["readiness_python"]):
            return {}
        # The agent's own interpreter and flags (python -I, with site: Debian's libseccomp bindings come
        # through the venv's system site-packages), so the report sees what the agent will import.
        _, out, _ = self.run([self.p["readiness_python"], "-I", self.p["readiness_script"], "--labs", self.p["labs_dir"],
                              "--out", self.p["readiness_file"], "--name", self.p["name"]])
        result = json.loads(out)
        if result.get("changed"):
            self.changed(f"{self.p['readiness_file']}: updated")
        return result["report"]

    def converge(self) -> dict:
        enrolled = os.path.exists(os.path.join(self.p["agent_state_dir"], "credentials.json"))
        if not enrolled and not self.p["enroll_token"]:
            self.m.fail_json(msg=f"labfleet_enroll_token is empty and the agent on {self.p['name']} has not "
                                 "enrolled yet: create one with `labfleet enroll-token create` and pass it in the "
                                 "inventory or --extra-vars")
        if not self.bundle_current():
            if not self.check:
                self.m.exit_json(changed=False, need_bundle=True)
            self.changed(f"{self.p['bundle']}: would be sent")
        init = self.p["agent_init"]
        if init == "auto":
            init = "systemd" if os.path.isdir("/run/systemd/system") else "supervisor"
        self.packages()
        uid, _, _ = self.account()
        files = self.bundle()
        self.catalog(files)
        self.agent_install(files)
        self.hooks(files)
        session_cgroup = self.session_ceiling(init, uid)
        self.agent_config(session_cgroup, enrolled)
        self.keep_running(init, files)
        report: dict = {}
        if not self.check:
            self.wait_enrolled()
        # The readiness check runs when anything changed or there is no report yet; an unchanged host
        # reports what it found last time (its kernel and packages are as they were).
        if not self.check and (self.changes or not os.path.exists(self.p["readiness_file"])):
            report = self.readiness()
        elif os.path.exists(self.p["readiness_file"]):
            with open(self.p["readiness_file"]) as fh:
                report = json.load(fh)
        return {"init": init, "readiness": report}


def verdict(name: str, report: dict, where: str) -> list[str]:
    """What the play prints about the host's readiness (READY or NOT READY, with every reason)."""
    if not report:
        return []
    if report.get("ready"):
        return [f"READY: {name} can run all {len(report.get('labs', {}))} labs (kernel {report.get('kernel')}, "
                f"cgroups {report.get('cgroup', {}).get('layout')}, namespaces "
                f"{','.join(report.get('namespaces', []))}, libseccomp "
                f"{report.get('libseccomp', {}).get('version')})"]
    lines = [f"NOT READY: {name} (details in {where})"]
    for lab in report.get("not_ready", []):
        missing = report.get("labs", {}).get(lab, {}).get("missing", [])
        lines.append(f"lab {lab} cannot run: {'; '.join(missing)}")
    for broken in (report.get("broken_labs") or {}).values():
        lines.append(f"a lab folder does not load: {broken}")
    return lines


def main() -> None:
    text = {"type": "str", "default": ""}
    module = AnsibleModule(argument_spec={
        "name": {"type": "str", "required": True},
        "bundle": {"type": "path", "required": True},
        "bundle_sha256": {"type": "str", "required": True},
        "bundle_upload": {"type": "path", "default": ""},
        "wheel_name": {"type": "str", "required": True},
        "packages": {"type": "list", "elements": "str", "default": []},
        "apt_cache_valid_time": {"type": "int", "default": 3600},
        "attendee_user": {"type": "str", "required": True},
        "attendee_shell": {"type": "str", "default": "/bin/bash"},
        "attendee_password_hash": {"type": "str", "default": "", "no_log": True},
        "attendee_ssh_keys": {"type": "list", "elements": "str", "default": []},
        "attendee_sudo_nopasswd": {"type": "bool", "default": True},
        "sudoers_file": {"type": "path", "required": True},
        "share_dir": {"type": "path", "required": True},
        "labs_dir": {"type": "path", "required": True},
        "catalog_archive": {"type": "path", "required": True},
        "rootfs_dest": {"type": "path", "required": True},
        "readiness_file": {"type": "path", "required": True},
        "readiness_script": {"type": "path", "required": True},
        "readiness_python": {"type": "path", "required": True},
        "agent_python": {"type": "path", "required": True},
        "pip_wheels": {"type": "str", "required": True},
        "agent_dir": {"type": "path", "required": True},
        "agent_venv": {"type": "path", "required": True},
        "agent_config_dir": {"type": "path", "required": True},
        "agent_state_dir": {"type": "path", "required": True},
        "agent_ca_file": {"type": "path", "required": True},
        "ca_pem": text,
        "agent_toml": {"type": "str", "required": True},
        "enroll_token": {"type": "str", "default": "", "no_log": True},
        "enroll_timeout": {"type": "int", "default": 180},
        "enroll_timeout_msg": {"type": "str", "required": True},
        "agent_init": {"type": "str", "choices": ["auto", "systemd", "supervisor"], "default": "auto"},
        "agent_unit": {"type": "path", "required": True},
        "agent_supervisor": {"type": "path", "required": True},
        "agent_pidfile": {"type": "path", "default": ""},
        "supervisor_content": {"type": "str", "required": True},
        "lab_command": {"type": "path", "required": True},
        "help_hook": {"type": "path", "required": True},
        "terminal_hook": {"type": "path", "required": True},
        "terminal_hook_content": {"type": "str", "required": True},
        "session_cgroup": text,
        "session_join": {"type": "path", "required": True},
        "session_join_content": text,
        "session_pids_max": {"type": "int", "default": 512},
        "session_memory_max": {"type": "str", "default": "75%"},
    }, supports_check_mode=True)
    host = Host(module)
    result = host.converge()
    done = ("changed: " + "; ".join(host.changes)) if host.changes else "nothing to change"
    out = {"changed": bool(host.changes), "changes": host.changes, **result,
           "msg": [*verdict(module.params["name"], result["readiness"], module.params["readiness_file"]), done]}
    if host.diffs:
        out["diff"] = host.diffs
    module.exit_json(**out)


if __name__ == "__main__":
    main()
