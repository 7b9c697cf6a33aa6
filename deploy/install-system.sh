#!/usr/bin/env bash
# Installs the Debian packages the stack needs. Idempotent: does nothing when all are present.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PACKAGES=(mariadb-server mariadb-client php8.2-fpm php8.2-cli php8.2-mysql php8.2-mbstring nginx-light wrk iproute2)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} == 0 )); then
  log "system packages present"
  exit 0
fi
[[ $(id -u) == 0 ]] || die "installing ${missing[*]} needs root (apt-get)"
log "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Debian's packages start their own services on install; ours run from the state dir instead.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get update -qq || die "apt-get update failed"
apt-get install -y -qq --no-install-recommends "${missing[@]}" >"${TMPDIR:-/tmp}/apt-install.log" 2>&1 \
  || { tail -n 30 "${TMPDIR:-/tmp}/apt-install.log" >&2; die "apt-get install failed (log above)"; }
log "system packages installed"
