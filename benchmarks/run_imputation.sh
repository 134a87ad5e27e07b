#!/usr/bin/env bash
# The imputation campaign of docs/benchmarks.md: every (seed, data set, method), one process
# per run, each through /work/bin/heavy when it exists (a shared machine's job slots).
# Records are appended to benchmarks/results/imputation_fair.json as runs finish; finished
# ones are skipped, so the script resumes an interrupted campaign. Then the tables.
# PhysioNet 2012 runs on its first PHYSIONET_SUBSET stays (default 300, every method alike;
# recorded as "subset"); PHYSIONET_SUBSET= (empty) runs all 4,000 stays.
#   PY=.venv-bench/bin/python bash benchmarks/run_imputation.sh
set -eu
cd "$(dirname "$0")/.."
PY=${PY:-.venv-bench/bin/python}
PHYSIONET_SUBSET=${PHYSIONET_SUBSET-300}
RUN=""
[ -x /work/bin/heavy ] && RUN=/work/bin/heavy
for seed in 0 1 2; do
  for ds in physionet2012 beijing_air; do
    sub=()
    [ "$ds" = physionet2012 ] && [ -n "$PHYSIONET_SUBSET" ] && sub=(--subset "$PHYSIONET_SUBSET")
    for m in mean locf linear gpvae pypots_gpvae saits brits; do
      OMP_NUM_THREADS=1 $RUN "$PY" benchmarks/imputation.py \
        --dataset "$ds" "${sub[@]}" --method "$m" --seed "$seed" --epochs 100 --patience 5
    done
  done
done
"$PY" benchmarks/make_tables.py
