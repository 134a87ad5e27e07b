"""Smoke test of the anomaly benchmark's methods (``benchmarks/anomaly.py``) on a small
synthetic series: every method gives one finite score per scored step, gpvae and the
N(0, I) VAE give every score variant and a false-alarm rate. TSB-AD (metrics, CNN) is not
needed here."""

from __future__ import annotations

import importlib
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

from gpvae.datasets.anomaly import AnomalySeries

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("anomaly")
    finally:
        sys.path.remove(str(BENCH))


def _series(D: int) -> AnomalySeries:
    rng = np.random.default_rng(0)
    t = np.arange(400.0)
    x = np.sin(2 * np.pi * t / 20)[:, None] + 0.1 * rng.standard_normal((400, D))
    labels = np.zeros(300, dtype=np.uint8)
    labels[150:170] = 1
    x[250:270] += 3.0
    return AnomalySeries("toy", "SMAP" if D > 1 else "NAB", x[:100], x[100:], labels,
                         t[:100], t[100:], [f"f{j}" for j in range(D)])  # fmt: skip


@pytest.mark.parametrize("D", [1, 3])
def test_every_method_scores_every_step(bench, D: int) -> None:  # type: ignore[no-untyped-def]
    s = _series(D)
    args = bench.parse_args(
        ["--epochs", "1", "--hidden", "8", "--variants", "all", "--peer-variants", "all"]
    )
    for name in ("pca", "iforest", "zscore"):
        out = bench.RUNNERS[name](s, args, 20)
        assert set(out["variants"]) == set(bench.PEER_VARIANTS), name
        for v in out["variants"].values():
            assert v["score"].shape == (300,), name
            assert np.isfinite(v["score"]).all(), name
    for name in ("gpvae", "vae") if D > 1 else ():
        out = bench.RUNNERS[name](s, args, 20)
        assert set(out["variants"]) == set(bench.VARIANTS)
        for v in out["variants"].values():
            assert v["score"].shape == (300,)
            assert np.isfinite(v["score"]).all()
            assert 0.0 <= v["false_alarm_rate"] <= 1.0
            for key in ("tail", "spread", "tail_spread", "smoothed"):
                assert 0.0 <= v[f"false_alarm_rate_{key}"] <= 1.0
        assert out["epochs_run"] == 1
    assert bench.CHOSEN in bench.VARIANTS
    assert set(bench.PEER_CHOSEN) == {"pca", "iforest", "zscore", "cnn"}
    assert set(bench.PEER_CHOSEN.values()) <= set(bench.PEER_VARIANTS)


def test_peer_variants_smooth_and_detrend_with_the_normal_context(bench) -> None:  # type: ignore[no-untyped-def]
    """The raw variant is the score itself; the baseline subtracts the trailing median
    whose history is the normal context, so a constant offset of the scored part decays
    to 0; the trailing mean runs on from the context."""
    full = np.concatenate([np.ones(600), np.full(1000, 3.0)])
    out = bench.peer_variants(full, 1000, ["s1", "s1_b512", "s32"])
    np.testing.assert_array_equal(out["s1"]["score"], full[600:])
    b = out["s1_b512"]["score"]
    assert b[0] == 2.0
    assert b[-1] == 0.0
    s32 = out["s32"]["score"]  # the trailing mean runs on from the context
    assert s32[0] == (31 + 3.0) / 32
    np.testing.assert_allclose(s32[31:], 3.0)


def test_the_threshold_can_come_from_a_held_back_normal_part(bench, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """With --threshold-holdout the fit sees only the start of the normal part and the
    threshold's scores are those of its held-back end."""
    s = _series(3)
    args = bench.parse_args(["--epochs", "1", "--hidden", "8", "--threshold-holdout", "0.25"])
    from gpvae import GPVAE

    seen: dict[str, list[int]] = {"fit": [], "scored": []}
    fit, scores = GPVAE.fit, GPVAE.anomaly_scores

    def spy_fit(self, X, times=None, *a, **k):  # type: ignore[no-untyped-def]
        seen["fit"].append(int(max(np.max(t) for t in times)))
        return fit(self, X, times, *a, **k)

    def spy_scores(self, X, times=None, *a, **k):  # type: ignore[no-untyped-def]
        seen["scored"].append(int(np.asarray(times)[0, 0]))
        return scores(self, X, times, *a, **k)

    monkeypatch.setattr(GPVAE, "fit", spy_fit)
    monkeypatch.setattr(GPVAE, "anomaly_scores", spy_scores)
    out = bench.RUNNERS["gpvae"](s, args, 20)
    assert seen["fit"] == [74]  # steps 0..74 of the 100 normal ones
    assert seen["scored"] == [75, 100]  # the held-back 25 steps, then the scored part
    assert 0.0 <= out["variants"][bench.CHOSEN]["false_alarm_rate"] <= 1.0


def test_the_dump_holds_the_fit_parts_own_scores_with_a_held_back_part(bench, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """--dump with --threshold-holdout saves the in-sample scores of the fit part (KEY_fit)
    beside the held-back part's (KEY_train) and the scored part's (KEY_test); without a
    held-back part there is no KEY_fit."""
    s = _series(3)
    base = ["--epochs", "1", "--hidden", "8", "--dump"]
    bench.RUNNERS["gpvae"](s, bench.parse_args([*base, str(tmp_path / "a"),
                                                "--threshold-holdout", "0.25"]), 20)  # fmt: skip
    with np.load(tmp_path / "a" / "SMAP_toy_gpvae.npz") as z:
        assert z["k5_fit"].shape == (75, 3)
        assert z["prior_fit"].shape == (75, 3)
        assert z["k5_train"].shape == (25, 3)
        assert z["k5_test"].shape == (300, 3)
        assert np.isfinite(z["k5_fit"]).all()
    bench.RUNNERS["gpvae"](s, bench.parse_args([*base, str(tmp_path / "b")]), 20)
    with np.load(tmp_path / "b" / "SMAP_toy_gpvae.npz") as z:
        assert "k5_fit" not in z
        assert z["k5_train"].shape == (100, 3)


def test_the_dump_reproduces_the_chosen_variants_step_score(bench, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The dump keeps the entry scores at full precision, so the chosen variant's step score
    rebuilt from it is the run's own (float32 dumps moved MSL T-8's VUS-PR by 1.6e-4)."""
    sys.path.insert(0, str(BENCH))
    try:
        cv = importlib.import_module("anomaly_channel_cv")
    finally:
        sys.path.remove(str(BENCH))
    s = _series(3)
    args = bench.parse_args(["--epochs", "1", "--hidden", "8", "--dump", str(tmp_path)])
    out = bench.RUNNERS["gpvae"](s, args, 20)
    dump = cv.load_dump(tmp_path / "SMAP_toy_gpvae.npz")
    assert dump["k5_test"].dtype == np.float64
    rebuilt = cv.candidate_score(dump, next(iter(cv.CANDIDATES)), args.far, args.samples)
    np.testing.assert_allclose(rebuilt, out["variants"][bench.CHOSEN]["score"], rtol=1e-12)


def test_a_recorded_run_is_found_so_a_rerun_skips_it(bench, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = bench.AnomalyResults(tmp_path / "r.json")
    assert not out.has("MSL", "C-1", "pca", "main")
    out.add({"dataset": "MSL", "series": "C-1", "method": "pca", "tag": "main", "vus_pr": 0.5})
    assert out.has("MSL", "C-1", "pca", "main")
    assert not out.has("MSL", "C-1", "pca", "other")
    assert bench.AnomalyResults(tmp_path / "r.json").has("MSL", "C-1", "pca", "main")


def test_tail_variants_pass_their_scale_and_combination(bench) -> None:  # type: ignore[no-untyped-def]
    ext = {"novelty": "extrapolate", "spread_quantile": 0.9}
    assert bench.scale_combine("k5ph_tailmax_s32_b512") == {
        "feature_scale": "tail",
        "combine": "max",
        **ext,
    }
    assert bench.scale_combine("k5ph_tailmaxcap_s32_b512") == {
        "feature_scale": "tail",
        "combine": "max",
        "novelty": "cap",
        "spread_quantile": 0.9,
    }
    assert bench.scale_combine("k5ph_tailmaxcap95_s32_b512") == {
        "feature_scale": "tail",
        "combine": "max",
        "novelty": "cap",
        "spread_quantile": 0.95,
    }
    assert bench.scale_combine("k5ph_tail_s32_b512") == {
        "feature_scale": "tail",
        "combine": "sum",
        **ext,
    }
    assert bench.scale_combine("k5ph_norm_s32_b512") == {
        "feature_scale": "spread",
        "combine": "sum",
        **ext,
    }
    assert bench.scale_combine("c8_norm_s32_b512") == {
        "feature_scale": "spread",
        "combine": "sum",
        **ext,
    }
    names = (
        "k5ph_norm_s32_b512,k5ph_tail_s32_b512,k5ph_tailmax_s32_b512,k5ph_tailmaxcap_s32_b512,"
        "k5ph_tailmaxcap95_s32_b512"
    )
    args = bench.parse_args(["--epochs", "1", "--hidden", "8", "--variants", names])
    out = bench.RUNNERS["gpvae"](_series(3), args, 20)["variants"]
    scores = [out[v]["score"] for v in names.split(",")]
    # three different step scores from the same entry scores
    assert not np.allclose(scores[0], scores[1])
    assert not np.allclose(scores[1], scores[2])
    # the novelty cap acts on the alarm only: the same step score
    np.testing.assert_array_equal(scores[2], scores[3])
    # so does the spread's quantile
    np.testing.assert_array_equal(scores[3], scores[4])


def test_the_model_options_reach_the_fit_and_the_fitted_kernel_is_recorded(
    bench, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """--kernel, --lengthscale and --beta set gpvae's model (the VAE keeps its white kernel
    and takes only beta); the record holds the trained kernel's hyper-parameters, one per
    latent channel and term, as the fitted model's kernels hold them."""
    s = _series(3)
    args = bench.parse_args(["--epochs", "1", "--hidden", "8", "--latent-dim", "2",
                             "--kernel", "matern12+white", "--lengthscale", "7",
                             "--beta", "0.5"])  # fmt: skip
    est = bench.new_gpvae(args)
    assert (est.kernel, est.lengthscale, est.beta) == ("matern12+white", 7.0, 0.5)
    vae = bench.new_gpvae(args, white=True)
    assert (vae.kernel, vae.lengthscale, vae.beta) == ("white", None, 0.5)
    made = []
    build = bench.new_gpvae
    monkeypatch.setattr(bench, "new_gpvae", lambda *a, **k: made.append(build(*a, **k)) or made[-1])
    out = bench.RUNNERS["gpvae"](s, args, 20)
    fitted = out["kernel_fitted"]
    assert set(fitted) == {"0.lengthscale", "0.variance", "1.variance"}
    channels = made[0].model_.prior.kernels  # each channel's Sum(Matern12, White)
    for key, term, attr in (("0.lengthscale", 0, "lengthscale"), ("0.variance", 0, "variance"),
                            ("1.variance", 1, "variance")):  # fmt: skip
        want = [float(getattr(k.terms[term], attr).detach()) for k in channels]
        assert fitted[key] == pytest.approx(want, rel=1e-12)
    assert fitted["0.lengthscale"] != pytest.approx([7.0, 7.0], rel=1e-6)  # trained
    assert np.isfinite(out["val_score_best"])
    white = bench.RUNNERS["vae"](s, args, 20)["kernel_fitted"]
    assert set(white) == {"0.variance"}
    assert len(white["0.variance"]) == 2
    # one Matern kernel per channel: packed into the prior's (L,) tensors, still recorded
    made.clear()
    args = bench.parse_args(["--epochs", "1", "--hidden", "8", "--latent-dim", "2",
                             "--kernel", "matern32"])  # fmt: skip
    packed = bench.RUNNERS["gpvae"](s, args, 20)["kernel_fitted"]
    assert made[0].model_.prior.packed is not None
    assert set(packed) == {"0.lengthscale", "0.variance"}
    want = [float(k.lengthscale.detach()) for k in made[0].model_.prior.kernels]
    assert packed["0.lengthscale"] == pytest.approx(want, rel=1e-12)


def test_lengthscale_per_channel_starts_each_latent_channel(bench) -> None:  # type: ignore[no-untyped-def]
    """--lengthscale 3,6,12,24 gives each latent channel its initial lengthscale; the model is
    the one the session-33 records ran (the benchmark then handed GPVAE one named kernel per
    channel: the same weights and hyper-parameters); the VAE ignores it; a count other than
    --latent-dim, or a bad value, stops the run before anything is fitted."""
    import torch

    from gpvae import GPVAE
    from gpvae.kernels import build_kernel

    args = bench.parse_args(["--latent-dim", "4", "--lengthscale", "3,6,12,24", "--hidden", "8"])
    assert args.lengthscale == [3.0, 6.0, 12.0, 24.0]
    assert bench.run_config(args)["lengthscale"] == [3.0, 6.0, 12.0, 24.0]
    assert bench.method_config(bench.run_config(args), "vae")["lengthscale"] is None
    ours = bench.new_gpvae(args)._build_model(1)
    assert [float(k.lengthscale.detach()) for k in ours.prior.kernels] == [3.0, 6.0, 12.0, 24.0]
    kernels = [build_kernel("matern32", v) for v in (3.0, 6.0, 12.0, 24.0)]
    before = GPVAE(latent_dim=4, kernel=kernels, hidden=(8, 8), lr=args.lr, beta=args.beta,
                   seed=args.seed)._build_model(1)  # fmt: skip
    a, b = ours.state_dict(), before.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert bench.new_gpvae(args, white=True).lengthscale is None
    assert bench.parse_args(["--lengthscale", "16"]).lengthscale == 16.0
    for bad in (["--latent-dim", "4", "--lengthscale", "3,6"], ["--lengthscale", "3,x"],
                ["--lengthscale", "3,-6"]):  # fmt: skip
        with pytest.raises(SystemExit):
            bench.parse_args(bad)


def test_a_vae_record_names_the_white_kernel_it_ran(bench) -> None:  # type: ignore[no-untyped-def]
    config = {"kernel": "matern32", "lengthscale": 5.0, "beta": 0.5}
    assert bench.method_config(config, "vae") == {"kernel": "white", "lengthscale": None,
                                                  "beta": 0.5}  # fmt: skip
    assert bench.method_config(config, "gpvae") == config
    assert config["kernel"] == "matern32"  # the run's own configuration is left as it was
    # --kernel-lr: gpvae's, recorded only when given; the VAE has no kernel to learn
    args = bench.parse_args(["--kernel-lr", "0.1", "--hidden", "8"])
    assert bench.new_gpvae(args).kernel_lr == 0.1
    assert bench.new_gpvae(args, white=True).kernel_lr is None
    assert bench.run_config(args)["kernel_lr"] == 0.1
    assert "kernel_lr" not in bench.method_config(bench.run_config(args), "vae")
    assert "kernel_lr" not in bench.run_config(bench.parse_args([]))
    assert bench.new_gpvae(bench.parse_args([])).kernel_lr is None


def test_the_records_config_holds_the_epoch_cap_and_the_seed(bench) -> None:  # type: ignore[no-untyped-def]
    config = bench.run_config(bench.parse_args(["--epochs", "100", "--seed", "2"]))
    assert config["epochs"] == 100
    assert config["seed"] == 2
    assert config["patience"] == 5
    assert bench.run_config(bench.parse_args([]))["seed"] == 0


def test_keep_best_stops_as_tsb_ad_does_and_keeps_the_best_weights(bench):  # type: ignore[no-untyped-def]
    import torch

    model = torch.nn.Linear(2, 1)
    stop = bench.KeepBest(patience=2)
    # epoch 3 improves by less than delta (1e-4): not an improvement, so epochs 3 and 4 are
    # the two epochs without one and the loop stops after epoch 4
    losses = [1.0, 0.5, 0.49995, 0.6]
    weights = []
    for loss in losses:
        with torch.no_grad():
            model.weight.fill_(loss)
        weights.append(model.weight.clone())
        assert not stop.early_stop
        stop(loss, model)
    assert stop.early_stop
    assert stop.summary() == {"epochs_run": 4, "best_epoch": 2, "val_score_best": 0.5}
    stop.restore(model)
    assert torch.equal(model.weight, weights[1])


def test_keep_best_needs_a_positive_patience(bench):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="patience"):
        bench.KeepBest(patience=0)


def test_a_latent_variant_appends_the_latent_channels_as_features(bench, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``BASE+latP``: the base's entry scores with the L latent channels' scores of
    ``latent_nlpd(lags=P)`` after them, on the base's scale and combination."""
    base = "k5ph_tailmaxcap95_s32_b512"
    assert bench.split_latent(base) == (base, None, False)
    assert bench.split_latent(base + "+lat8") == (base, 8, False)
    assert bench.split_latent(base + "+latsum0") == (base, 0, True)
    assert bench.variant(base + "+lat8") == bench.variant(base)
    assert bench.scale_combine(base + "+lat0") == bench.scale_combine(base)
    for bad in ("nope+lat8", base + "+latx", base + "+latsum"):
        with pytest.raises(ValueError, match="variant"):
            bench.split_latent(bad)
    import gpvae.estimator.anomaly as ea

    seen, lags = [], []
    real_profile, real_entries = ea.profile_from_entries, ea.entry_scores

    def profile(entries, *a, **k):  # type: ignore[no-untyped-def]
        seen.append(entries[0].shape[1])
        return real_profile(entries, *a, **k)

    def entries(*a, **k):  # type: ignore[no-untyped-def]
        if k.get("latent_lags") is not None:
            lags.append(k["latent_lags"])
        return real_entries(*a, **k)

    monkeypatch.setattr(ea, "profile_from_entries", profile)
    monkeypatch.setattr(ea, "entry_scores", entries)
    names = f"{base},{base}+lat0,{base}+lat8,{base}+latsum8"
    args = bench.parse_args(["--epochs", "1", "--hidden", "8", "--latent-dim", "2",
                             "--variants", names])  # fmt: skip
    out = bench.RUNNERS["gpvae"](_series(3), args, 20)
    assert sorted(set(lags)) == [0, 8]  # each lag's scores once per part
    assert {"score_seconds_lat0", "score_seconds_lat8"} <= set(out)
    assert set(seen) == {3, 4, 5}  # D = 3 features, 3 + L = 5, 3 + 1 summed
    scores = [out["variants"][v]["score"] for v in names.split(",")]
    assert all(np.isfinite(s).all() for s in scores)
    assert not np.allclose(scores[0], scores[2])


def _rec(series: str, model: str, seed: int, val: float, tag: str = "", **config):  # type: ignore[no-untyped-def]
    cfg = {"seed": seed, "epochs": 100, "latent_dim": 4, "hidden": 64, "beta": 1.0,
           "kernel": "matern32" if model == "gpvae" else "white", "lengthscale": None,
           "patience": 5, "lr": 3e-3, **config}  # fmt: skip
    return {"dataset": "SMAP", "series": series, "method": f"{model}/v", "val_score_best": val,
            "tag": tag or f"p{seed}", "config": cfg}  # fmt: skip


def test_the_kept_run_of_a_restart_group_is_refit_with_its_seed_and_cap(bench) -> None:  # type: ignore[no-untyped-def]
    recs = [_rec("A", "gpvae", s, v) for s, v in zip(range(6), (3, 1, 2, 5, 6, 4))]
    recs += [_rec("A", "vae", s, v) for s, v in zip(range(6), (1, 2, 3, 9, 8, 7))]
    # seed 5's cap-200 refit takes its run's place (and now the group's lowest)
    recs.append(_rec("A", "vae", 4, 0.5, tag="p4_cap200", epochs=200))
    recs.append(_rec("B", "gpvae", 0, 1.0))  # seeds 1, 2 missing: left out
    recs.append(_rec("A", "gpvae", 1, 0.1, tag="q1"))  # another prefix: ignored
    g0 = bench.kept_runs(recs, "p", 3, 0)
    assert set(g0) == {("SMAP", "A", "gpvae"), ("SMAP", "A", "vae")}
    assert g0[("SMAP", "A", "gpvae")]["config"]["seed"] == 1
    assert g0[("SMAP", "A", "vae")]["config"]["seed"] == 0
    g1 = bench.kept_runs(recs, "p", 3, 1)
    assert g1[("SMAP", "A", "gpvae")]["config"]["seed"] == 5
    assert g1[("SMAP", "A", "vae")]["config"] == {**recs[0]["config"], "seed": 4, "epochs": 200,
                                                   "kernel": "white"}  # fmt: skip
    args = bench.parse_args(["--kernel", "matern32", "--epochs", "40", "--seed", "9"])
    new = bench.restart_args(args, "vae", g1[("SMAP", "A", "vae")])
    assert (new.seed, new.epochs, args.seed, args.epochs) == (4, 200, 9, 40)
    with pytest.raises(ValueError, match="hidden"):
        bench.restart_args(bench.parse_args(["--hidden", "32"]), "gpvae", recs[0])
    # a kept run without kernel_lr in its config ran the library's rate
    with pytest.raises(ValueError, match="kernel_lr"):
        bench.restart_args(bench.parse_args(["--kernel-lr", "0.1"]), "gpvae", recs[0])


def test_a_block_variant_scores_with_runs_of_hidden_steps(bench, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``BASE@bB``: the base's variant with the held-out entries of ``entry_scores(block=B)``
    (B = 1: the base itself)."""
    base = "k5ph_tailmaxcap95_s32_b512"
    assert bench.split_block(base) == (base, 1)
    assert bench.split_block(base + "@b8") == (base, 8)
    assert bench.variant(base + "@b8") == bench.variant(base)
    assert bench.scale_combine(base + "@b8") == bench.scale_combine(base)
    assert bench.held_key(5, False, 8) == "k5b8"
    assert bench.held_key(8, True) == "c8"
    for bad in (base + "@b0", base + "@bx"):
        with pytest.raises(ValueError, match="variant"):
            bench.variant(bad)
    import gpvae.estimator.anomaly as ea

    blocks = []
    real_entries = ea.entry_scores

    def entries(*a, **k):  # type: ignore[no-untyped-def]
        blocks.append(k.get("block", 1))
        return real_entries(*a, **k)

    monkeypatch.setattr(ea, "entry_scores", entries)
    names = f"{base},{base}@b1,{base}@b8"
    args = bench.parse_args(["--epochs", "1", "--hidden", "8", "--variants", names])
    out = bench.RUNNERS["gpvae"](_series(3), args, 20)
    assert blocks.count(8) == 2  # the normal part and the scored part, once each
    assert {"score_seconds_k5", "score_seconds_k5b8"} <= set(out)
    s = [out["variants"][v]["score"] for v in names.split(",")]
    np.testing.assert_array_equal(s[0], s[1])
    assert np.isfinite(s[2]).all()
    assert not np.allclose(s[0], s[2])


def test_a_prior_variant_appends_the_prior_alone_scores_as_features(bench, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``BASE+prior``: the base's entry scores with the prior-alone entry scores of the same
    fit after them (D more features, each on its own tail scale, combined as the base
    combines); a held-out base with no prior weight gets the prior's scores too."""
    base, held = "k5ph_tailmaxcap95_s32_b512", "k5_tailmaxcap95_s32_b512"
    assert bench.split_prior(base) == (base, False)
    assert bench.split_prior(base + "+prior") == (base, True)
    assert bench.split_prior(base + "+prior+lat8@b8") == (base + "+lat8", True)
    assert bench.split_latent(base + "+prior+lat8") == (base, 8, False)
    assert bench.variant(held + "+prior") == bench.variant(held)
    assert bench.variant(held)[4] == 0.0  # the held-out part alone
    assert bench.scale_combine(held + "+prior") == bench.scale_combine(base)
    for bad in (base + "+prior+prior", base + "+priorx", base + "+lat8+prior"):
        with pytest.raises(ValueError, match="variant"):
            bench.split_latent(bad)
    import gpvae.estimator.anomaly as ea

    seen, priors = [], []
    real_profile, real_entries = ea.profile_from_entries, ea.entry_scores

    def profile(entries, *a, **k):  # type: ignore[no-untyped-def]
        seen.append(entries[0].shape[1])
        return real_profile(entries, *a, **k)

    def entries(*a, **k):  # type: ignore[no-untyped-def]
        priors.append(bool(k.get("prior")))
        return real_entries(*a, **k)

    monkeypatch.setattr(ea, "profile_from_entries", profile)
    monkeypatch.setattr(ea, "entry_scores", entries)
    args = bench.parse_args(["--epochs", "1", "--hidden", "8", "--latent-dim", "2",
                             "--variants", f"{held},{held}+prior"])  # fmt: skip
    out = bench.RUNNERS["gpvae"](_series(3), args, 20)
    assert sum(priors) == 2  # the prior's scores once per part (normal, scored)
    assert {"score_seconds_prior", "threshold_seconds_prior"} <= set(out)
    assert set(seen) == {3, 6}  # D = 3 features; 3 held-out + 3 prior
    plain, both = (out["variants"][v]["score"] for v in (held, held + "+prior"))
    assert np.isfinite(plain).all()
    assert np.isfinite(both).all()
    assert not np.allclose(plain, both)


def test_the_neighbour_mean_leaves_the_step_out_and_skips_missing_entries(bench) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    p = rng.standard_normal((30, 2))
    p[[3, 4, 17], 0] = np.nan
    p[:, 1] = np.nan
    p[10, 1] = 2.0
    got = bench.neighbour_mean(p, 3)
    for n in range(30):
        for d in range(2):
            near = [p[j, d] for j in range(max(0, n - 3), min(30, n + 4)) if j != n]
            near = [x for x in near if np.isfinite(x)]
            want = np.mean(near) if near else np.nan
            np.testing.assert_allclose(got[n, d], want, rtol=1e-12, equal_nan=True)


def test_the_gate_puts_the_prior_part_in_place_of_the_held_out_part_inside_an_anomaly(
    bench,
) -> None:  # type: ignore[no-untyped-def]
    """Away from the sustained rise of the prior part the entries are the base's
    ``H + w r P``; at the steps whose neighbours lie in it, H gives way to P on H's scale
    (median_H + r (P - median_P), medians of the normal part)."""
    rng = np.random.default_rng(2)
    h_tr, p_tr = rng.gamma(2.0, size=(500, 1)), 3.0 + rng.gamma(2.0, size=(500, 1))
    h_te, p_te = rng.gamma(2.0, size=(200, 1)), 3.0 + rng.uniform(0.5, 2.5, size=(200, 1))
    p_te[100:140] += 30.0  # sustained: the neighbours are anomalous too
    r = np.array([0.5])
    e_tr, e_te = bench.gate_heldout((h_tr, h_te), (p_tr, p_te), 0.5, r, 4, 0.99)
    base_tr, base_te = h_tr + 0.25 * p_tr, h_te + 0.25 * p_te
    assert 0 < (e_tr != base_tr).sum() <= 10  # about 1% of the normal steps
    inside = np.arange(105, 135)
    stand_in = np.median(h_tr) + 0.5 * (p_te - np.median(p_tr)) + 0.25 * p_te
    np.testing.assert_allclose(e_te[inside], stand_in[inside])
    away = np.r_[0:90, 150:200]
    np.testing.assert_allclose(e_te[away], base_te[away])
    assert e_te[inside].min() > base_te[inside].max() - 30.0 * 0.25  # the rise carried by P
    for bad in ("k5ph_norm_s32_b512+gate", "k5ph_norm_s32_b512+gate0", "x+lat8+gate8"):
        with pytest.raises(ValueError, match="variant"):
            bench.split_gate(bad)
    assert bench.split_gate("k5ph_norm_s32_b512+gate8+lat0@b8") == ("k5ph_norm_s32_b512+lat0", 8)
    assert bench.variant("k5ph_norm_s32_b512+gate8") == bench.variant("k5ph_norm_s32_b512")


def test_a_gated_variant_runs_on_the_same_fit(bench) -> None:  # type: ignore[no-untyped-def]
    base = "k5ph_tailmaxcap95_s32_b512"
    args = bench.parse_args(["--epochs", "1", "--hidden", "8", "--latent-dim", "2",
                             "--variants", f"{base},{base}+gate8"])  # fmt: skip
    out = bench.RUNNERS["gpvae"](_series(3), args, 20)
    plain, gated = (out["variants"][v]["score"] for v in (base, base + "+gate8"))
    assert np.isfinite(gated).all()
    assert not np.allclose(plain, gated)


@pytest.mark.parametrize("method", ["gpvae", "vae"])
def test_the_likelihood_and_encoder_options_reach_both_models_fits(
    bench, method, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """--likelihood and --encoder set gpvae's and the VAE's model alike; the fitted model
    holds them (a Student-t observation model, a temporal convolution), the records'
    config names them, and every step is scored."""
    from gpvae.likelihoods.student_t import StudentT
    from gpvae.nets.conv import ConvEncoder

    s = _series(3)
    args = bench.parse_args(["--epochs", "2", "--hidden", "8", "--likelihood", "student_t",
                             "--encoder", "conv"])  # fmt: skip
    made = []
    build = bench.new_gpvae
    monkeypatch.setattr(bench, "new_gpvae", lambda *a, **k: made.append(build(*a, **k)) or made[-1])
    out = bench.RUNNERS[method](s, args, 20)
    model = made[0].model_
    assert isinstance(model.likelihood, StudentT)
    assert isinstance(model.encoder, ConvEncoder)
    assert made[0].kernel == ("white" if method == "vae" else "matern32")
    score = out["variants"][bench.CHOSEN]["score"]
    assert score.shape == (300,)
    assert np.isfinite(score).all()
    config = bench.method_config(bench.run_config(args), method)
    assert (config["likelihood"], config["encoder"]) == ("student_t", "conv")
    default = bench.run_config(bench.parse_args([]))
    assert (default["likelihood"], default["encoder"]) == ("gaussian", "mlp")


def test_a_restart_of_a_run_recorded_before_the_model_options_takes_their_defaults(bench) -> None:  # type: ignore[no-untyped-def]
    """Records written before --likelihood and --encoder existed ran the Gaussian and the
    MLP: a refit with those matches them, one with another likelihood or encoder does not."""
    old = _rec("A", "gpvae", 1, 0.5)
    assert "likelihood" not in old["config"]
    assert "encoder" not in old["config"]
    args = bench.parse_args(["--kernel", "matern32", "--hidden", "64", "--beta", "1"])
    assert bench.restart_args(args, "gpvae", old).seed == 1
    for flag, value in (("--likelihood", "student_t"), ("--encoder", "conv")):
        with pytest.raises(ValueError, match=flag[2:]):
            bench.restart_args(bench.parse_args([flag, value]), "gpvae", old)


@pytest.mark.parametrize("flag", ["--folds", "--smooth"])
def test_folds_and_smooth_are_refused_as_the_variant_name_sets_them(bench, flag, capsys) -> None:  # type: ignore[no-untyped-def]
    """The score variant's name fixes its folds and smoothing: the options that used to be
    accepted and ignored are refused, saying so."""
    with pytest.raises(SystemExit):
        bench.parse_args([flag, "3"])
    err = capsys.readouterr().err
    assert f"{flag}: expected none (the score variant's name sets" in err
    assert f"found {flag} 3" in err
    assert not hasattr(bench.parse_args([]), "folds")


@pytest.fixture
def speed(bench):  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("anomaly_speed")
    finally:
        sys.path.remove(str(BENCH))


class _TimedFake:
    """An estimator with nothing to fit, for the timing script's bookkeeping."""

    history_ = (0.0,)

    def fit(self, *a, **k):  # type: ignore[no-untyped-def]
        return self

    fit_threshold = anomaly_scores = fit


def test_anomaly_speed_has_its_own_options_and_writes_only_out(  # type: ignore[no-untyped-def]
    bench, speed, tmp_path, monkeypatch, capsys
) -> None:
    """anomaly_speed.py's help is its own (with --channels, without anomaly.py's --merge);
    --out is where the records go, and the docs' region (with the command as run, flags
    included) is written only for the default --out or a --doc."""
    with pytest.raises(SystemExit):
        speed.parse_args(["--help"])
    help_text = capsys.readouterr().out
    assert "--channels" in help_text
    assert "--merge" not in help_text
    assert "Time of gpvae's anomaly workflow" in help_text
    with pytest.raises(SystemExit):
        speed.parse_args(["--merge", "x.json"])
    capsys.readouterr()

    s = _series(3)
    monkeypatch.setattr(bench, "load", lambda *a: s)
    monkeypatch.setattr(bench, "new_gpvae", lambda args: _TimedFake())
    committed, doc = tmp_path / "anomaly_speed.json", tmp_path / "benchmarks.md"
    region = "<!-- anomaly-speed -->\nold\n<!-- /anomaly-speed -->\n"
    committed.write_text("[]\n")
    doc.write_text(region)
    monkeypatch.setattr(speed, "OUT", committed)
    monkeypatch.setattr(speed, "DOC", doc)
    mine = tmp_path / "mine.json"
    argv = ["--channels", "toy", "--epochs", "1", "--samples", "2"]
    assert speed.main([*argv, "--out", str(mine)]) == 0
    assert [r["channel"] for r in json.loads(mine.read_text())] == ["toy"]
    assert committed.read_text() == "[]\n"
    assert doc.read_text() == region
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {mine}"

    assert speed.main(argv) == 0  # the default --out: its records and the docs' region
    assert len(json.loads(committed.read_text())) == 1
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {committed} and {doc}"
    command = ".venv-bench/bin/python benchmarks/anomaly_speed.py " + " ".join(argv)
    assert f"Command: `env PYTHONPATH=src OMP_NUM_THREADS=1 {command}`" in doc.read_text()


def test_anomaly_speed_doc_only_rebuilds_the_region_a_run_wrote(  # type: ignore[no-untyped-def]
    bench, speed, tmp_path, monkeypatch, capsys
) -> None:
    """--doc-only did not exist (the region's creation time was in no record): a run now
    records its creation time and command with its timings, and --doc-only rebuilds the
    region from them byte for byte, timing nothing and leaving the records as they are."""
    s = _series(3)
    monkeypatch.setattr(bench, "load", lambda *a: s)
    monkeypatch.setattr(bench, "new_gpvae", lambda args: _TimedFake())
    out, doc = tmp_path / "anomaly_speed.json", tmp_path / "benchmarks.md"
    doc.write_text("head\n<!-- anomaly-speed -->\nold\n<!-- /anomaly-speed -->\ntail\n")
    monkeypatch.setattr(speed, "OUT", out)
    monkeypatch.setattr(speed, "DOC", doc)
    assert speed.main(["--channels", "toy,toy", "--epochs", "1", "--samples", "2"]) == 0
    written, records = doc.read_text(), out.read_text()
    for rec in json.loads(records):  # the run's, in every record
        assert f"**Speed** ({rec['created']}; one thread" in written
        assert f"\nCommand: `{rec['command']}`\n" in written

    def no_timing(args):  # type: ignore[no-untyped-def]
        raise AssertionError("--doc-only timed a fit")

    monkeypatch.setattr(bench, "new_gpvae", no_timing)
    doc.write_text(written.replace("| toy |", "| changed |"))
    capsys.readouterr()
    assert speed.main(["--doc-only"]) == 0
    assert doc.read_text() == written
    assert out.read_text() == records
    assert capsys.readouterr().out.splitlines() == [f"wrote {doc}"]
    mine = tmp_path / "mine.md"
    mine.write_text("<!-- anomaly-speed -->\n<!-- /anomaly-speed -->\n")
    assert speed.main(["--doc-only", "--out", str(out), "--doc", str(mine)]) == 0
    assert mine.read_text() == written[len("head\n") : -len("tail\n")]


def test_anomaly_speed_doc_only_rebuilds_the_region_from_the_records(  # type: ignore[no-untyped-def]
    speed, tmp_path, capsys
) -> None:
    """The committed records hold their creation time and command (rerun in session 40):
    --doc-only rebuilds the docs' region from them alone, exactly as it stands; records
    without them (as committed before) are refused, naming both, and nothing is written."""
    docs = (BENCH.parent / "docs" / "benchmarks.md").read_text()
    region = docs.split("<!-- anomaly-speed -->\n", 1)[1].split("\n<!-- /anomaly-speed -->")[0]
    committed = json.loads((BENCH / "results" / "anomaly_speed.json").read_text())
    assert all("created" in r and "command" in r for r in committed)
    assert speed.render(committed) == region
    out, copy = tmp_path / "anomaly_speed.json", tmp_path / "benchmarks.md"
    out.write_text(json.dumps(committed))
    copy.write_text(docs.replace(region, "stale"))
    argv = shlex.split(committed[0]["command"])
    argv = argv[argv.index("benchmarks/anomaly_speed.py") + 1 :]
    assert speed.main([*argv, "--doc-only", "--out", str(out), "--doc", str(copy)]) == 0
    assert copy.read_text() == docs
    bare = [{k: v for k, v in r.items() if k not in ("created", "command")} for r in committed]
    out.write_text(json.dumps(bare))
    copy.write_text(docs)
    capsys.readouterr()
    assert speed.main([*argv, "--doc-only", "--out", str(out), "--doc", str(copy)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("--doc-only: expected records with the run's creation time and command")
    assert "found records without 'created', 'command' in " in err
    assert copy.read_text() == docs
    with pytest.raises(SystemExit):  # a --doc-only without a region to write
        speed.parse_args(["--doc-only", "--out", str(out)])
    assert (
        "--doc-only: expected --doc with an --out other than the default" in capsys.readouterr().err
    )
