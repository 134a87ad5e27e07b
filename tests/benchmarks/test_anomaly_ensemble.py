"""``benchmarks/anomaly_ensemble.py``: the mixture of the members' entry densities, and the
whole script on dumps and records written here (TSB-AD's metrics replaced by a stand-in)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def ens(bench_script):  # type: ignore[no-untyped-def]
    return bench_script("anomaly_ensemble")


def test_mixture_entries_is_minus_log_mean_density(ens) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    e = [rng.normal(3.0, 2.0, (50, 4)) for _ in range(3)]
    e[1][0, 0] = 900.0  # a member far in the tail: the others' densities carry the entry
    e[2][5, 1] = np.nan  # an entry one member did not score stays unscored
    got = ens.mixture_entries(e)
    with np.errstate(invalid="ignore"):
        want = -np.log(np.mean(np.exp(-np.stack(e)), axis=0))
    np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)], rtol=1e-12)
    assert np.isnan(got[5, 1])
    assert got[0, 0] == pytest.approx(-np.log((np.exp(-e[0][0, 0]) + np.exp(-e[2][0, 0])) / 3))
    # one member: its own entries; far tails without underflow
    np.testing.assert_allclose(ens.mixture_entries([e[0]]), e[0], rtol=1e-12)
    far = ens.mixture_entries([np.full((2, 2), 2000.0), np.full((2, 2), 2000.0)])
    np.testing.assert_allclose(far, 2000.0)


def _dump(folder: Path, seed: int, labels: np.ndarray) -> None:
    rng = np.random.default_rng(seed)
    T_tr, T_te, D = 300, len(labels), 3
    parts = {}
    for key in ("k5", "prior"):
        parts[f"{key}_train"] = rng.gamma(2.0, 1.0, (T_tr, D)).astype(np.float32)
        test = rng.gamma(2.0, 1.0, (T_te, D))
        test[labels == 1] += 4.0 * (seed + 1) / 3  # the members see the anomaly unequally
        parts[f"{key}_test"] = test.astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / "SMAP_X-1_gpvae.npz", labels=labels, **parts)


def test_script_scores_members_best_mixture_and_average(ens, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    labels = np.zeros(400, dtype=np.uint8)
    labels[200:230] = 1

    def stand_in(score, labels, window):  # type: ignore[no-untyped-def]
        s = np.nan_to_num(np.asarray(score, dtype=np.float64), nan=-1e9)
        return {"vus_pr": float(s[labels == 1].mean() - s[labels == 0].mean()),
                "auc_pr": 0.0, "auc_roc": 0.0}  # fmt: skip

    monkeypatch.setattr(ens.A, "metrics", stand_in)
    records = []
    for seed in range(3):
        _dump(tmp_path / f"d{seed}", seed, labels)
        with np.load(tmp_path / f"d{seed}" / "SMAP_X-1_gpvae.npz") as z:
            e = ens.chosen_entries(
                (z["k5_train"], z["k5_test"]), (z["prior_train"], z["prior_test"])
            )
        own = stand_in(ens.chosen_step_score(*e, 0.01, 16), labels, 10)
        records.append(
            {
                "dataset": "SMAP",
                "series": "X-1",
                "method": f"gpvae/{ens.A.CHOSEN}",
                "tag": f"t{seed}",
                "config": {"seed": seed},
                "sliding_window": 10,
                "vus_pr": own["vus_pr"],
                "val_score_best": [0.3, 0.1, 0.2][seed],
            }
        )
    (tmp_path / "rec.json").write_text(json.dumps(records))
    out = tmp_path / "ens.json"
    argv = ["--dumps", str(tmp_path / "d{seed}"), "--records", str(tmp_path / "rec.json"),
            "--tag-prefix", "t", "--seeds", "0-2", "--members", "3", "--out", str(out)]  # fmt: skip
    assert ens.main(argv) == 0
    (row,) = json.loads(out.read_text())
    assert row["seeds"] == [0, 1, 2]
    assert row["member_vus_pr"] == [r["vus_pr"] for r in records]
    assert row["best_vus_pr"] == pytest.approx(records[1]["vus_pr"])  # lowest validation score
    assert row["avg_vus_pr"] > 0.0
    assert row["mix_vus_pr"] > 0.0
    # a refit with a larger cap (its own dump folder) takes its run's place
    _dump(tmp_path / "d0_cap200", 7, labels)
    with np.load(tmp_path / "d0_cap200" / "SMAP_X-1_gpvae.npz") as z:
        e = ens.chosen_entries((z["k5_train"], z["k5_test"]), (z["prior_train"], z["prior_test"]))
    refit = {**records[0], "tag": "t0_cap200", "val_score_best": 0.05}
    refit["vus_pr"] = stand_in(ens.chosen_step_score(*e, 0.01, 16), labels, 10)["vus_pr"]
    (tmp_path / "rec.json").write_text(json.dumps([*records, refit]))
    out.unlink()
    assert ens.main(argv) == 0
    (row,) = json.loads(out.read_text())
    assert row["member_vus_pr"][0] == refit["vus_pr"] != records[0]["vus_pr"]
    assert row["best_vus_pr"] == pytest.approx(refit["vus_pr"])
    # a record that is not the dumped fit is refused
    records[2]["vus_pr"] += 0.01
    (tmp_path / "rec.json").write_text(json.dumps(records))
    out.unlink()
    with pytest.raises(SystemExit, match="not the recorded fit"):
        ens.main(argv)


def test_docs_table_is_the_scripts_output(ens, capsys) -> None:  # type: ignore[no-untyped-def]
    """docs/benchmarks.md's session-29 table is what ``--table`` prints from the record."""
    root = Path(__file__).resolve().parents[2]
    assert ens.main(["--table", str(root / "benchmarks/results/anomaly_s29_ensemble.json")]) == 0
    table = capsys.readouterr().out
    assert table.count("\n") == 12
    assert table in (root / "docs" / "benchmarks.md").read_text()
