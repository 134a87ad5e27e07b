"""``benchmarks/downstream_outer.py``: the PhysioNet-300 downstream AUROC on the stays outside
the subset and on the subset's training and validation stays (small run: 64 stays, 120
outer stays, linear interpolation; skips without the data directory)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest


@pytest.mark.slow  # about 60 s: reads and prepares 184 PhysioNet stays twice
def test_outer_record_scores_stays_outside_the_subset(
    bench_script: Callable[[str], ModuleType], tmp_path: Path, physionet_data: Path
) -> None:
    data = physionet_data
    mod = bench_script("downstream_outer")
    protocol = bench_script("_protocol")
    X, times, labels, prep = mod.outer_stays(data, 64, limit=120)
    assert X.shape == (120, 48, 37)
    assert times.shape == (120, 48)
    assert labels.shape == (120,)
    full = protocol.prepare("physionet2012", data, 184)  # stays 64..183 = the outer ones
    raw = full.X[64:] * full.std + full.mean
    np.testing.assert_allclose(X * prep.std + prep.mean, raw, atol=1e-9, equal_nan=True)
    results = protocol.ResultsFile(tmp_path / "outer.json")
    rec = mod.run("linear", 0, results, data_dir=data, subset=64, outer_limit=120, repeats=2)
    assert rec["n_outer"] == 120
    assert rec["n_selection"] == len(prep.train) + len(prep.val)
    assert 0.0 < rec["auroc_outer"] < 1.0
    assert 0.0 < rec["auroc_selection"] < 1.0
    assert len(rec["auroc_outer_folds"]) == 5
    assert results.has("physionet2012", "outer", "linear", 0, 64)
    assert "command" not in rec  # run() records a command only when given one
    dump = tmp_path / "imputed.npz"
    out = tmp_path / "cli.json"
    argv = f"--method linear --subset 64 --data-dir {data} --out {out} --save-imputed {dump}"
    mod.main(argv.split())
    (cli,) = protocol.ResultsFile(out).records
    assert cli["command"] == (
        f"python benchmarks/downstream_outer.py --method linear --subset 64 --data-dir {data} "
        f"--out {out}"
    )
    with np.load(dump) as saved:
        assert saved["imputed"].shape == (64, 48, 37)
        assert not np.isnan(saved["imputed"]).any()
        np.testing.assert_array_equal(saved["observed"], ~np.isnan(prep.X))
        kept = saved["observed"]
        np.testing.assert_array_equal(saved["imputed"][kept], prep.X[kept])
        np.testing.assert_array_equal(saved["labels"], prep.labels)
        np.testing.assert_array_equal(saved["pick"], np.sort([*prep.train, *prep.val]))
        assert (saved["method"].item(), saved["seed"].item(), saved["epochs"].item()) == (
            "linear",
            0,
            0,
        )
    with pytest.raises(ValueError, match=r"^subset"):
        mod.outer_stays(data, 4000)
