#!/usr/bin/env bash
# Create (once) the project's virtual environment in .venv and install gpvae into it.
# Usage: bash scripts/setup_env.sh [extras]   (extras default: test; "none" for the core only)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test}"
venv="${GPVAE_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
# torch first and pinned: a bare "torch" requirement can pull a multi-GB CUDA build.
"$venv/bin/python" -m pip install --quiet "torch==2.13.0"
if [ "$extras" = "none" ]; then
    "$venv/bin/python" -m pip install --quiet -e .
else
    "$venv/bin/python" -m pip install --quiet -e ".[${extras}]"
fi
