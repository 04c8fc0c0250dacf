#!/usr/bin/env bash
# Builds (once per machine) the Debian 12 lab VM image the VM test boots:
# a root file system made by mmdebstrap from Debian bookworm packages, with
# systemd as PID 1, sshd, python3 + python3-venv for the agent's venv and every
# package the lab_vm role would apt-install (so the role's package step finds
# them all and the guest, which has no network beyond this machine, never runs apt).
#
#   scripts/vm-image.sh [CACHE_DIR]      prints the folder holding the image
#
# The folder is CACHE_DIR/<hash of this script and the role's package list>
# (default /var/cache/labfleet/vm): changing either builds a new image; an
# image already there is reused. It holds rootfs.img (ext4, the guest's
# /dev/vda), vmlinuz and initrd.img (booted with -kernel/-initrd). No key or
# secret is in the image: the test passes root's public key on the kernel
# command line (labfleet.ssh_key=<base64>) and a unit installs it at boot.
# Needs: mmdebstrap, e2fsprogs (mkfs.ext4 -d), root, and Debian's mirror.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
cache=${1:-/var/cache/labfleet/vm}
mirror=${LABFLEET_VM_MIRROR:-http://deb.debian.org/debian}
defaults="$repo/playbooks/roles/lab_vm/defaults/main.yml"

# The role's package list, read from its defaults (the lines under labfleet_lab_packages).
lab_packages=$(awk '/^labfleet_lab_packages:/{on=1; next} on && /^  - /{print $2; next} on{exit}' "$defaults")
[ -n "$lab_packages" ] || { echo "vm-image: no labfleet_lab_packages in $defaults" >&2; exit 1; }
base_packages="linux-image-cloud-amd64 initramfs-tools systemd-sysv udev dbus openssh-server python3 python3-venv
  ca-certificates iproute2 procps"
packages=$(printf '%s\n' $base_packages $lab_packages | sort -u | paste -sd, -)

key=$( { cat "$0"; echo "$packages"; echo "$mirror"; } | sha256sum | cut -c1-16)
out="$cache/$key"
if [ -f "$out/.done" ]; then echo "$out"; exit 0; fi

mkdir -p "$cache"
# One build at a time per cache (two test runs starting together): the second finds the first's image.
exec 9>"$cache/.lock"
flock 9
if [ -f "$out/.done" ]; then echo "$out"; exit 0; fi
work=$(mktemp -d "$cache/.build-XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"

# The guest's own configuration, written into the tree before the image is made.
cat > "$work/customize.sh" <<'EOF'
set -e
r="$1"
echo labvm > "$r/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 labvm\n' > "$r/etc/hosts"
printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' > "$r/etc/fstab"
# DHCP on QEMU's user-mode network (10.0.2.0/24) with systemd-networkd.
mkdir -p "$r/etc/systemd/network"
printf '[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n' \
  > "$r/etc/systemd/network/50-dhcp.network"
ln -sf /lib/systemd/system/systemd-networkd.service "$r/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
# No DNS in the guest: sshd must not wait on reverse lookups of the forwarded client.
printf 'UseDNS no\n' > "$r/etc/ssh/sshd_config.d/labfleet-vm.conf"
# Root's key from the kernel command line (labfleet.ssh_key=base64 of a public key), before sshd starts.
cat > "$r/usr/local/sbin/labfleet-vm-ssh-key" <<'SH'
#!/bin/sh
set -e
for word in $(cat /proc/cmdline); do
  case "$word" in labfleet.ssh_key=*) key=${word#labfleet.ssh_key=} ;; esac
done
[ -n "${key:-}" ] || exit 0
install -d -m 0700 /root/.ssh
echo "$key" | base64 -d > /root/.ssh/authorized_keys
chmod 0600 /root/.ssh/authorized_keys
SH
chmod 0755 "$r/usr/local/sbin/labfleet-vm-ssh-key"
cat > "$r/etc/systemd/system/labfleet-vm-ssh-key.service" <<'UNIT'
[Unit]
Description=Root's SSH key from the kernel command line (labfleet VM test)
Before=ssh.service
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/labfleet-vm-ssh-key
[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/labfleet-vm-ssh-key.service \
  "$r/etc/systemd/system/multi-user.target.wants/labfleet-vm-ssh-key.service"
rm -f "$r/etc/machine-id"; : > "$r/etc/machine-id"
EOF

echo "[vm-image] mmdebstrap bookworm -> $out ($(echo "$packages" | tr ',' ' ' | wc -w) packages)" >&2
mmdebstrap --variant=apt --include="$packages" \
  --customize-hook="bash $work/customize.sh \"\$1\"" \
  bookworm "$root" "$mirror" >&2

mkdir -p "$work/out"
cp "$(readlink -f "$root/vmlinuz")" "$work/out/vmlinuz"
cp "$(readlink -f "$root/initrd.img")" "$work/out/initrd.img"
truncate -s 4G "$work/out/rootfs.img"
mkfs.ext4 -q -L labvm -d "$root" "$work/out/rootfs.img"
touch "$work/out/.done"
rm -rf "$out"
mv "$work/out" "$out"
echo "$out"
