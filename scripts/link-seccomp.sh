#!/usr/bin/env bash
# Makes Debian's libseccomp bindings (python3-seccomp) importable from a venv
# built on another 3.11 interpreter: a symlink to the single extension module.
set -euo pipefail
python=$1
so=$(ls /usr/lib/python3/dist-packages/seccomp.cpython-*.so 2>/dev/null | head -n1 || true)
if [ -z "$so" ]; then
  dpkg-query -W python3-seccomp >/dev/null 2>&1 || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-seccomp >/dev/null; }
  so=$(ls /usr/lib/python3/dist-packages/seccomp.cpython-*.so | head -n1)
fi
site=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
ln -sf "$so" "$site/"
"$python" -c 'import seccomp' && echo "[link-seccomp] seccomp bindings importable in $site"
