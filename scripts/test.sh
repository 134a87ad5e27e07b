#!/usr/bin/env bash
# Set up .venv if needed, then run the default (fast) test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh test
venv="${GPVAE_VENV:-.venv}"
py="$venv/bin/python"
if [ "$#" -eq 0 ]; then
    set -- -m "not slow"
fi
# numba compiles gpvae's loops on first use and caches them beside the package. Compile them
# once here, the two parts side by side, so that the test processes below load them from the
# cache instead of each compiling them (a few seconds when the cache is already there).
"$py" -m gpvae.gp.warm default --quiet &
warm_default=$!
"$py" -m gpvae.gp.warm float32-kernel --quiet
wait "$warm_default"
# One test process per core (GPVAE_TEST_WORKERS to change it; each runs torch on one thread,
# see tests/conftest.py); a test file runs in one process, so its module fixtures are built once.
# pytest exits 5 when it collected no test: that is a failure here, as is any non-zero code.
"$py" -m pytest -n "${GPVAE_TEST_WORKERS:-2}" --dist loadfile "$@"
