"""The seed-averaged comparison (``benchmarks/anomaly_seeds.py``): seed means per series,
the paired bootstrap interval, the seed spread and the cap-limited count."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest

V = "k5ph_tailmaxcap95_s32_b512"


@pytest.fixture(scope="module")
def seeds(bench_script: Callable[[str], ModuleType]) -> ModuleType:
    return bench_script("anomaly_seeds")


def _rec(series: str, model: str, tag: str, vus: float, best: int = 10, epochs: int = 100,
         dataset: str = "SMAP", dev: bool = False, variant: str = V) -> dict[str, Any]:  # fmt: skip
    return {"dataset": dataset, "series": series, "method": f"{model}/{variant}", "tag": tag,
            "vus_pr": vus, "auc_pr": vus / 2, "auc_roc": 0.5 + vus / 4, "dev": dev,
            "epochs_run": min(best + 5, epochs), "best_epoch": best,
            "config": {"epochs": epochs, "patience": 5}}  # fmt: skip


TAGS = ("t0", "t1", "t2")
#: series -> model -> VUS-PR per seed
VALUES = {
    "A": {"gpvae": (0.2, 0.4, 0.3), "vae": (0.1, 0.1, 0.1)},
    "B": {"gpvae": (0.5, 0.5, 0.8), "vae": (0.6, 0.7, 0.8)},
}


def _records() -> list[dict[str, Any]]:
    recs = [_rec(s, m, t, v) for s, d in VALUES.items() for m, vs in d.items()
            for t, v in zip(TAGS, vs)]  # fmt: skip
    recs[0]["best_epoch"] = 96  # A, gpvae, t0: within the last 5 epochs of 100
    recs[0]["epochs_run"] = 100
    recs[3]["best_epoch"] = 95  # A, vae, t0: epoch 95 + patience 5 = 100, stopped early
    recs += [_rec("C", m, t, 0.9) for m in ("gpvae", "vae") for t in TAGS[:2]]  # no t2
    recs += [_rec("P-1", m, t, 0.9, dev=True) for m in ("gpvae", "vae") for t in TAGS]
    recs += [_rec("A", "gpvae", t, 0.99, variant="other") for t in TAGS]
    recs += [_rec("A", "gpvae", "t9", 0.99)]  # another tag
    return recs


def test_seed_means_interval_spread_and_cap_limited(seeds) -> None:  # type: ignore[no-untyped-def]
    s = seeds.summarise(seeds.collect(_records(), TAGS, V), ("SMAP",), n_boot=2000)
    assert s["n"] == 2
    assert s["seeds"] == 3
    g_means = [np.mean(VALUES[k]["gpvae"]) for k in "AB"]  # 0.3, 0.6
    v_means = [np.mean(VALUES[k]["vae"]) for k in "AB"]  # 0.1, 0.7
    assert s["gpvae"]["vus_pr"] == pytest.approx(np.mean(g_means))
    assert s["vae"]["vus_pr"] == pytest.approx(np.mean(v_means))
    assert s["gpvae"]["auc_pr"] == pytest.approx(np.mean(g_means) / 2)
    assert s["diff"] == pytest.approx(0.05)
    assert s["gpvae_leads"] == 1
    # two series: the resampled mean is one of 0.2, 0.05, -0.1
    lo, hi = s["ci"]
    assert lo == pytest.approx(-0.1)
    assert hi == pytest.approx(0.2)
    # per seed: gpvae (0.35, 0.45, 0.55), VAE (0.35, 0.4, 0.45)
    assert s["gpvae"]["per_seed"] == pytest.approx([0.35, 0.45, 0.55])
    assert s["gpvae"]["seed_range"] == pytest.approx(0.2)
    assert s["seed_diffs"] == pytest.approx([0.0, 0.05, 0.1])
    sd_a = np.std(VALUES["A"]["gpvae"], ddof=1)
    sd_b = np.std(VALUES["B"]["gpvae"], ddof=1)
    assert s["gpvae"]["series_seed_sd"] == pytest.approx((sd_a + sd_b) / 2)
    assert s["gpvae"]["cap_limited"] == 1
    assert s["vae"]["cap_limited"] == 0
    assert s["gpvae"]["runs"] == 6
    assert s["gpvae"]["cap"] == [100]
    assert seeds.summarise(seeds.collect(_records(), TAGS, V), ("NAB",)) is None


def test_bootstrap_interval_covers_the_mean_and_narrows_with_more_series(seeds) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    small, large = rng.normal(0.1, 0.2, 20), rng.normal(0.1, 0.2, 2000)
    lo_s, hi_s = seeds.bootstrap_ci(small)
    lo_l, hi_l = seeds.bootstrap_ci(large)
    assert lo_s < small.mean() < hi_s
    assert lo_l < large.mean() < hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 4
    # about 1.96 standard errors either side
    se = large.std(ddof=1) / np.sqrt(len(large))
    assert (hi_l - lo_l) / 2 == pytest.approx(1.96 * se, rel=0.1)


def test_main_writes_the_table_between_its_markers(seeds, tmp_path) -> None:  # type: ignore[no-untyped-def]
    res = tmp_path / "r.json"
    res.write_text(json.dumps(_records()))
    docs = tmp_path / "d.md"
    docs.write_text(f"head\n{seeds.BEGIN}\nold\n{seeds.END}\ntail\n")
    args = ["--results", str(res), "--tags", *TAGS, "--variant", V, "--docs", str(docs)]
    seeds.main(args)  # without --marker: printed only, no region written
    assert docs.read_text() == f"head\n{seeds.BEGIN}\nold\n{seeds.END}\ntail\n"
    seeds.main([*args, "--marker", "anomaly-seeds-table"])
    text = docs.read_text()
    assert text.startswith("head\n")
    assert text.endswith(f"{seeds.END}\ntail\n")
    assert "old" not in text
    assert "| SMAP | 2 | 0.450 | 0.400 | +0.050 [-0.100, +0.200] | 1 of 2 |" in text
    assert "| SMAP | 100 | " in text
    assert "| 1 of 6 | " in text
    assert "| MSL |" not in text


def test_the_development_table_averages_each_settings_seeds(seeds) -> None:  # type: ignore[no-untyped-def]
    recs = [_rec(s, "gpvae", f"t{i}", v, dev=True) for i, v in enumerate((0.1, 0.2, 0.6))
            for s in ("P-1", "E-1")]  # fmt: skip
    recs += [_rec("P-1", "gpvae", f"alt{i}", 0.3, best=99, dev=True) for i in range(3)]
    recs += [_rec("P-1", "vae", f"alt{i}", 0.5, dev=True) for i in range(2)]  # seed 2 missing
    for r in recs:
        r["config"].update(kernel="matern32", hidden=64, beta=1.0)
    out = seeds.dev_table(recs, ["t", "alt"], 3, V)
    row = "| gpvae | matern32, hidden 64, beta 1, cap 100 | t* | 2 | 0.100 / 0.200 / 0.600 |"
    assert f"{row} 0.300 | 0 of 6 |" in out
    assert "| alt* | 1 | 0.300 / 0.300 / 0.300 | 0.300 | 3 of 3 |" in out
    assert "| vae |" not in out
    assert seeds.dev_table(recs, [], 3, V) == ""


def test_the_development_table_shows_several_variants_each_labelled(seeds) -> None:  # type: ignore[no-untyped-def]
    W = V + "+lat8"
    recs = [_rec(s, "gpvae", f"t{i}", v, dev=True, variant=var)
            for var, vals in ((V, (0.1, 0.2, 0.6)), (W, (0.4, 0.4, 0.7)))
            for i, v in enumerate(vals) for s in ("P-1", "E-1")]  # fmt: skip
    for r in recs:
        r["config"].update(kernel="matern32", hidden=64, beta=1.0)
    out = seeds.dev_table(recs, ["t"], 3, [V, W])
    gp = "| gpvae | matern32, hidden 64, beta 1, cap 100 |"
    assert f"{gp} t*, {V} | 2 | 0.100 / 0.200 / 0.600 | 0.300 |" in out
    assert f"{gp} t*, {W} | 2 | 0.400 / 0.400 / 0.700 | 0.500 |" in out
    assert out.count("| model | setting |") == 1  # one header
    assert seeds.dev_table(recs, ["t"], 3, [V]) != seeds.dev_table(recs, ["t"], 3, V)
    assert f"t*, {V}" not in seeds.dev_table(recs, ["t"], 3, V)  # one variant: unlabelled


def test_one_seed_has_no_series_sd(seeds) -> None:  # type: ignore[no-untyped-def]
    out = seeds.render(_records(), ["t0"], V)
    # A, B and C (which has t0): gpvae and VAE both (0.2 + 0.5 + 0.9) / 3 and (0.1 + 0.6 + 0.9) / 3
    assert "| SMAP | 0.533 | 0.533 | +0.000 | 0.000 | 0.000 | - | - |" in out


def test_a_rerun_with_a_larger_cap_replaces_the_cap_limited_record(seeds) -> None:  # type: ignore[no-untyped-def]
    recs = _records()
    rerun = _rec("A", "gpvae", "t0_cap200", 0.5, best=150, epochs=200)
    recs += [rerun, _rec("C", "gpvae", "t2_cap200", 0.5, epochs=200)]  # C has no t2: ignored
    plain = seeds.collect(recs, TAGS, V)
    assert plain[("SMAP", "A")]["gpvae"][0]["vus_pr"] == 0.2
    by = seeds.collect(recs, TAGS, V, "_cap200")
    assert by[("SMAP", "A")]["gpvae"][0] is rerun
    assert by[("SMAP", "A")]["vae"][0]["tag"] == "t0"
    assert set(by) == set(plain)
    s = seeds.summarise(by, ("SMAP",))
    assert s["gpvae"]["cap_limited"] == 0
    assert s["gpvae"]["cap"] == [100, 200]
    assert "| SMAP | 100/200 | " in seeds.render(recs, TAGS, V, "_cap200")
    assert s["gpvae"]["vus_pr"] == pytest.approx(plain_mean(plain) + 0.3 / 3 / 2)
    # a cap-200 rerun still cap-limited, refit again with cap 400: the last suffix wins,
    # in either order of the records
    again = _rec("A", "gpvae", "t0_cap400", 0.7, best=300, epochs=400)
    for order in ([*recs, again], [again, *recs]):
        by = seeds.collect(order, TAGS, V, ["_cap200", "_cap400"])
        assert by[("SMAP", "A")]["gpvae"][0] is again
    assert seeds.collect([*recs, again], TAGS, V, "_cap200")[("SMAP", "A")]["gpvae"][0] is rerun
    assert seeds.rerun_of("t0_cap400", TAGS, ["_cap200", "_cap400"]) == ("t0", 1)
    assert seeds.rerun_of("t9_cap400", TAGS, ["_cap200", "_cap400"]) is None


def plain_mean(by: dict[Any, Any]) -> float:
    return float(np.mean([np.mean([r["vus_pr"] for r in v["gpvae"]]) for v in by.values()]))


def _with_val(rec: dict[str, Any], val: float | None) -> dict[str, Any]:
    rec["val_score_best"] = val
    return rec


def test_best_of_keeps_the_lowest_validation_score_of_each_group(seeds) -> None:  # type: ignore[no-untyped-def]
    runs = [_with_val(_rec("A", "gpvae", f"t{i}", v), val)
            for i, (v, val) in enumerate([(0.1, 0.5), (0.9, 0.2), (0.3, 0.4), (0.4, 0.4),
                                          (0.7, None), (0.2, 0.9), (0.6, 0.1)])]  # fmt: skip
    # groups of 2: (t0, t1), (t2, t3), (t4, t5); t6 is left over
    kept = seeds.best_of(runs, 2)
    assert [r["tag"] for r in kept] == ["t1", "t2", "t5"]  # t2: the first of equals; t4: None
    assert [r["tag"] for r in seeds.best_of(runs, 3)] == ["t1", "t3"]  # 0.4 < None, 0.9
    assert seeds.best_of(runs, 1) == runs
    assert seeds.best_of(runs, 8) == []
    with pytest.raises(ValueError, match="restarts"):
        seeds.best_of(runs, 0)


def _restart_records() -> list[dict[str, Any]]:
    """Series A and B, 4 seeds of both models; gpvae's second seed of each pair has the
    lower validation score, the VAE's first."""
    vus = {"A": {"gpvae": (0.1, 0.5, 0.2, 0.6), "vae": (0.3, 0.9, 0.3, 0.9)},
           "B": {"gpvae": (0.2, 0.4, 0.2, 0.8), "vae": (0.5, 0.1, 0.4, 0.1)}}  # fmt: skip
    recs = []
    for s, d in vus.items():
        for m, vs in d.items():
            for i, v in enumerate(vs):
                low = (i % 2 == 1) == (m == "gpvae")
                recs.append(_with_val(_rec(s, m, f"t{i}", v), 0.1 if low else 0.2))
    return recs


def test_the_table_of_best_of_k_restarts_uses_the_runs_each_group_keeps(seeds) -> None:  # type: ignore[no-untyped-def]
    recs = _restart_records()
    tags = ["t0", "t1", "t2", "t3"]
    by = seeds.restarted(seeds.collect(recs, tags, V), 2)
    s = seeds.summarise(by, ("SMAP",), n_boot=500)
    # gpvae keeps A (0.5, 0.6), B (0.4, 0.8); the VAE A (0.3, 0.3), B (0.5, 0.4)
    assert s["seeds"] == 2
    assert s["gpvae"]["vus_pr"] == pytest.approx((0.55 + 0.6) / 2)
    assert s["vae"]["vus_pr"] == pytest.approx((0.3 + 0.45) / 2)
    assert s["gpvae"]["per_seed"] == pytest.approx([0.45, 0.7])
    out = seeds.render(recs, tags, V, restarts=2)
    assert "**Best of 2 restarts:**" in out
    assert "(t0, t1; t2, t3)" in out
    assert "| SMAP | 2 | 0.575 | 0.375 | +0.200 " in out
    assert "| data set | gpvae per group | VAE per group |" in out
    assert "Epochs (the runs the groups keep)" in out
    # without restarts: every seed's mean
    plain = seeds.summarise(seeds.collect(recs, tags, V), ("SMAP",), n_boot=500)
    assert plain["gpvae"]["vus_pr"] == pytest.approx((0.35 + 0.4) / 2)
    assert "Seed to seed" in seeds.render(recs, tags, V)


def test_a_baseline_is_compared_where_every_series_has_its_runs(seeds) -> None:  # type: ignore[no-untyped-def]
    recs = _restart_records()
    tags = ["t0", "t1", "t2", "t3"]
    cnn = "cnn/s32_b512"
    pairs = (("A", (0.2, 0.4)), ("B", (0.6, 0.7)))
    recs += [_rec(s, "cnn", f"c{i}", v, variant="s32_b512")
             for s, vs in pairs for i, v in enumerate(vs)]  # fmt: skip
    recs += [_rec("A", "cnn", "c0", 0.9, dataset="NAB", variant="s32_b512")]  # no c1 there
    recs += [_rec(s, m, t, 0.5, dataset="NAB") for s in ("A", "N") for m in ("gpvae", "vae")
             for t in tags]  # fmt: skip
    runs = seeds.collect_peer(recs, cnn, ["c0", "c1"])
    assert set(runs) == {("SMAP", "A"), ("SMAP", "B")}
    by = seeds.restarted(seeds.collect(recs, tags, V), 2)
    rows = seeds.peer_rows(by, {cnn: runs}, n_boot=500)
    assert [r["set"] for r in rows] == ["SMAP", "SMAP+MSL"]  # NAB lacks the CNN's runs
    row = rows[0]
    assert row["peer_vus"] == pytest.approx((0.3 + 0.65) / 2)
    assert row["gpvae"] == pytest.approx((0.55 + 0.6) / 2)
    assert row["diff"] == pytest.approx(row["gpvae"] - row["peer_vus"])
    assert row["leads"] == 1  # A 0.55 > 0.3; B 0.6 < 0.65
    assert row["ci"] == (pytest.approx(-0.05), pytest.approx(0.25))
    out = seeds.render(recs, tags, V, restarts=2, peers={cnn: ["c0", "c1"]})
    assert (
        "| SMAP | 2 | cnn/s32_b512 | 2 | 0.575 | 0.475 | +0.100 [-0.050, +0.250] | 1 of 2 |" in out
    )
    assert "| NAB | 2 | cnn" not in out
    assert "Baselines" not in seeds.render(recs, tags, V, restarts=2)


def test_the_development_table_shows_best_of_k_groups(seeds) -> None:  # type: ignore[no-untyped-def]
    recs = _restart_records()
    for r in recs:
        r["dev"] = True
        r["config"].update(kernel="matern32", hidden=64, beta=1.0)
    out = seeds.dev_table(recs, ["t"], 4, V, (1, 2))
    gp = "| gpvae | matern32, hidden 64, beta 1, cap 100 |"
    assert f"{gp} t* | 2 | 0.150 / 0.450 / 0.200 / 0.700 | 0.375 |" in out
    assert f"{gp} t*, best of 2 | 2 | 0.450 / 0.700 | 0.575 | 0 of 4 |" in out
    assert "| vae | hidden 64, beta 1, cap 100 | t*, best of 2 | 2 | 0.400 / 0.350 | 0.375 |" in out
    assert "best of K" in out
    assert "best of K" not in seeds.dev_table(recs, ["t"], 4, V)


def test_main_writes_a_named_region_and_reads_the_peers(seeds, tmp_path) -> None:  # type: ignore[no-untyped-def]
    recs = _restart_records()
    recs += [_rec(s, "cnn", "c0", 0.1, variant="s32_b512") for s in ("A", "B")]
    res = tmp_path / "r.json"
    res.write_text(json.dumps(recs))
    docs = tmp_path / "d.md"
    docs.write_text(f"{seeds.BEGIN}\nkept\n{seeds.END}\n<!-- mine -->\nold\n<!-- /mine -->\n")
    seeds.main(["--results", str(res), "--tags", "t0", "t1", "t2", "t3", "--variant", V,
                "--restarts", "2", "--peers", "cnn/s32_b512:c0", "--marker", "mine",
                "--docs", str(docs)])  # fmt: skip
    text = docs.read_text()
    assert text.startswith(f"{seeds.BEGIN}\nkept\n{seeds.END}\n<!-- mine -->\n")
    assert "old" not in text
    assert "| SMAP | 2 | cnn/s32_b512 | 1 | 0.575 | 0.100 | +0.475 " in text
    # two settings of one method side by side, each under its own name
    recs += [_rec(s, "cnn", "c9", 0.3, variant="s32_b512") for s in ("A", "B")]
    res.write_text(json.dumps(recs))
    seeds.main(["--results", str(res), "--tags", "t0", "t1", "t2", "t3", "--variant", V,
                "--restarts", "2", "--peers", "cnn/s32_b512:c0", "wide=cnn/s32_b512:c9",
                "--marker", "mine", "--docs", str(docs)])  # fmt: skip
    text = docs.read_text()
    assert "| SMAP | 2 | cnn/s32_b512 | 1 | 0.575 | 0.100 | +0.475 " in text
    assert "| SMAP | 2 | wide | 1 | 0.575 | 0.300 | +0.275 " in text
    assert "wide (cnn/s32_b512) c9" in text
    with pytest.raises(SystemExit):  # the same name twice
        seeds.main(["--results", str(res), "--tags", "t0", "t1", "--variant", V, "--peers",
                    "cnn/s32_b512:c0", "cnn/s32_b512:c9", "--docs", str(docs)])  # fmt: skip


def test_a_baseline_with_validation_scores_is_the_best_of_its_restarts(seeds) -> None:  # type: ignore[no-untyped-def]
    recs = _restart_records()
    tags = ["t0", "t1", "t2", "t3"]
    cnn = "cnn/s32_b512"
    # per series four CNN runs (VUS-PR, validation loss, best epoch): groups (c0, c1) and
    # (c2, c3) keep the run with the lower validation loss
    runs = {"A": ((0.2, 1.0, 10), (0.4, 0.5, 98), (0.9, 0.3, 20), (0.1, 0.4, 30)),
            "B": ((0.6, 0.2, 10), (0.7, 0.9, 10), (0.5, 0.8, 40), (0.3, 0.7, 50))}  # fmt: skip
    for s, rs in runs.items():
        for i, (v, val, best) in enumerate(rs):
            r = _rec(s, "cnn", f"c{i}", v, best=best, variant="s32_b512")
            r["val_score_best"] = val
            recs.append(r)
    peers = {cnn: [f"c{i}" for i in range(4)]}
    out = seeds.render(recs, tags, V, restarts=2, peers=peers, peer_restarts=2)
    # kept: A 0.4 and 0.9 (mean 0.65), B 0.6 and 0.3 (0.45): mean 0.55
    assert "| SMAP | 2 | cnn/s32_b512 | 2 | 0.575 | 0.550 | +0.025 " in out
    assert "best of 2 restarts by its own validation loss" in out
    # the kept runs' epochs: best 98, 20, 10, 50; run min(best + 5, 100): 100, 25, 15, 55
    assert "| SMAP | cnn/s32_b512 | 100 | 48.8 | 44.5 | 1 of 4 |" in out
    # every run on its own: the mean of all eight
    plain = seeds.render(recs, tags, V, restarts=2, peers=peers)
    assert "| SMAP | 2 | cnn/s32_b512 | 4 | 0.575 | 0.462 | " in plain
    del recs[-1]["val_score_best"]
    with pytest.raises(ValueError, match="cnn/s32_b512 has runs without a validation score"):
        seeds.render(recs, tags, V, restarts=2, peers=peers, peer_restarts=2)


def test_a_baseline_rerun_replaces_its_cap_limited_record(seeds) -> None:  # type: ignore[no-untyped-def]
    cnn = "cnn/s32_b512"
    recs = [
        _rec("A", "cnn", "c0", 0.2, best=100, variant="s32_b512"),
        _rec("A", "cnn", "c1", 0.4, variant="s32_b512"),
        _rec("A", "cnn", "c1_cap200", 0.9, variant="s32_b512"),
        _rec("A", "cnn", "c0_cap200", 0.6, best=130, epochs=200, variant="s32_b512"),
        _rec("B", "cnn", "c0_cap200", 0.7, variant="s32_b512"),
    ]  # B has no record of c0 for its rerun to replace
    runs = seeds.collect_peer(recs, cnn, ["c0"], "_cap200")
    assert [r["vus_pr"] for r in runs[("SMAP", "A")]] == [0.6]
    assert ("SMAP", "B") not in runs
    assert [r["vus_pr"] for r in seeds.collect_peer(recs, cnn, ["c0"])[("SMAP", "A")]] == [0.2]
    both = seeds.collect_peer(recs, cnn, ["c0", "c1"], "_cap200")[("SMAP", "A")]
    assert [r["vus_pr"] for r in both] == [0.6, 0.9]
    again = _rec("A", "cnn", "c0_cap400", 0.8, best=300, epochs=400, variant="s32_b512")
    for order in ([*recs, again], [again, *recs]):
        runs = seeds.collect_peer(order, cnn, ["c0"], ["_cap200", "_cap400"])
        assert [r["vus_pr"] for r in runs[("SMAP", "A")]] == [0.8]


def test_gpvae_runs_of_other_tags_meet_the_vaes_own_runs_seed_by_seed(seeds) -> None:  # type: ignore[no-untyped-def]
    """``vae_tags``: gpvae's records of ``tags`` against the VAE's of ``vae_tags`` (its
    cap-200 refit still in its run's place); the VAE's records of ``tags`` are not used."""
    recs = [_rec(s, "gpvae", f"n{i}", v) for s, vs in (("A", (0.6, 0.8)), ("B", (0.5, 0.5)))
            for i, v in enumerate(vs)]  # fmt: skip
    recs += [_rec(s, "vae", f"t{i}", 0.2) for s in ("A", "B") for i in range(2)]
    recs += [_rec(s, "vae", f"n{i}", 0.9) for s in ("A", "B") for i in range(2)]  # not used
    recs += [_rec("A", "vae", "t1_cap200", 0.4)]
    by = seeds.collect(recs, ["n0", "n1"], V, "_cap200", vae_tags=["t0", "t1"])
    assert [r["vus_pr"] for r in by[("SMAP", "A")]["vae"]] == [0.2, 0.4]
    assert [r["tag"] for r in by[("SMAP", "A")]["gpvae"]] == ["n0", "n1"]
    out = seeds.render(recs, ["n0", "n1"], V, "_cap200", vae_tags=["t0", "t1"])
    # A: gpvae 0.7 against 0.3; B: 0.5 against 0.2
    assert "| SMAP | 2 | 0.600 | 0.250 | +0.350 " in out
    assert "The VAE's runs are those of the tags t0, t1" in out
    assert "The VAE's runs" not in seeds.render(recs, ["t0", "t1"], V)
    with pytest.raises(ValueError, match="vae_tags"):
        seeds.collect(recs, ["n0", "n1"], V, vae_tags=["t0"])


def _dev_setting_records() -> list[dict[str, Any]]:
    """Development records of two gpvae settings (tags a*, b*; b with an initial
    lengthscale) and the VAE's (a*), seeds 0-3, two series."""
    vals = {  # (prefix, model, series) -> VUS-PR per seed 0..3
        ("a", "gpvae", "P-1"): (0.1, 0.3, 0.2, 0.4),
        ("a", "gpvae", "E-1"): (0.5, 0.5, 0.5, 0.5),
        ("b", "gpvae", "P-1"): (0.6, 0.0, 0.6, 0.6),
        ("b", "gpvae", "E-1"): (0.4, 0.4, 0.4, 0.4),
        ("a", "vae", "P-1"): (0.2, 0.2, 0.2, 0.2),
        ("a", "vae", "E-1"): (0.3, 0.3, 0.3, 0.3),
    }
    recs = []
    for (prefix, model, series), vs in vals.items():
        for i, v in enumerate(vs):
            r = _rec(series, model, f"{prefix}{i}", v, dev=True)
            # validation scores: seed 1 is kept in group {0, 1}, seed 2 in {2, 3}
            r["val_score_best"] = {0: 0.5, 1: 0.1, 2: 0.1, 3: 0.5}[i]
            r["config"].update(kernel="matern32", hidden=64, beta=1.0,
                               lengthscale=16.0 if prefix == "b" else None)  # fmt: skip
            recs.append(r)
    return recs


def test_the_per_series_development_table_counts_where_a_setting_is_below_the_first(seeds) -> None:  # type: ignore[no-untyped-def]
    out = seeds.dev_series_table(_dev_setting_records(), ["a", "b"], 4, V, 2)
    assert "| model | setting | tags | E-1 | P-1 | mean | below the first |" in out
    # a: P-1 keeps seeds 1 and 2 (0.3, 0.2), E-1 0.5; b: P-1 keeps 0.0 and 0.6, E-1 0.4
    gp_a = "| gpvae | matern32, hidden 64, beta 1, cap 100 | a*, best of 2 |"
    assert f"{gp_a} 0.500 | 0.250 | 0.375 | - |" in out
    gp_b = "| gpvae | matern32 lengthscale 16, hidden 64, beta 1, cap 100 | b*, best of 2 |"
    assert f"{gp_b} 0.400 | 0.300 | 0.350 | 1 of 2 |" in out
    assert "| vae | hidden 64, beta 1, cap 100 | a*, best of 2 | 0.300 | 0.200 | 0.250 | - |" in out
    assert seeds.dev_series_table(_dev_setting_records(), ["zzz"], 4, V, 2) == ""


def test_main_dev_only_writes_the_development_tables_alone(seeds, tmp_path) -> None:  # type: ignore[no-untyped-def]
    res = tmp_path / "r.json"
    res.write_text(json.dumps(_dev_setting_records()))
    docs = tmp_path / "d.md"
    docs.write_text("<!-- dev -->\nold\n<!-- /dev -->\n")
    seeds.main(["--results", str(res), "--tags", "a0", "a1", "a2", "a3", "--variant", V,
                "--dev-only", "--dev-prefixes", "a", "b", "--dev-restarts", "2",
                "--dev-per-series", "--marker", "dev", "--docs", str(docs)])  # fmt: skip
    text = docs.read_text()
    assert "Held-out" not in text
    assert "old" not in text
    assert "| a*, best of 2 | 2 | 0.400 / 0.350 | 0.375 |" in text  # the groups' table
    assert "| 0.350 | 1 of 2 |" in text  # the per-series table


def test_the_per_series_development_table_compares_variants_with_the_first_row(seeds) -> None:  # type: ignore[no-untyped-def]
    recs = _dev_setting_records()
    other = [dict(r, method=r["method"].replace(V, V + "@b8"), vus_pr=r["vus_pr"] + 0.1)
             for r in recs if r["tag"].startswith("a")]  # fmt: skip
    out = seeds.dev_series_table(recs + other, ["a", "b"], 4, [V, V + "@b8"], 2)
    gp_a = "| gpvae | matern32, hidden 64, beta 1, cap 100 | a*, best of 2"
    assert f"{gp_a}, {V} | 0.500 | 0.250 | 0.375 | - |" in out
    assert f"{gp_a}, {V}@b8 | 0.600 | 0.350 | 0.475 | 0 of 2 |" in out
    assert "b*, best of 2, " + V + " | 0.400 | 0.300 | 0.350 | 1 of 2 |" in out
    vae = "| vae | hidden 64, beta 1, cap 100 | a*, best of 2"
    assert f"{vae}, {V}@b8 | 0.400 | 0.300 | 0.350 | 0 of 2 |" in out


def test_a_development_row_names_a_likelihood_or_encoder_other_than_the_defaults(seeds) -> None:  # type: ignore[no-untyped-def]
    """Runs with the Student-t or the conv encoder are told apart from the Gaussian MLP
    runs (records without the keys, from before the options, ran those defaults)."""
    recs = []
    for prefix, extra in (("g", {}), ("t", {"likelihood": "student_t", "encoder": "mlp"}),
                          ("c", {"likelihood": "gaussian", "encoder": "conv"})):  # fmt: skip
        for i in range(3):
            for model in ("gpvae", "vae"):
                r = _rec("P-1", model, f"{prefix}{i}", 0.2, dev=True)
                r["config"].update(kernel="matern32" if model == "gpvae" else "white",
                                   lengthscale=None, hidden=64, beta=1.0, **extra)  # fmt: skip
                recs.append(r)
    out = seeds.dev_table(recs, ["g", "t", "c"], 3, V)
    assert "| gpvae | matern32, hidden 64, beta 1, cap 100 | g* |" in out
    assert "| gpvae | matern32, likelihood student_t, hidden 64, beta 1, cap 100 | t* |" in out
    assert "| gpvae | matern32, encoder conv, hidden 64, beta 1, cap 100 | c* |" in out
    assert "| vae | likelihood student_t, hidden 64, beta 1, cap 100 | t* |" in out
    assert "| vae | encoder conv, hidden 64, beta 1, cap 100 | c* |" in out


@pytest.mark.parametrize(
    "marker",
    [
        "anomaly-seeds-s15",
        "anomaly-seeds-s31-ls16",
        "anomaly-seeds-s32-smap-msl",
        "anomaly-seeds-s32-nab",
        "anomaly-seeds-s33",
        "anomaly-seeds-s33-two",
    ],
)
def test_docs_region_is_its_documented_commands_output(
    seeds, rerun_docs_command, tmp_path, marker
) -> None:  # type: ignore[no-untyped-def]
    """docs/benchmarks.md's region is what the command printed beside it writes, flags and
    all, from the committed records: rerunning it on a copy of the docs changes nothing."""
    docs, rerun = rerun_docs_command(seeds, marker, tmp_path)
    assert f"<!-- {marker} -->\nHeld-out series" in docs
    assert rerun == docs


def test_false_alarm_table_counts_the_kept_runs_rates(seeds) -> None:  # type: ignore[no-untyped-def]
    """--false-alarms: per data set and model, the rates of the runs the groups keep against
    the target: within a factor 2, below half, above twice (the bounds count as within);
    not shown without the flag, nor for models whose records carry no rate."""
    rates = {  # series -> model -> rate per seed (target 0.01)
        "A": {"gpvae": (0.02, 0.5, 0.5), "vae": (0.001, 0.5, 0.5)},
        "B": {"gpvae": (0.005, 0.5, 0.5), "vae": (0.03, 0.5, 0.5)},
    }
    recs = []
    for s, d in rates.items():
        for m, rs in d.items():
            for i, (t, r) in enumerate(zip(TAGS, rs)):
                rec = _rec(s, m, t, 0.5)
                rec["config"]["far"] = 0.01
                rec["val_score_best"] = float(i)  # seed 0 kept by the best of 3
                rec["false_alarm_rate_spread"] = r
                recs.append(rec)
    text = seeds.render(recs, TAGS, V, restarts=3, false_alarms=True)
    assert "False alarms (the runs the groups keep)" in text
    assert "| SMAP | gpvae | 2 | 0.01 | 0.0125 | 0.0125 | 2 of 2 | 0 | 0 |" in text
    assert "| SMAP | VAE | 2 | 0.01 | 0.0155 | 0.0155 | 0 of 2 | 1 | 1 |" in text
    assert "False alarms" not in seeds.render(recs, TAGS, V, restarts=3)
    for r in recs:
        if r["method"].startswith("vae/"):
            del r["false_alarm_rate_spread"]
    text = seeds.render(recs, TAGS, V, restarts=3, false_alarms=True)
    assert "| SMAP | gpvae | 2 |" in text
    assert "| SMAP | VAE |" not in text
