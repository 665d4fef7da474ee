#!/usr/bin/env bash
# Installs what lvsflow's lab and tests need on a fresh Debian machine (root). Idempotent.
set -euo pipefail
need=()
for p in nats-server redis-server nftables iproute2 iputils-arping openssl procps \
  iputils-ping dnsmasq-base dovecot-imapd dovecot-pop3d vsftpd tinyproxy postgresql mariadb-server \
  conntrack chromium \
  qemu-system-x86 busybox-static ipvsadm xz-utils; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  # No init system here: keep package scripts from starting daemons in the root namespace.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
# The IPVS test VM (test/kernel-ipvs.test.ts): Debian's linux-image-amd64 is downloaded and unpacked
# into a cache, never installed on this host (that would add a boot kernel and run initramfs hooks).
bash "$(dirname "$0")/ipvs-vm/build.sh" >/dev/null
