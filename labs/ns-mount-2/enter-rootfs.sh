#!/bin/bash
# ns-mount-2, step enter-rootfs: what the attendee types, non-interactively.
# LAB_ROOTFS_TARBALL lets tests stage the tarball elsewhere; on a VM it is the default path.
set -euo pipefail
tarball=${LAB_ROOTFS_TARBALL:-/usr/share/labfleet/rootfs.tar.gz}
mkdir -p ~/rootfs
if [ -f "$tarball" ]; then
  tar -xzf "$tarball" -C ~/rootfs
else
  # No staged tarball on this VM: the same tree by hand from busybox-static (see the instructions).
  mkdir -p ~/rootfs/bin ~/rootfs/proc
  cp /bin/busybox ~/rootfs/bin/
  unshare -Ur --root="$HOME/rootfs" /bin/busybox --install -s /bin
fi
ls ~/rootfs
unshare -Ufmrp --mount-proc --root="$HOME/rootfs" --wd=/ sh -c 'ps -ef; ls /'
# The shell the attendee keeps open: unshare -f forks the namespace's PID 1 (busybox sleep).
setsid unshare -Ufmrp --mount-proc --root="$HOME/rootfs" --wd=/ sleep 600 </dev/null >/dev/null 2>&1 &
parent=$!
for _ in $(seq 100); do
  child=$(cat /proc/$parent/task/$parent/children 2>/dev/null || true)
  [ -n "$child" ] && [ "$(cat /proc/${child%% *}/comm 2>/dev/null)" = sleep ] && break
  sleep 0.02
done
echo "PID 1 of the new namespace is $child on the host"
