#!/usr/bin/env bash
# Create the benchmark environment .venv-bench (gitignored) with the peers the benchmarks
# compare against: PyPOTS 1.5 (GPVAE, SAITS, BRITS), statsforecast (AutoETS, AutoARIMA,
# seasonal naive), TSB-AD (VUS-PR and the anomaly metrics), PyKrige and scikit-learn.
# Never used by CI; none of these is a dependency of gpvae.
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
# TSB-AD keeps NumPy below 2, which pyarrow 18 and newer refuse.
"$venv/bin/pip" install "pypots==1.5" "scikit-learn>=1.3" statsforecast tsb-ad pykrige "pyarrow<18"
"$venv/bin/python" - <<'PY'
import gpvae, pypots, pykrige, sklearn, statsforecast, torch, TSB_AD
print(f"gpvae {gpvae.__version__}, pypots {pypots.__version__}, "
      f"statsforecast {statsforecast.__version__}, pykrige {pykrige.__version__}, "
      f"scikit-learn {sklearn.__version__}, torch {torch.__version__}")
PY
echo "benchmark environment ready: $venv"
