#!/usr/bin/env bash
# Installs the load balancer `npm run cluster` puts in front of its API processes: Debian's nginx.
# Idempotent: does nothing when an nginx binary is present. The package's postinst would start
# nginx as a system service on port 80; a policy-rc.d for the duration of the install stops that
# (the cluster runs its own nginx with its own config, prefix and pid file, in the foreground).
set -euo pipefail
if command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]]; then
  echo "nginx already installed ($(/usr/sbin/nginx -v 2>&1 || nginx -v 2>&1))"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-lb: no apt-get here; install nginx with your package manager (npm run cluster needs it)" >&2
  exit 1
fi
sudo=()
if [[ "$(id -u)" != 0 ]]; then sudo=(sudo); fi
policy=/usr/sbin/policy-rc.d
made_policy=0
if [[ ! -e "$policy" ]]; then
  printf '#!/bin/sh\n# written by sluice scripts/install-lb.sh for one install: start no services\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
  "${sudo[@]}" chmod 755 "$policy"
  made_policy=1
fi
cleanup() { if [[ "$made_policy" == 1 ]]; then "${sudo[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends nginx >/dev/null
# Belt and braces: a system nginx started anyway (no policy-rc.d support) is stopped again.
if [[ -s /run/nginx.pid ]] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; then
  "${sudo[@]}" /usr/sbin/nginx -s quit || true
fi
/usr/sbin/nginx -v
