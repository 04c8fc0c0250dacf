#!/usr/bin/env bash
# Installs the Debian packages that the labs, the local namespace fleet and
# provisioning need on this machine (a lab VM gets the same through
# playbooks/). Safe to run again: apt installs only what is missing.
#   util-linux iproute2 strace          the attendee's tools in the labs
#   python3-seccomp libseccomp-dev gcc  libseccomp to compile filters; the C lab programs
#   golang-github-containers-common     Docker's default seccomp profile (/usr/share/containers/seccomp.json)
#   stress-ng                           the CPU hog of cg-cpu
#   sudo uidmap                         the attendee account uses sudo where a lab needs root
#   openssh-server ansible-core         the local fleet's sshd per host; playbooks
#   ansible-lint yamllint               the playbooks are linted in CI
#   docker-compose ruby                 docker-compose.yml and the Vagrantfile are validated in CI
#   busybox-static                      the small root fs of ns-mount-2 (node_agent/kernel/rootfs.py);
#                                       the fork-bomb's children and probe (node_agent/kernel/forkbomb.py)
#   netcat-openbsd iputils-ping         ns-net-2's server (nc -lk) and the attendee's ping between namespaces
#   openssl                             tests/playbooks hash the attendee's test password (openssl passwd -6)
#   python3-venv                        the agent's venv on a lab VM (playbooks/); local fleet hosts see this machine's
#   tmux                                the attendee's shared terminal on a fleet host (docs/terminal.md); tests type in it
#   npm (only when no npm is on PATH)   the pages' front-end packages (web/package-lock.json: xterm.js, asciinema-player);
#                                       a machine with NodeSource's nodejs has npm in it, and Debian's npm conflicts with that
#   mmdebstrap qemu-system-x86 qemu-utils  tests/vm: the Debian 12 VM's image (scripts/vm-image.sh) and its boot
#   chromium                            tests/web: the browser Playwright drives (never a downloaded one)
set -euo pipefail
PACKAGES=(util-linux iproute2 strace python3-seccomp libseccomp-dev gcc libc6-dev
  golang-github-containers-common stress-ng sudo uidmap openssh-server ansible-core
  ansible-lint yamllint docker-compose ruby procps psmisc busybox-static openssl python3-venv
  netcat-openbsd iputils-ping tmux mmdebstrap qemu-system-x86 qemu-utils chromium)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "[system-packages] installing: ${missing[*]}"
  apt-get update -qq
  # policy-rc.d keeps apt from starting sshd on the host: the fleet starts its own per host.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
else
  echo "[system-packages] all present"
fi
