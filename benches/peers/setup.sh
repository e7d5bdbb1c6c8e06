#!/usr/bin/env bash
# Creates target/peers/venv with the pinned peers of benches/peers/requirements.txt and
# prints the venv's python. Does nothing when the venv already holds these requirements
# (a stamp file keeps their hash).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
REQ="$HERE/requirements.txt"
VENV="$ROOT/target/peers/venv"
PY="$VENV/bin/python"
STAMP="$VENV/.requirements.sha256"

PYTHON="${PEERS_PYTHON:-}"
if [ -z "$PYTHON" ]; then
    for cand in python3.11 python3; do
        if command -v "$cand" >/dev/null 2>&1; then PYTHON="$(command -v "$cand")"; break; fi
    done
fi
[ -n "$PYTHON" ] || { echo "setup.sh: no python3 found (set PEERS_PYTHON)" >&2; exit 1; }

want="$( (sha256sum "$REQ"; "$PYTHON" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)"

if [ -x "$PY" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    echo "$PY"
    exit 0
fi

echo "setup.sh: creating $VENV" >&2
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
"$PYTHON" -m venv "$VENV"
"$PY" -m pip install --quiet --disable-pip-version-check --no-input -r "$REQ" >&2
# Check that both import (offline, as driver.py runs them), which also warms the bytecode caches.
LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_OFFLINE_MODE=true "$PY" -c 'import openai, litellm' >&2
echo "$want" > "$STAMP"
echo "$PY"
