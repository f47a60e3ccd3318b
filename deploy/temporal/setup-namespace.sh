#!/bin/sh
# Creates Sluice's namespace and registers its search attributes (the names in
# search-attributes.txt beside this script, all Keyword), skipping what exists. Idempotent.
# Run by docker-compose.yml's `temporal-setup` service and by `npm run cluster`.
#   TEMPORAL_ADDRESS     the frontend (host:port)
#   NAMESPACE            default "default"
#   NAMESPACE_RETENTION  default 720h
#   TEMPORAL_CLI         the `temporal` CLI (default: on PATH)
set -eu
cli="${TEMPORAL_CLI:-temporal}"
ns="${NAMESPACE:-default}"
here="$(cd "$(dirname "$0")" && pwd)"
retry() { n=0; until "$@"; do n=$((n + 1)); [ "$n" -lt 60 ] || return 1; sleep 1; done; }
retry "$cli" operator cluster health --address "$TEMPORAL_ADDRESS" >/dev/null
if ! "$cli" operator namespace describe --namespace "$ns" --address "$TEMPORAL_ADDRESS" >/dev/null 2>&1; then
  "$cli" operator namespace create --namespace "$ns" --retention "${NAMESPACE_RETENTION:-720h}" --address "$TEMPORAL_ADDRESS"
fi
# A namespace just created takes a moment to reach every service; `list` answers once it has.
retry "$cli" operator search-attribute list --namespace "$ns" --address "$TEMPORAL_ADDRESS" >/dev/null
existing="$("$cli" operator search-attribute list --namespace "$ns" --address "$TEMPORAL_ADDRESS")"
grep -v '^[[:space:]]*\(#\|$\)' "$here/search-attributes.txt" | while read -r name; do
  if printf '%s\n' "$existing" | grep -qw "$name"; then continue; fi
  retry "$cli" operator search-attribute create --namespace "$ns" --address "$TEMPORAL_ADDRESS" --name "$name" --type Keyword
done
"$cli" operator search-attribute list --namespace "$ns" --address "$TEMPORAL_ADDRESS"
