"""``benchmarks/anomaly_channel_cv.py``: the candidates' scores from dumps, the check against
the records, the best of K restarts and the cross-validation over series (TSB-AD's metrics
replaced by a stand-in)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def cv(bench_script):  # type: ignore[no-untyped-def]
    return bench_script("anomaly_channel_cv")


def stand_in(score, labels, window):  # type: ignore[no-untyped-def]
    s = np.nan_to_num(np.asarray(score, dtype=np.float64), nan=-1e9)
    return {"vus_pr": float(s[labels == 1].mean() - s[labels == 0].mean()),
            "auc_pr": 0.0, "auc_roc": 0.0}  # fmt: skip


def _dump(rng: np.random.Generator, labels: np.ndarray) -> dict[str, np.ndarray]:
    T_tr, T_te, D = 300, len(labels), 3
    parts: dict[str, np.ndarray] = {"labels": labels}
    for key in ("k5", "k5b8", "c8", "prior"):
        parts[f"{key}_train"] = rng.gamma(2.0, 1.0, (T_tr, D)).astype(np.float32)
        test = rng.gamma(2.0, 1.0, (T_te, D))
        test[labels == 1] += {"k5": 1.0, "k5b8": 2.0, "c8": 0.5, "prior": 3.0}[key]
        parts[f"{key}_test"] = test.astype(np.float32)
    return parts


def test_candidates_combine_held_out_and_prior_entries(cv) -> None:  # type: ignore[no-untyped-def]
    """A candidate with prior weight w scores held + w r prior with the chosen pipeline; the
    prior alone ignores the held-out entries; weight 0 ignores the prior's."""
    from gpvae.estimator.anomaly import combine_prior, spread_ratio

    labels = np.zeros(400, dtype=np.uint8)
    labels[200:230] = 1
    d = _dump(np.random.default_rng(0), labels)
    assert next(iter(cv.CANDIDATES)) == "k5+0.5P"  # the development-chosen variant, first
    assert cv.CANDIDATES["k5+0.5P"] == ("k5", cv.A.variant(cv.A.CHOSEN)[4])
    ratio = spread_ratio([d["k5b8_train"]], [d["prior_train"]])
    mixed = {
        **d,
        "k5_train": combine_prior([d["k5b8_train"]], [d["prior_train"]], 2.0, ratio)[0],
        "k5_test": combine_prior([d["k5b8_test"]], [d["prior_test"]], 2.0, ratio)[0],
    }
    np.testing.assert_allclose(
        cv.candidate_score(d, "b8+2P", 0.01, 16), cv.candidate_score(mixed, "k5", 0.01, 16)
    )
    alone = {**d, "k5_train": d["prior_train"], "k5_test": d["prior_test"]}
    np.testing.assert_allclose(
        cv.candidate_score(d, "P", 0.01, 16), cv.candidate_score(alone, "k5", 0.01, 16)
    )
    other_prior = {**d, "prior_test": d["prior_test"] + 5.0}
    np.testing.assert_allclose(
        cv.candidate_score(d, "k5", 0.01, 16), cv.candidate_score(other_prior, "k5", 0.01, 16)
    )
    assert not np.allclose(
        cv.candidate_score(d, "k5+0.5P", 0.01, 16),
        cv.candidate_score(other_prior, "k5+0.5P", 0.01, 16),
    )


def test_cross_validate_chooses_on_one_half_and_scores_the_other(cv) -> None:  # type: ignore[no-untyped-def]
    # 4 series, 2 candidates: candidate 1 wins on series 0-1, candidate 0 on 2-3
    v = np.array([[0.1, 0.9], [0.2, 0.8], [0.7, 0.3], [0.6, 0.2]])
    oof, chosen = cv.cross_validate(v, [np.array([0, 1, 2, 3]), np.array([0, 2, 1, 3])])
    # split 1: half {0, 1} picks 1, scored on {2, 3}: 0.5; half {2, 3} picks 0 on {0, 1}: 0.3
    assert chosen[0] == (1, 0)
    assert oof[0] == pytest.approx((0.3 + 0.2 + 0.1 + 0.2) / 4)
    # split 2: {0, 2}: means (0.4, 0.6) -> 1, on {1, 3}: 0.8 + 0.2; {1, 3}: (0.4, 0.5) -> 1
    assert chosen[1] == (1, 1)
    assert oof[1] == pytest.approx((0.8 + 0.2 + 0.9 + 0.3) / 4)
    # equal means: the first candidate
    _, chosen = cv.cross_validate(np.ones((4, 3)), [np.arange(4)])
    assert chosen == [(0, 0)]


def _records(cv, tmp_path: Path, labels: np.ndarray) -> list[dict]:  # type: ignore[no-untyped-def]
    records = []
    for model in cv.MODELS:
        for series in ("X-1", "X-2", "X-3", "X-4"):
            for seed in range(3):
                rng = np.random.default_rng(hash((model, series, seed)) % 2**32)
                d = _dump(rng, labels)
                folder = tmp_path / f"d{seed}"
                folder.mkdir(exist_ok=True)
                np.savez_compressed(folder / f"SMAP_{series}_{model}.npz", **d)
                own = stand_in(cv.candidate_score(d, "k5+0.5P", 0.01, 16), labels, 10)
                records.append({
                    "dataset": "SMAP", "series": series, "method": f"{model}/{cv.A.CHOSEN}",
                    "tag": f"t{seed}", "config": {"seed": seed, "epochs": 100, "patience": 5},
                    "sliding_window": 10, "vus_pr": own["vus_pr"],
                    "val_score_best": [0.3, 0.1, 0.2][seed], "epochs_run": 20 + seed,
                    "best_epoch": 15 + seed,
                })  # fmt: skip
    return records


def test_script_evaluates_dumps_and_prints_the_cv_table(cv, tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    labels = np.zeros(400, dtype=np.uint8)
    labels[200:230] = 1
    monkeypatch.setattr(cv.A, "metrics", stand_in)
    records = _records(cv, tmp_path, labels)
    (tmp_path / "rec.json").write_text(json.dumps(records))
    rows = tmp_path / "rows.json"
    argv = ["--dumps", str(tmp_path / "d{seed}"), "--records", str(tmp_path / "rec.json"),
            "--tag-prefix", "t", "--seeds", "0-2", "--out", str(rows)]  # fmt: skip
    assert cv.main(argv) == 0
    out = json.loads(rows.read_text())
    assert len(out) == 2 * 4  # one kept run per series and model
    for r in out:
        assert r["seed"] == 1  # the lowest validation score
        assert r["seeds"] == [0, 1, 2]
        rec = next(x for x in records if x["series"] == r["series"]
                   and x["method"].startswith(r["model"]) and x["config"]["seed"] == 1)  # fmt: skip
        assert r["vus_pr"]["k5+0.5P"] == pytest.approx(rec["vus_pr"], abs=1e-4)
        assert set(r["vus_pr"]) == set(cv.CANDIDATES)
        assert (r["epochs_run"], r["best_epoch"]) == (21, 16)
    assert cv.main(argv) == 0  # resumed: nothing added
    assert len(json.loads(rows.read_text())) == len(out)
    # one VAE run kept at its best epoch 97 of 100 (patience 5) counts as cap-limited
    capped = next(r for r in out if r["model"] == "vae" and r["series"] == "X-2")
    capped["best_epoch"] = 97
    rows.write_text(json.dumps(out))
    capsys.readouterr()
    assert cv.main(["--table", str(rows), "--splits", "20"]) == 0
    text = capsys.readouterr().out
    head = [line for line in text.splitlines() if "%" in line]
    assert [line.endswith(f"| {n} of 4 |") for line, n in zip(head, (0, 1))] == [True, True]
    cells = cv.restart_matrix(out)
    series, values, _ = cells[("SMAP+MSL", "gpvae")]
    assert series == ["X-1", "X-2", "X-3", "X-4"]
    assert not np.isnan(values).any()
    assert values[:, list(cv.CANDIDATES).index("P")].mean() == pytest.approx(
        np.mean([r["vus_pr"]["P"] for r in out if r["model"] == "gpvae"])
    )
    rng = np.random.default_rng(0)  # the table's splits (--split-seed 0)
    splits = [rng.permutation(4) for _ in range(20)]
    oof, chosen = cv.cross_validate(values, splits)
    counts = np.bincount(np.ravel(chosen), minlength=len(cv.CANDIDATES))
    top = list(cv.CANDIDATES)[int(np.argmax(counts))]
    vae_oof, _ = cv.cross_validate(cells[("SMAP+MSL", "vae")][1], splits)
    gp_row = next(line for line in text.splitlines() if "| gpvae |" in line and "%" in line)
    assert f"| {values[:, 0].mean():.3f} | {oof.mean():.3f} ({oof.std():.3f}) " in gp_row
    assert f"| {top} ({counts.max() / 40:.0%}) | {np.mean(oof - vae_oof):+.4f} " in gp_row
    # a record that is not the dumped fit is refused
    records[1]["vus_pr"] += 0.01  # the run kept (seed 1)
    (tmp_path / "rec.json").write_text(json.dumps(records))
    rows.unlink()
    with pytest.raises(SystemExit, match="not the recorded fit"):
        cv.main(argv)


def test_mean_run_length_and_the_tables_by_thirds(cv) -> None:  # type: ignore[no-untyped-def]
    assert cv.mean_run_length(np.array([0, 1, 1, 0, 1, 1, 1, 1, 0])) == 3.0
    assert np.isnan(cv.mean_run_length(np.zeros(5)))
    rows = []
    for i in range(6):  # series i: anomalies of length 10 * (i + 1); gpvae ahead by 0.1 * i
        for model, value in (("gpvae", 0.5 + 0.1 * i), ("vae", 0.5)):
            vus = dict.fromkeys(cv.CANDIDATES, 0.0) | {"k5+0.5P": value}
            rows.append({"dataset": "SMAP", "series": f"S-{i}", "model": model, "group": 0,
                         "vus_pr": vus})  # fmt: skip
    text = cv.by_thirds(rows, {f"S-{i}": 10.0 * (i + 1) for i in range(6)}, "length")
    assert text.startswith("| data set | third by length | range | series |")
    body = [line for line in text.splitlines() if line.startswith("| SMAP+MSL")]
    assert body == [
        "| SMAP+MSL | lowest | 10-20 | 2 | 0.550 | 0.500 | +0.050 | 1 / 0 |",
        "| SMAP+MSL | middle | 30-40 | 2 | 0.750 | 0.500 | +0.250 | 2 / 0 |",
        "| SMAP+MSL | highest | 50-60 | 2 | 0.950 | 0.500 | +0.450 | 2 / 0 |",
    ]
    # a series without a value (no labelled anomaly) is in a row of its own, not a third
    values = {f"S-{i}": 10.0 * (i + 1) for i in range(5)} | {"S-5": float("nan")}
    body = [line for line in cv.by_thirds(rows, values, "length").splitlines()
            if line.startswith("| SMAP+MSL")]  # fmt: skip
    assert body[2:] == [
        "| SMAP+MSL | highest | 40-50 | 2 | 0.850 | 0.500 | +0.350 | 2 / 0 |",
        "| SMAP+MSL | no value | - | 1 | 1.000 | 0.500 | +0.500 | 1 / 0 |",
    ]
    # the kept run's lengthscales: the record of the row's own tag, median over channels
    records = [
        {"dataset": "SMAP", "series": "S-0", "method": f"gpvae/{cv.A.CHOSEN}", "tag": "t1",
         "kernel_fitted": {"0.lengthscale": [1.0, 4.0, 9.0]}},
        {"dataset": "SMAP", "series": "S-0", "method": f"gpvae/{cv.A.CHOSEN}", "tag": "t0",
         "kernel_fitted": {"0.lengthscale": [50.0, 50.0, 50.0]}},
        {"dataset": "SMAP", "series": "S-0", "method": f"vae/{cv.A.CHOSEN}", "tag": "t1",
         "kernel_fitted": {"0.variance": [1.0]}},
    ]  # fmt: skip
    kept = [{"dataset": "SMAP", "series": "S-0", "model": "gpvae", "tag": "t1"},
            {"dataset": "SMAP", "series": "S-0", "model": "vae", "tag": "t0"}]  # fmt: skip
    assert cv.kept_lengthscales(kept, records) == {"S-0": 4.0}
    # with two restart groups, the mean of the two kept runs' medians (not the last one)
    kept.append({"dataset": "SMAP", "series": "S-0", "model": "gpvae", "tag": "t0"})
    assert cv.kept_lengthscales(kept, records) == {"S-0": 27.0}


@pytest.mark.parametrize(("session", "first_line"), [
    ("s30", "| SMAP+MSL | 79 | gpvae |"),
    ("s31", "| SMAP+MSL | 81 | gpvae |"),
])  # fmt: skip
def test_docs_table_is_the_scripts_output(cv, capsys, session, first_line) -> None:  # type: ignore[no-untyped-def]
    """docs/benchmarks.md's session tables are what ``--table`` prints from the records."""
    root = Path(__file__).resolve().parents[2]
    files = [str(root / f"benchmarks/results/anomaly_{session}_cv_{m}.json") for m in cv.MODELS]
    assert cv.main(["--table", *files]) == 0
    table = capsys.readouterr().out
    assert first_line in table
    assert table in (root / "docs" / "benchmarks.md").read_text()


def test_docs_table_by_length_is_the_scripts_output(cv, capsys, data_dir) -> None:  # type: ignore[no-untyped-def]
    root = Path(__file__).resolve().parents[2]
    files = [str(root / f"benchmarks/results/anomaly_s31_cv_{m}.json") for m in cv.MODELS]
    assert cv.main(["--table", *files, "--by-length", str(data_dir)]) == 0
    table = capsys.readouterr().out
    assert "| SMAP+MSL | highest |" in table
    assert table in (root / "docs" / "benchmarks.md").read_text()


def test_docs_table_by_lengthscale_is_the_scripts_output(cv, capsys) -> None:  # type: ignore[no-untyped-def]
    root = Path(__file__).resolve().parents[2]
    files = [str(root / f"benchmarks/results/anomaly_s31_cv_{m}.json") for m in cv.MODELS]
    kernels = str(root / "benchmarks/results/anomaly_s31_kernels.json")
    assert cv.main(["--table", *files, "--by-lengthscale", kernels]) == 0
    table = capsys.readouterr().out
    assert "| SMAP+MSL | highest | 3.15-3.53 | 27 |" in table
    assert table in (root / "docs" / "benchmarks.md").read_text()


def test_a_dump_without_a_candidates_entries_is_refused_naming_the_variants(
    cv, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """Dumps of a run without the @b8 and causal variants (e.g. anomaly.py's default
    --variants) are refused with the missing entries and the --variants that dump them,
    not with a KeyError."""
    labels = np.zeros(400, dtype=np.uint8)
    labels[200:230] = 1
    monkeypatch.setattr(cv.A, "metrics", stand_in)
    records = _records(cv, tmp_path, labels)
    (tmp_path / "rec.json").write_text(json.dumps(records))
    path = tmp_path / "d1" / "SMAP_X-1_gpvae.npz"  # the kept run of X-1 (seed 1)
    d = cv.load_dump(path)
    np.savez_compressed(path, **{k: v for k, v in d.items() if not k.startswith(("k5b8", "c8"))})
    argv = ["--dumps", str(tmp_path / "d{seed}"), "--records", str(tmp_path / "rec.json"),
            "--tag-prefix", "t", "--seeds", "0-2", "--out", str(tmp_path / "r.json")]  # fmt: skip
    with pytest.raises(SystemExit) as err:
        cv.main(argv)
    msg = str(err.value)
    assert f"{path}: expected the entries c8, k5, k5b8, prior, found none of c8, k5b8" in msg
    assert "needed by the candidates b8+0.5P, b8+2P, c8+0.5P, c8+2P" in msg
    assert f"--variants {cv.A.CHOSEN},{cv.A.CHOSEN}@b8,c8ph_norm_s32_b512 --dump" in msg
    # the variants named dump exactly the entries the candidates read
    keys = {cv.A.held_key(cv.A.variant(v)[0], cv.A.variant(v)[5], cv.A.split_block(v)[1])
            for v in cv.DUMP_VARIANTS}  # fmt: skip
    assert keys == {k for k, _ in cv.CANDIDATES.values() if k is not None}
    assert all(cv.A.variant(v)[4] > 0 for v in cv.DUMP_VARIANTS[:1])  # with the prior's
