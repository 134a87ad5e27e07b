"""``benchmarks/downstream_gaps.py``: distances to the nearest observation, the shrink towards
the training mean, and the measures of one imputation (synthetic stays, no data needed)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest


def test_distance_and_shrink(bench_script: Callable[[str], ModuleType]) -> None:
    mod = bench_script("downstream_gaps")
    obs = np.zeros((1, 6, 2), dtype=bool)
    obs[0, [1, 4], 0] = True  # feature 1 never observed
    r = mod.distance_to_observed(obs)
    assert r[0, :, 0].tolist() == [1, 0, 1, 1, 0, 1]
    assert (r[0, :, 1] >= mod.FAR).all()
    imp = np.full((1, 6, 2), 2.0)
    out = mod.shrink(imp, obs, tau=1.0)
    np.testing.assert_array_equal(out[obs], imp[obs])
    level = np.array([1e-16, -3e-16])
    np.testing.assert_array_equal(mod.shrink(np.where(obs, imp, level), obs, 1.0, level)[~obs],
                                  np.broadcast_to(level, imp.shape)[~obs])  # fmt: skip
    np.testing.assert_allclose(out[0, [0, 2, 3, 5], 0], 2.0)  # distance 1: weight 1
    np.testing.assert_array_equal(out[0, :, 1], 0.0)
    obs[0, 1, 0] = False  # feature 0 observed at step 4 only: step 0 is 4 steps away
    far = mod.shrink(imp, obs, tau=1.0)
    assert far[0, 0, 0] == pytest.approx(2.0 * np.exp(-3.0))


def test_analyse_scores_an_imputation_against_the_interpolation(
    bench_script: Callable[[str], ModuleType],
) -> None:
    mod = bench_script("downstream_gaps")
    rng = np.random.default_rng(0)
    n, T, D = 60, 12, 3
    obs = rng.random((n, T, D)) < 0.4
    obs[:, :, 2] &= np.arange(n)[:, None] % 2 == 0  # feature 2 never observed in odd stays
    labels = (np.arange(n) % 4 == 0).astype(int)
    interp = rng.normal(size=(n, T, D)) + labels[:, None, None]
    pick = np.arange(40)
    level = np.zeros(D)
    res = mod.analyse(interp, obs, labels, pick, interp, level, taus=(2.0,), repeats=2)
    assert res["gaps_linear"] == res["selection"]
    assert 0.0 < res["selection"] <= 1.0
    assert set(res["shrunk"]) == {"2.0"}
    for band in res["bands"]:
        if band["entries"] > 2:
            assert band["slope"] == pytest.approx(1.0)
            assert band["corr"] == pytest.approx(1.0)
    flat = mod.analyse(np.where(obs, interp, 0.0), obs, labels, pick, interp, level, repeats=2)
    assert all(b["slope"] == pytest.approx(0.0) for b in flat["bands"] if b["entries"] > 2)
    assert flat["shrunk"] == {}


def test_main_writes_results_with_its_command(
    bench_script: Callable[[str], ModuleType], tmp_path: Path, physionet_data: Path
) -> None:
    """On the first 64 stays (skips without the data directory): linear interpolation's own
    gaps follow the interpolation exactly; the output names the command."""
    data = physionet_data
    mod = bench_script("downstream_gaps")
    protocol = bench_script("_protocol")
    from gpvae.app.baselines import impute_linear

    prep = protocol.prepare("physionet2012", data, 64)
    lin = impute_linear(prep.X, prep.times, train_X=prep.X[np.sort(prep.train)])
    dump = tmp_path / "lin.npz"
    pick = np.sort(np.concatenate([prep.train, prep.val]))
    np.savez(dump, imputed=lin, observed=~np.isnan(prep.X), labels=prep.labels, pick=pick)
    out = tmp_path / "gaps.json"
    argv = f"lin={dump} --subset 64 --data-dir {data} --repeats 2 --tau 3 --out {out}"
    mod.main(argv.split())
    doc = json.loads(out.read_text())
    assert doc["command"] == f"python benchmarks/downstream_gaps.py {argv}"
    assert doc["n_selection"] == len(pick)
    (rec,) = doc["records"]
    assert rec["name"] == "lin"
    assert rec["gaps_linear"] == rec["selection"]
    assert rec["never_mean"] == rec["selection"]  # linear leaves them at the same means
    assert all(b["slope"] == pytest.approx(1.0) for b in rec["bands"] if b["entries"] > 2)


def test_a_file_of_another_subset_is_refused_naming_both(
    bench_script: Callable[[str], ModuleType],
    tmp_path: Path,
    physionet_data: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A file that downstream_outer.py wrote with another --subset: a usage error naming
    this --subset and the file's (its ``subset``, else its number of stays), not a
    ValueError traceback."""
    mod = bench_script("downstream_gaps")
    protocol = bench_script("_protocol")
    prep = protocol.prepare("physionet2012", physionet_data, 40)
    pick = np.sort(np.concatenate([prep.train, prep.val]))
    saved = {"imputed": np.nan_to_num(prep.X), "observed": ~np.isnan(prep.X),
             "labels": prep.labels, "pick": pick}  # fmt: skip
    old, new = tmp_path / "old.npz", tmp_path / "new.npz"
    np.savez(old, **saved)
    np.savez(new, **saved, subset=40)
    for dump in (old, new):
        argv = [f"x={dump}", "--subset", "64", "--data-dir", str(physionet_data)]
        with pytest.raises(SystemExit):
            mod.main([*argv, "--repeats", "2"])
        err = capsys.readouterr().err
        assert f"x={dump}: expected the imputed stays of the first 64 (--subset 64)" in err
        assert "found a file of the first 40 stays (downstream_outer.py --subset 40)" in err
