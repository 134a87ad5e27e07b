"""``benchmarks/downstream_paired.py`` and the protocol's out-of-fold predictions it reads
(synthetic stays; no data needed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest


def _stays(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(np.int64)
    X = rng.normal(size=(n, 6, 4))
    X[:, :, 0] += 0.8 * labels[:, None]  # one informative feature
    return X, labels


def test_out_of_fold_predictions_give_the_protocols_fold_aurocs(
    bench_script: Callable[[str], ModuleType],
) -> None:
    from sklearn.metrics import roc_auc_score

    protocol = bench_script("_protocol")
    X, labels = _stays()
    prob, fold = protocol.downstream_predictions(X, labels)
    assert prob.shape == (120,)
    assert set(fold) == {0, 1, 2, 3, 4}
    assert ((prob > 0) & (prob < 1)).all()
    folds = [roc_auc_score(labels[fold == k], prob[fold == k]) for k in range(5)]
    ref = protocol.downstream_auroc(X, labels)["auroc_folds"]
    np.testing.assert_allclose(folds, ref, rtol=0, atol=1e-12)
    X[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="imputed: expected complete series"):
        protocol.downstream_predictions(X, labels)


def test_the_paired_bootstrap_resamples_the_same_stays_for_both(
    bench_script: Callable[[str], ModuleType],
) -> None:
    mod = bench_script("downstream_paired")
    rng = np.random.default_rng(1)
    labels = (rng.random(200) < 0.3).astype(np.int64)
    noise = rng.random(200)
    same = mod.paired_bootstrap(labels, noise, noise, draws=50)
    np.testing.assert_array_equal(same, np.zeros(50))  # paired: identical scores, no spread
    good = labels + 0.5 * noise  # separates the classes perfectly
    diff = mod.paired_bootstrap(labels, good, noise, draws=200)
    assert (diff > 0).all()
    np.testing.assert_array_equal(diff, mod.paired_bootstrap(labels, good, noise, draws=200))


def test_the_record_compares_both_methods_on_the_same_folds(
    bench_script: Callable[[str], ModuleType],
) -> None:
    mod = bench_script("downstream_paired")
    X, labels = _stays(160, seed=2)
    blurred = X + np.random.default_rng(3).normal(scale=3.0, size=X.shape)
    rec = mod.compare(labels, X, blurred, draws=300)
    assert len(rec["method_folds"]) == len(rec["linear_folds"]) == 5
    assert rec["pooled_diff"] == pytest.approx(rec["method_pooled"] - rec["linear_pooled"])
    lo, hi = rec["boot_ci95"]
    assert lo < rec["pooled_diff"] < hi
    assert rec["method_pooled"] > rec["linear_pooled"]  # the blurred copy carries less signal
    text = mod.table(
        [{**rec, "method": "gpvae", "seed": 0, "epochs": 83, "best_epoch": 78, "test_mae": 0.2}]
    )
    assert text.splitlines()[2].startswith("| 0 | 83 (78) | 0.2000 | ")
    assert f"{rec['pooled_diff']:+.4f} [{lo:+.4f}, {hi:+.4f}]" in text


def test_docs_region_is_its_documented_commands_output(
    bench_script: Callable[[str], ModuleType],
    rerun_docs_command: Callable[[ModuleType, str, Path], tuple[str, str]],
    tmp_path: Path,
) -> None:
    """docs/benchmarks.md's region is what the command printed beside it writes from the
    committed records."""
    docs, rerun = rerun_docs_command(
        bench_script("downstream_paired"), "downstream-paired", tmp_path
    )
    assert "<!-- downstream-paired -->\n| seed | epochs run (best) |" in docs
    assert rerun == docs
