#!/usr/bin/env bash
# The official `openai` Python SDK in a project-local venv (.venv-python, git-ignored), for the Python SDK
# streaming test (test/api/python-sdk.test.ts). Idempotent: does nothing when the pinned version is
# already installed. `.ci/run` calls it; nothing else of Sluice needs Python.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VERSION="${OPENAI_PY_VERSION:-3.57.0}"
VENV=.venv-python
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import openai, sys; sys.exit(0 if openai.__version__ == '$VERSION' else 1)" 2>/dev/null; then
  exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "openai==$VERSION"
