#!/usr/bin/env bash
# Installs the Debian packages the stack needs that a minimal Debian 12 lacks. Idempotent: does
# nothing (one dpkg-query per package) when all are present.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PACKAGES=(
  mariadb-server mariadb-client                       # the monolith's database (mariadb.sh)
  php8.2-fpm php8.2-cli php8.2-mysql php8.2-mbstring  # the monolith stand-in (web.sh)
  nginx-light                                         # in front of PHP-FPM (web.sh)
  openjdk-17-jre-headless                             # `java` for Kafka, HBase, jvm/hbase/create-tables.sh
  maven                                               # `mvn` fetches their jars once (jvm-lib.sh)
  python3 python3-venv                                # Python 3.11 and its venv (install-python.sh)
  supervisor                                          # keeps the capture pipeline running (pipeline.sh)
  curl ca-certificates                                # readiness and health checks; HTTPS to the registries
  iproute2                                            # `ss` names the holder of a taken port (lib.sh)
  wrk                                                 # load for bench/: the monolith's baseline, the gateway's figures
  make                                                # the Makefile (this script runs without it)
)
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
# Debian's packages start their own services on install (mariadb, php-fpm, nginx, a system-wide
# supervisord); ours run from the state dir instead.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get update -qq || die "apt-get update failed"
apt-get install -y -qq --no-install-recommends "${missing[@]}" >"${TMPDIR:-/tmp}/apt-install.log" 2>&1 \
  || { tail -n 30 "${TMPDIR:-/tmp}/apt-install.log" >&2; die "apt-get install failed (log above)"; }
log "system packages installed"
