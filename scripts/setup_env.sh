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
# "torch==2.13.0" is the CPU build here because this machine's pip configuration points at
# local CPU wheels; from PyPI on Linux it is the CUDA build. Elsewhere, install the CPU build
# into $venv first (pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu):
# the line below then finds it installed (2.13.0+cpu satisfies ==2.13.0) and keeps it.
"$venv/bin/python" -m pip install --quiet "torch==2.13.0"
if [ "$extras" = "none" ]; then
    "$venv/bin/python" -m pip install --quiet -e .
else
    "$venv/bin/python" -m pip install --quiet -e ".[${extras}]"
fi
