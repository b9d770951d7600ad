#!/usr/bin/env bash
# Debian packages for the real-kernel SCTP bench: qemu and a Debian kernel with
# sctp.ko (the VM for hosts without SCTP), iproute2 (namespaces, veth, netem),
# busybox-static (virtme initramfs), kmod, lksctp-tools, tcpdump. Idempotent; root installs.
set -euo pipefail
packages=(qemu-system-x86 linux-image-amd64 busybox-static iproute2 kmod lksctp-tools tcpdump)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "install-testbed: missing Debian packages: ${missing[*]} (run as root)" >&2
  exit 1
fi
echo "install-testbed: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
