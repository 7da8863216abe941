#!/usr/bin/env bash
# Creates (or updates) the shared Python venv at <repo>/.venv from
# tests/python/requirements.txt. Idempotent: rerunning it only installs what
# changed. Needs python3 with the venv module (Debian: apt-get install python3-venv).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${VENV:-$root/.venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    if ! "$python" -m venv "$venv"; then
        echo "error: '$python -m venv' failed; on Debian run: apt-get install -y python3-venv" >&2
        exit 1
    fi
fi
"$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r "$here/requirements.txt"
"$venv/bin/python" -c 'import cv2, numpy; print("venv ready:", "'"$venv"'", "opencv", cv2.__version__, "numpy", numpy.__version__)'
