#!/usr/bin/env bash
# Installs Debian's `prometheus` package (the server and `promtool`, 2.42 on bookworm) for the rule
# tests (test/unit/prometheus-rules.test.ts) and the scrape test (test/api/prometheus.test.ts).
# Idempotent: does nothing when the package is installed. It never leaves a system Prometheus
# running: service starts are refused while the package installs (policy-rc.d, exit 101), and the
# tests run the binaries themselves with their own config and data directory.
set -euo pipefail
PACKAGE=prometheus
if dpkg -s "$PACKAGE" 2>/dev/null | grep -q '^Status: install ok installed'; then
  exit 0
fi
if [[ "$(id -u)" != 0 ]]; then
  echo "install-prometheus: Debian's $PACKAGE package is missing; run this script as root (it uses apt-get)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Refuse service starts during the install unless a policy already exists (Docker images ship one).
policy=/usr/sbin/policy-rc.d
own_policy=false
if [[ ! -e "$policy" ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  own_policy=true
fi
cleanup() { if [[ "$own_policy" == true ]]; then rm -f "$policy"; fi; }
trap cleanup EXIT
apt-get -o DPkg::Lock::Timeout=300 update -qq
apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "$PACKAGE" >/dev/null
# Where systemd runs, the unit was enabled by the package: keep it off.
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
  systemctl disable --now prometheus.service >/dev/null 2>&1 || true
fi
promtool --version | head -n 1
