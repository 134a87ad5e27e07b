"""Smoke test of benchmarks/hmnist.py: its metrics on hand-made cases, and a tiny run."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "hmnist.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    """The benchmark script imported as a module (it is not part of the package)."""
    if str(SCRIPT.parent) not in sys.path:  # the script imports benchmarks/_protocol.py
        sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("hmnist_bench", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["hmnist_bench"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def mnist_dir() -> Path:
    path = Path(os.environ.get("GPVAE_DATA", ROOT.parent / "shared" / "data"))
    if not (path / "mnist").is_dir():
        pytest.skip(f"MNIST not found under {path} (set GPVAE_DATA)")
    return path


def _split(bench: ModuleType, X: np.ndarray, observed: np.ndarray) -> object:
    n, T, _ = X.shape
    return bench.HMNISTSplit(
        X=X.astype(np.float32),
        observed=observed,
        X_missing=np.where(observed, X, np.nan).astype(np.float32),
        labels=np.zeros(n, dtype=np.int64),
        times=np.broadcast_to(np.arange(T, dtype=np.float32), (n, T)).copy(),
        angles=np.zeros((n, T)),
        index=np.arange(n),
    )


def test_metrics_by_hand(bench: ModuleType) -> None:
    X = np.array([[[1.0, 0.0, 1.0, 0.0]]])  # (1, 1, 4)
    observed = np.array([[[True, False, False, True]]])
    split = _split(bench, X, observed)
    p = np.array([[[0.5, 0.2, 0.9, 0.5]]])
    nll, mse = bench.imputation_metrics(split, np.log(p), np.log1p(-p))
    # missing pixels: (x=0, p=0.2) and (x=1, p=0.9)
    assert nll == pytest.approx(-(math.log(0.8) + math.log(0.9)) / 2)
    assert mse == pytest.approx((0.2**2 + 0.1**2) / 2)
    nll_hard, _ = bench.imputation_metrics(split, np.log(p), None)
    assert nll_hard is None


def test_forward_fill_and_mean(bench: ModuleType) -> None:
    X = np.array([[[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]])  # (1, T=3, D=2)
    observed = np.array([[[True, False], [False, False], [False, True]]])
    split = _split(bench, X, observed)
    mean = bench.impute_mean(split, split)
    # pixel 0: 1 white of 1 observed -> (1 + 1) / (1 + 2); pixel 1: 1 of 1 likewise
    np.testing.assert_allclose(mean[0, 0], [2 / 3, 2 / 3])
    forward = bench.impute_forward(split, split)
    np.testing.assert_allclose(forward[0, :, 0], [1.0, 1.0, 1.0])  # carried forward
    np.testing.assert_allclose(forward[0, :, 1], [2 / 3, 2 / 3, 1.0])  # mean until seen


def test_auroc_perfect_and_chance(bench: ModuleType) -> None:
    labels = np.array([0, 1, 2, 0, 1, 2])
    perfect = np.eye(3)[labels]
    assert bench.auroc_ovr_macro(labels, perfect, np.arange(3)) == pytest.approx(1.0)
    flat = np.full((6, 3), 1 / 3)
    assert bench.auroc_ovr_macro(labels, flat, np.arange(3)) == pytest.approx(0.5)


@pytest.mark.slow  # about 36 s: six methods on the smoke data
def test_smoke_run_writes_records_and_grid(
    bench: ModuleType, mnist_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "hmnist.json"
    grid = tmp_path / "grid.png"
    methods = ["complete", "mean", "forward", "plain_vae", "gpvae_banded", "gpvae_structured"]
    argv = ["--smoke", "--data-dir", str(mnist_dir), "--out", str(out), "--grid", str(grid)]
    records = bench.main([*argv, "--method", *methods])
    assert [r["method"] for r in records] == methods
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(records))
    for rec in saved:
        keys = {"method", "seed", "nll", "mse", "auroc", "wall_s", "epochs", "settings"}
        assert keys <= set(rec)
        assert rec["seed"] == 0
        assert rec["settings"]["smoke"] is True
        assert 0 <= rec["mse"] <= 1
        assert 0 <= rec["auroc"] <= 1
        if rec["method"] == "complete":
            assert rec["nll"] is None
            assert rec["mse"] == 0
        fortuin = rec["fortuin"]
        assert 0 <= fortuin["mse"] <= 1
        assert 0 <= fortuin["auroc"] <= 1
        if rec["method"] in ("complete", "forward"):
            assert rec["nll"] is None
        else:
            assert math.isfinite(rec["nll"])
            assert rec["nll"] > 0
        if rec["method"] in ("plain_vae", "gpvae_banded", "gpvae_structured"):
            assert rec["epochs"] == 1
    assert grid.is_file()
    assert 0 < grid.stat().st_size < 300_000
    # resumable: a second call skips what is already recorded and appends nothing
    assert bench.main([*argv, "--method", "mean"]) == []
    assert len(json.loads(out.read_text())) == len(methods)
    assert "pypots" not in sys.modules


def _record(bench: ModuleType, method: str, seed: int, mse: float, **settings: object) -> dict:
    st = {**bench.asdict(bench.Settings()), **settings}
    return {
        "method": method,
        "seed": seed,
        "nll": 0.3,
        "mse": mse,
        "auroc": 0.9,
        "wall_s": 1.0,
        "epochs": 3,
        "best_epoch": 2,
        "kernel": "matern32",
        "settings": st,
    }


def test_docs_split_headline_from_exploration(bench: ModuleType, tmp_path: Path) -> None:
    final = dict(bench.HEADLINE, num_train=4000)
    records = [
        _record(bench, "mean", 0, 0.161),
        _record(bench, "gpvae_structured", 0, 0.101, **final),
        _record(bench, "gpvae_structured", 1, 0.097, **final),
        _record(bench, "plain_vae", 0, 0.555, epochs=10, lr=1e-3),  # a smaller budget
    ]
    doc = tmp_path / "bench.md"
    doc.write_text("# Benchmarks\n\nintro\n")
    bench.write_docs(records, doc)
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nintro\n")
    head, explored = text.split("Exploration at smaller budgets", 1)
    assert "| gpvae_structured (matern32) | 0,1 | 0.300 +- 0.000 | 0.099 +- 0.003 |" in head
    assert head.index("| mean |") < head.index("| gpvae_structured")
    assert "0.555" in explored
    assert "0.555" not in head
    # rewriting replaces the region instead of appending a second copy
    bench.write_docs(records[:2], doc)
    assert doc.read_text().count(bench.BEGIN) == 1
    assert "0.555" not in doc.read_text()


def test_results_keep_every_record(bench: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    for i in range(3):
        bench.HMNISTResults(out).add({"method": "mean", "seed": i, "settings": {}})
    assert [r["seed"] for r in json.loads(out.read_text())] == [0, 1, 2]
    # the same (method, seed, settings) replaces its record
    bench.HMNISTResults(out).add({"method": "mean", "seed": 1, "settings": {}, "mse": 0.5})
    assert [r["seed"] for r in bench.read_records(out)] == [0, 2, 1]
    assert (out.stat().st_mode & 0o777) == 0o644


def test_rounded_mse_is_the_error_rate(bench: ModuleType) -> None:
    X = np.array([[[1.0, 0.0, 1.0, 0.0, 1.0]]] * 20)  # (20, 1, 5)
    observed = np.zeros(X.shape, dtype=bool)
    observed[:, :, 0] = True
    split = _split(bench, X, observed)
    split.labels[:] = np.arange(20) % 2  # two classes in each half
    p = np.array([[[0.9, 0.4, 0.6, 0.7, 0.2]]] * 20)  # missing: right, right, wrong, wrong
    out = bench.fortuin_metrics(split, p, 0.25)
    assert out["mse"] == pytest.approx(0.5)
    assert out["nll"] == 0.25


def test_rescore_adds_the_metrics_from_the_checkpoint(
    bench: ModuleType, mnist_dir: Path, tmp_path: Path
) -> None:
    settings = bench.replace(
        bench.Settings(),
        epochs=1,
        num_train=32,
        num_val=16,
        num_test=32,
        eval_samples=2,
        smoke=True,
    )
    data = bench.load_data(settings, mnist_dir)
    rec = bench.run_method("gpvae_structured", 0, settings, data, ckpt_dir=tmp_path)
    out = tmp_path / "r.json"
    without = {k: v for k, v in rec.items() if k != "fortuin"}
    bench.HMNISTResults(out).add(without)
    args = [["gpvae_structured"], [0], [tmp_path]]
    assert bench.rescore(out, data, settings, *args) == 1
    (saved,) = json.loads(out.read_text())
    assert saved["fortuin"] == pytest.approx(rec["fortuin"])
    assert bench.rescore(out, data, settings, *args) == 0  # done once only
    # a record whose NLL the checkpoint does not reproduce is refused
    out.write_text(json.dumps([{**without, "nll": without["nll"] + 0.1}]))
    with pytest.raises(RuntimeError, match="differs"):
        bench.rescore(out, data, settings, *args)
