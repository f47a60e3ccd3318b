#!/usr/bin/env bash
# Builds the pinned Temporal server (go.temporal.io/server) and its temporal-sql-tool with Go from
# the module proxy into .tools/temporal-server/<version>/bin/{temporal-server,temporal-sql-tool}.
# The module cache and GOPATH stay project-local under .tools/temporal-server/go so nothing outside
# the checkout is written. Idempotent: skips when both pinned binaries exist.
# v1.30.9 is pinned because the 1.31+ lines need a module the proxy refuses; docker-compose.yml
# runs the same version (test/unit/docker-compose.test.ts checks it against deploy/temporal/VERSION).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="${TEMPORAL_SERVER_VERSION:-$(tr -d '[:space:]' < "$root/deploy/temporal/VERSION")}"
base="$root/.tools/temporal-server"
dest="$base/$VERSION/bin"
if [[ -x "$dest/temporal-server" && -x "$dest/temporal-sql-tool" && -d "$base/$VERSION/schema/postgresql" ]]; then
  echo "temporal server $VERSION already at $dest"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  for candidate in /usr/local/go/bin/go /usr/lib/go/bin/go; do
    if [[ -x "$candidate" ]]; then PATH="$(dirname "$candidate"):$PATH"; break; fi
  done
fi
command -v go >/dev/null 2>&1 || { echo "install-temporal-server: Go is required (https://go.dev/dl/)" >&2; exit 1; }
export GOPATH="$base/go"
export GOMODCACHE="$base/go/pkg/mod"
export GOCACHE="$base/go/cache"
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
export GOFLAGS="${GOFLAGS:-} -modcacherw"
tmp="$base/$VERSION/bin.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"
echo "building go.temporal.io/server@v$VERSION (a few minutes on first run)"
GOBIN="$tmp" go install "go.temporal.io/server/cmd/server@v$VERSION"
GOBIN="$tmp" go install "go.temporal.io/server/cmd/tools/sql@v$VERSION"
mv "$tmp/server" "$tmp/temporal-server"
mv "$tmp/sql" "$tmp/temporal-sql-tool"
# The PostgreSQL schemas ship in the module; copy them next to the binaries so the cluster does
# not depend on the module cache layout.
rm -rf "$base/$VERSION/schema"
mkdir -p "$base/$VERSION/schema"
cp -R "$GOMODCACHE/go.temporal.io/server@v$VERSION/schema/postgresql" "$base/$VERSION/schema/"
chmod -R u+w "$base/$VERSION/schema"
rm -rf "$dest"
mv "$tmp" "$dest"
# The build and module caches (~3 GB) are not needed once the binaries and schemas are in place.
go clean -modcache || true
rm -rf "$GOCACHE"
"$dest/temporal-server" --version || true
