#!/usr/bin/env bash
# Installs what the failover benchmark needs beyond infra/install-deps.sh: keepalived (the
# baseline; run VRRP-only with -P, the lab kernel has no IPVS) and stress-ng (the CPU load).
# Idempotent; as root. Package scripts must not start a keepalived in the root namespace.
set -euo pipefail
need=()
for p in keepalived stress-ng; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
[ ${#need[@]} -eq 0 ] && exit 0
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
