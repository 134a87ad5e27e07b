#!/usr/bin/env bash
# Set up .venv if needed, then run the default (fast) test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh test
venv="${GPVAE_VENV:-.venv}"
if [ "$#" -eq 0 ]; then
    set -- -m "not slow"
fi
# pytest exits 5 when it collected no test: that is a failure here, as is any non-zero code.
"$venv/bin/python" -m pytest "$@"
