#!/usr/bin/env bash
# Set up .venv if needed, then run the end-to-end demo on the embedded real data.
# Extra arguments go to `gpvae demo`, e.g. `bash scripts/demo.sh --out /tmp/demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh none
venv="${GPVAE_VENV:-.venv}"
"$venv/bin/gpvae" demo "$@"
