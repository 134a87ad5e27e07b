"""The label-free screens of alarm rules (``benchmarks/anomaly_screen.py``) on synthetic
dumps: each check's rate is the rule's, built here by hand; the development series' test
rate reads its labels, the others' records have no test rate; the tail rules read the
right level off a known distribution."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from gpvae.estimator.anomaly import alarm_scores, combine_prior, profile_from_entries, spread_ratio

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def scr():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("anomaly_screen")
    finally:
        sys.path.remove(str(BENCH))


def _dump(path: Path, rng: np.random.Generator, fit: bool) -> None:
    def e(T: int) -> np.ndarray:
        return rng.exponential(size=(T, 3)).astype(np.float32)

    labels = np.zeros(900, dtype=np.uint8)
    labels[400:450] = 1
    parts = {"k5_train": e(1000), "prior_train": e(1000), "k5_test": e(900),
             "prior_test": e(900), "labels": labels}  # fmt: skip
    if fit:
        parts.update(k5_fit=e(800), prior_fit=e(800))
    np.savez_compressed(path, **parts)


def _by_hand(fit: np.ndarray, new: np.ndarray, q: float, rank: int = 0) -> float:
    prof = profile_from_entries([fit], 0.01, 16, 5, 128, 32, True, 512, 1, True,
                                feature_scale="tail", combine="max", novelty="cap",
                                spread_quantile=q, rank_window=rank)  # fmt: skip
    a = np.nan_to_num(alarm_scores(np.concatenate([fit, new]), prof), nan=-np.inf)
    return float((a[len(fit) :] > prof.threshold).mean())


def _k5ph(z, part: str, ratio=None):  # type: ignore[no-untyped-def]
    e, p = z[f"k5_{part}"].astype(np.float64), z[f"prior_{part}"].astype(np.float64)
    ratio = spread_ratio([e], [p]) if ratio is None else ratio
    return combine_prior([e], [p], 0.5, ratio)[0], ratio


def test_each_check_is_the_rule_by_hand(scr, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(4)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _dump(tmp_path / "a" / "SMAP_P-1_gpvae.npz", rng, False)  # a development series
    _dump(tmp_path / "a" / "NAB_realX__y_gpvae.npz", rng, False)
    _dump(tmp_path / "b" / "NAB_realX__y_gpvae.npz", rng, True)
    out = tmp_path / "s.json"
    assert scr.main(["--dumps", str(tmp_path / "a"), "--oos", str(tmp_path / "b"),
                     "--rules", "q90,q95,rank256", "--out", str(out)]) == 0  # fmt: skip
    recs = {r["series"]: r for r in json.loads(out.read_text())}
    assert set(recs) == {"P-1", "realX/y"}
    assert recs["P-1"]["dev"] is True
    assert "dev_test" not in recs["realX/y"]
    assert "oos" in recs["realX/y"]
    assert "oos" not in recs["P-1"]
    with np.load(tmp_path / "a" / "NAB_realX__y_gpvae.npz") as z:
        e, _ = _k5ph(z, "train")
    for q, name, rank in ((0.9, "q90", 0), (0.95, "q95", 0), (0.95, "rank256", 256)):
        want = _by_hand(e[:800], e[800:], q, rank)
        assert recs["realX/y"]["tail"][name] == pytest.approx(want, abs=1e-6)
    with np.load(tmp_path / "b" / "NAB_realX__y_gpvae.npz") as z:
        fit, ratio = _k5ph(z, "fit")
        held, _ = _k5ph(z, "train", ratio)
    assert recs["realX/y"]["oos"]["q95"] == pytest.approx(_by_hand(fit, held, 0.95), abs=1e-6)
    want = _by_hand(fit, held, 0.95, 256)
    assert recs["realX/y"]["oos"]["rank256"] == pytest.approx(want, abs=1e-6)
    with np.load(tmp_path / "a" / "SMAP_P-1_gpvae.npz") as z:
        tr, ratio = _k5ph(z, "train")
        te, _ = _k5ph(z, "test", ratio)
        normal = z["labels"] == 0
    prof = profile_from_entries([tr], 0.01, 16, 5, 128, 32, True, 512, 1, True,
                                feature_scale="tail", combine="max", novelty="cap")  # fmt: skip
    flags = np.nan_to_num(alarm_scores(te, prof), nan=-np.inf) > prof.threshold
    assert recs["P-1"]["dev_test"]["q90"] == pytest.approx(float(flags[normal].mean()), abs=1e-6)
    with pytest.raises(SystemExit):
        scr.main(["--dumps", str(tmp_path / "a"), "--rules", "q90,nope"])
    # the summary again from the records alone (no dumps), into a document's region
    docs = tmp_path / "doc.md"
    docs.write_text("before\n<!-- screen -->\nold\n<!-- /screen -->\nafter\n")
    assert scr.main(["--records", str(out), "--rules", "q95,rank256", "--docs", str(docs),
                     "--marker", "screen"]) == 0  # fmt: skip
    text = docs.read_text()
    assert text.startswith("before\n<!-- screen -->\ntail: within 2x")
    assert "old" not in text
    assert "| rank256 |" in text
    assert "| q90 |" not in text
    assert text.endswith("after\n")


def test_the_tail_rules_read_the_level_of_a_known_tail(scr) -> None:  # type: ignore[no-untyped-def]
    """On 200,000 exponential draws the 1% level is log(100) = 4.61 for every rule; on 300
    draws the empirical quantile and Harrell-Davis's differ but stay near it."""
    x = np.random.default_rng(0).exponential(size=200_000)
    for rule in (scr.empirical, scr.exponential_tail(0.05), scr.pareto_tail(0.05),
                 scr.harrell_davis):  # fmt: skip
        assert rule(x, 0.01) == pytest.approx(np.log(100.0), abs=0.06)
    small = x[:300]
    assert scr.harrell_davis(small, 0.01) != scr.empirical(small, 0.01)
    assert abs(scr.harrell_davis(small, 0.01) - np.log(100.0)) < 1.5


def test_the_documented_summary_leaves_the_docs_as_committed(scr, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The session-44 screen's documented command regenerates its region from the committed
    records (no dumps needed)."""
    root = BENCH.parent
    docs = (root / "docs" / "benchmarks.md").read_text()
    [line] = [ln for ln in docs.splitlines()
              if ln.startswith("python benchmarks/anomaly_screen.py --records")]  # fmt: skip
    argv = line.split()[2:]
    argv[argv.index("--records") + 1] = str(root / argv[argv.index("--records") + 1])
    copy = tmp_path / "benchmarks.md"
    copy.write_text(docs)
    assert scr.main([*argv, "--docs", str(copy)]) == 0
    assert copy.read_text() == docs
