#!/usr/bin/env bash
# Create the benchmark environment .venv-bench (gitignored) for benchmarks/imputation.py,
# including the PyPOTS peers. Never used by CI; PyPOTS is not a dependency of gpvae.
#
#   bash benchmarks/setup_bench_env.sh            # creates ./.venv-bench
#   BENCH_VENV=/path/to/venv bash benchmarks/setup_bench_env.sh
#
# Then, for example:
#   OMP_NUM_THREADS=1 .venv-bench/bin/python benchmarks/imputation.py \
#       --dataset physionet2012 --method saits --seed 0
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${BENCH_VENV:-$root/.venv-bench}"
python="${PYTHON:-python3}"

"$python" -m venv "$venv"
"$venv/bin/pip" install --upgrade pip
# torch first and pinned, so that neither gpvae nor pypots pulls another version.
"$venv/bin/pip" install "torch==2.13.0"
"$venv/bin/pip" install -e "$root"
"$venv/bin/pip" install "pypots==1.5" "scikit-learn>=1.3"
"$venv/bin/python" - <<'PY'
import gpvae, pypots, sklearn, torch
print(f"gpvae {gpvae.__version__}, pypots {pypots.__version__}, "
      f"scikit-learn {sklearn.__version__}, torch {torch.__version__}")
PY
echo "benchmark environment ready: $venv"
