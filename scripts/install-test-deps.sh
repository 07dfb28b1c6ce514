#!/usr/bin/env bash
# Installs the system packages the test suite runs for real: NFS (nfs-ganesha + libnfs client tools),
# GlusterFS, btrfs tools, zstd, git and sshd for the populator, kubectl for the kustomize checks, and
# rclone as the reference of the sync benchmark. Debian 12, as root.
set -euo pipefail

packages=(
  nfs-ganesha nfs-ganesha-vfs libnfs-utils rpcbind dbus
  glusterfs-server glusterfs-client
  btrfs-progs xfsprogs zstd attr util-linux
  git openssh-server openssh-client rclone
)
command -v kubectl >/dev/null 2>&1 || packages+=(kubernetes-client)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
