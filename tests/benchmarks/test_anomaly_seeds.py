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
    seeds.main(["--results", str(res), "--tags", *TAGS, "--variant", V, "--docs", str(docs)])
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


def plain_mean(by: dict[Any, Any]) -> float:
    return float(np.mean([np.mean([r["vus_pr"] for r in v["gpvae"]]) for v in by.values()]))
