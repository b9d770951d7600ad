#!/usr/bin/env bash
# Debian packages for the real-kernel SCTP bench: qemu and a Debian kernel with
# sctp.ko (the VM for hosts without SCTP), iproute2 (namespaces, veth, netem),
# busybox-static (virtme initramfs), kmod, lksctp-tools, tcpdump; and the real
# peers and decoders the interop tests use: freediameter (the freeDiameterd
# daemon) with freediameter-extensions (acl_wl, rt_default, dbg_msg_dumps .fdx),
# tshark (decodes captures), openssl (freeDiameterd's mandatory TLS certificate).
# prometheus (a real server scraping sigmw, and promtool for rules and scrapes);
# systemd (systemd-analyze verifies the deploy unit) and, unless a kubectl is
# already there, kubernetes-client (kubectl kustomize renders the manifests).
# Idempotent; root installs.
set -euo pipefail
packages=(
  qemu-system-x86 linux-image-amd64 busybox-static iproute2 kmod lksctp-tools tcpdump
  freediameter freediameter-extensions tshark openssl prometheus systemd
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v kubectl >/dev/null || missing+=(kubernetes-client)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "install-testbed: missing Debian packages: ${missing[*]} (run as root)" >&2
  exit 1
fi
echo "install-testbed: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture; answer no without a prompt.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
