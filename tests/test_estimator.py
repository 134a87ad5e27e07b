"""gpvae.GPVAE: input forms, observed entries untouched, save/load, resume, bad input.

Small, seeded models (a few epochs) so that the file runs in seconds; quality on synthetic
GP-VAE data (calibration, timestamps, forecasting) is in test_estimator_quality.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import Tensor, nn

import gpvae
import gpvae.estimator.anomaly as anomaly_module
import gpvae.estimator.estimator
import gpvae.io
import gpvae.training.session
from gpvae import GPVAE, settings
from gpvae.data import to_series_set
from gpvae.errors import (
    GPVAEError,
    InputTypeError,
    ModelFileError,
    NotFittedError,
    ShapeError,
    ValidationError,
)
from gpvae.estimator.context import KEPT_PER_ENTRY
from gpvae.kernels import HarmonicPeriodic, Matern12, Matern32, Matern52
from gpvae.model import GPVAEModel

FAST = {"latent_dim": 2, "hidden": (16,), "epochs": 3, "batch_size": 8, "progress": False}


def smooth_series(
    n: int, T: int, D: int = 3, seed: int = 0, missing: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    """(n, T, D) noisy sinusoids with NaN gaps, and the complete values."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)[None, :, None]
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    full = np.sin(t / 4 + phase) * np.linspace(1, 3, D) + 10.0
    full = full + 0.1 * rng.standard_normal((n, T, D))
    X = np.where(rng.random(full.shape) < missing, np.nan, full)
    X[:, 0, 0] = full[:, 0, 0]  # every series has an observed entry
    return X, full


def ragged_series(lengths: list[int], D: int = 2, seed: int = 0) -> tuple[list, list]:
    """Ragged series with irregular, unsorted times."""
    rng = np.random.default_rng(seed)
    X, times = [], []
    for T in lengths:
        t = np.cumsum(rng.uniform(0.5, 1.5, size=T))
        x = np.sin(t[:, None] / 3 + rng.uniform(0, 6)) * np.arange(1, D + 1)
        x = x + 0.05 * rng.standard_normal((T, D))
        x[rng.random((T, D)) < 0.3] = np.nan
        x[0, 0] = 0.5
        perm = rng.permutation(T)
        X.append(x[perm])
        times.append(t[perm])
    return X, times


@pytest.fixture(scope="module")
def fitted() -> tuple[GPVAE, np.ndarray]:
    X, _ = smooth_series(16, 20)
    return GPVAE(**FAST).fit(X), X


@pytest.fixture(scope="module")
def fitted_ragged() -> tuple[GPVAE, list, list]:
    X, times = ragged_series([5, 12, 30, 200, 7, 64, 25, 150, 9, 40])
    return GPVAE(**FAST).fit(X, times), X, times


def long_frame(seed: int = 0) -> pd.DataFrame:
    X, _ = ragged_series([8, 15, 11], D=2, seed=seed)
    rows = []
    for i, x in enumerate(X):
        for k in range(len(x)):
            rows.append({"id": f"s{i}", "time": float(k * 2), "a": x[k, 0], "b": x[k, 1]})
    frame = pd.DataFrame(rows)
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # shuffled rows


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()


# ---------------------------------------------------------------- fit and impute


def test_fit_sets_fitted_attributes(fitted: tuple[GPVAE, np.ndarray]) -> None:
    est, _ = fitted
    assert isinstance(est.model_, GPVAEModel)
    assert est.num_features_ == 3
    assert est.feature_names_ == ["feature_0", "feature_1", "feature_2"]
    assert len(est.history_) == 3
    assert {"loss", "loglik", "kl", "val_score", "lr", "seconds"} <= set(est.history_[0])
    assert all(np.isfinite(h["val_score"]) for h in est.history_)
    assert est.scaler_.time_step_ == 1.0
    assert est.device_ == torch.device("cpu")
    assert isinstance(gpvae.GPVAE, type)


def test_impute_array_keeps_observed_entries_bit_for_bit(
    fitted: tuple[GPVAE, np.ndarray],
) -> None:
    est, X = fitted
    X32 = X.astype(np.float32)
    res = est.impute(X32, num_samples=20, return_samples=True)
    obs = ~np.isnan(X32)
    for out in (res.mean, res.lower, res.upper):
        assert out.dtype == np.float32
        assert out.shape == X.shape
        assert same_bits(out[obs], X32[obs])
        assert np.isfinite(out).all()
    assert res.samples.shape == (20, *X.shape)
    assert same_bits(res.samples[:, obs], np.broadcast_to(X32[obs], (20, int(obs.sum()))))
    assert np.array_equal(res.observed, obs)
    missing = ~obs
    assert (res.lower[missing] < res.upper[missing]).all()
    assert res.quantiles == (0.05, 0.95)


def test_impute_ragged_keeps_input_order_and_observed_values(
    fitted_ragged: tuple[GPVAE, list, list],
) -> None:
    est, X, times = fitted_ragged
    res = est.impute(X, times, num_samples=10)
    assert isinstance(res.mean, list)
    assert len(res.mean) == len(X)
    for x, m, lo, up, o in zip(X, res.mean, res.lower, res.upper, res.observed):
        obs = ~np.isnan(x)
        assert m.shape == x.shape
        assert np.array_equal(o, obs)
        for out in (m, lo, up):
            assert same_bits(out[obs], x[obs])
            assert np.isfinite(out).all()


@pytest.mark.parametrize("dense_max", [256, 20], ids=["dense-route", "markov-route"])
def test_ragged_imputation_is_the_same_batched_or_one_by_one(
    fitted_ragged: tuple[GPVAE, list, list], dense_max: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lengths 5..200 in batches of 8 vs each alone: each series' draws come from its own
    generator (seeded by the estimator seed and the series' content), so the imputations
    agree to float32 round-off, on both sampling routes (dense per series; simulation
    smoother for series longer than ``DENSE_MAX_POINTS``)."""
    monkeypatch.setattr(settings, "DENSE_MAX_POINTS", dense_max)
    est, X, times = fitted_ragged
    together = est.impute(X, times, num_samples=30)
    for i, (x, t) in enumerate(zip(X, times)):
        alone = est.impute([x], [t], num_samples=30)
        for key in ("mean", "lower", "upper"):
            np.testing.assert_allclose(
                getattr(alone, key)[0], getattr(together, key)[i], rtol=1e-5, atol=1e-5
            )
    mean_all, _ = est.latent(X, times)
    mean_one, _ = est.latent([X[3]], [times[3]])
    np.testing.assert_allclose(mean_one[0], mean_all[3], rtol=1e-5, atol=1e-6)


def test_ragged_imputation_batches_series_of_one_length_together(
    fitted_ragged: tuple[GPVAE, list, list], monkeypatch: pytest.MonkeyPatch
) -> None:
    """impute batched ragged series in their order, so a batch mixed lengths and the dense
    draws factorised one posterior per length of each batch (10,000 series of 5-24 steps:
    5,081 factorisations where 313 batches need 313; 2.2x the array form's time, helper
    fixR): the series go longest first now, and the results stay in the input's order."""
    from gpvae.posteriors import structured_draws

    est = fitted_ragged[0]
    X, times = ragged_series([8, 12, 8, 12, 8, 12], seed=3)
    calls: list[int] = []
    real = structured_draws._dense_factors

    def counted(gp, prior, rows, T):  # type: ignore[no-untyped-def]
        calls.append(T)
        return real(gp, prior, rows, T)

    monkeypatch.setattr(structured_draws, "_dense_factors", counted)
    monkeypatch.setattr(est, "batch_size", 2)
    result = est.impute(X, times, num_samples=10)
    assert calls == [12, 12, 8, 8]  # batches (12, 12), (12, 8), (8, 8); 6 in input order
    for i, x in enumerate(X):  # the input's order and values
        assert result.mean[i].shape == x.shape
        seen = ~np.isnan(x)
        assert np.array_equal(result.mean[i][seen], x[seen])


def test_a_gru_encoder_imputes_a_series_alike_alone_or_batched() -> None:
    """The bidirectional GRU ran over a short series' padding in a batch of longer ones."""
    X, times = ragged_series([8, 40, 12, 30])
    est = GPVAE(**{**FAST, "epochs": 2}, encoder="gru").fit(X, times)
    alone = est.impute(X[:1], times[:1], num_samples=20)
    batched = est.impute(X[:2], times[:2], num_samples=20)
    np.testing.assert_allclose(batched.mean[0], alone.mean[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(batched.upper[0], alone.upper[0], rtol=1e-5, atol=1e-6)


def test_positional_encoders_warn_on_irregular_times() -> None:
    """encoder="conv" and "gru" read rows by position: gaps of 48 and 148 steps were read
    as one step without a word (audit A1 #6)."""
    import warnings

    X, _ = smooth_series(4, 20)
    gappy = np.tile(np.r_[0, 1, 2, 50, 51, 52, 200, np.arange(201, 214)].astype(float), (4, 1))
    for encoder in ("conv", "gru"):
        with pytest.warns(UserWarning, match=rf"^encoder: '{encoder}' reads .* by position") as w:
            GPVAE(**{**FAST, "epochs": 1}, encoder=encoder).fit(X, gappy)
        said = [x for x in w if str(x.message).startswith("encoder:")]
        assert len(said) == 1
        assert "in 4 of 4 series" in str(said[0].message)
        assert "up to 148 times, in series 0" in str(said[0].message)
        assert said[0].filename == __file__  # at the caller's line
    ragged, times = ragged_series([8, 40, 12, 30])  # irregular, but no gap of many steps
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GPVAE(**{**FAST, "epochs": 1}, encoder="conv").fit(X)  # a regular grid
        GPVAE(**{**FAST, "epochs": 1}, encoder="gru").fit(ragged, times)
        GPVAE(**{**FAST, "epochs": 1}, encoder="mlp").fit(X, gappy)  # reads the times


def test_impute_long_dataframe_gives_frames() -> None:
    frame = long_frame()
    est = GPVAE(**FAST).fit(frame)
    res = est.impute(frame, num_samples=10, return_samples=True)
    obs = frame[["a", "b"]].notna().to_numpy()
    for out in (res.mean, res.lower, res.upper):
        assert isinstance(out, pd.DataFrame)
        assert list(out.columns) == list(frame.columns)
        assert out.index.equals(frame.index)
        vals = out[["a", "b"]].to_numpy()
        assert same_bits(vals[obs], frame[["a", "b"]].to_numpy()[obs])
        assert np.isfinite(vals).all()
    assert res.observed[["a", "b"]].to_numpy().tolist() == obs.tolist()
    assert res.samples.shape == (10, len(frame), 2)
    combined = res.to_frame()
    assert list(combined.columns) == [*frame.columns, "a_lower", "b_lower", "a_upper", "b_upper"]
    assert np.array_equal(combined["a_lower"].to_numpy(), res.lower["a"].to_numpy())


def test_to_frame_refuses_input_columns_named_like_its_interval_columns() -> None:
    """An input holding 'a_lower' (an earlier to_frame(), imputed again with chosen
    feature columns) gave a frame with two 'a_lower' columns, without a word (audit S #11)."""
    frame = long_frame()
    est = GPVAE(**FAST).fit(frame)
    first = est.impute(frame, num_samples=5).to_frame()
    again = est.impute(to_series_set(first, feature_cols=["a", "b"]), num_samples=5)
    assert list(again.mean.columns) == list(first.columns)  # the results themselves stand
    with pytest.raises(ValidationError, match=r"to_frame: .* found \['a_lower', 'b_lower', 'a_u"):
        again.to_frame()


def test_wide_dataframe_and_dict_inputs() -> None:
    X, _ = smooth_series(1, 30, D=2)
    idx = pd.date_range("2024-01-01", periods=30, freq="2h")
    wide = pd.DataFrame(X[0], index=idx, columns=["x", "y"])
    est = GPVAE(**FAST).fit(wide)
    assert est.scaler_.time_step_ == pytest.approx(2.0)  # hours
    res = est.impute(wide, num_samples=5)
    assert res.mean.index.equals(wide.index)
    fc = est.forecast(wide, horizon=3, num_samples=5)
    assert fc.times.dtype.kind == "M"
    assert fc.times[0, 0] == np.datetime64("2024-01-03T12:00")
    assert list(fc.to_frame().columns) == ["x", "y", "x_lower", "y_lower", "x_upper", "y_upper"]
    # without times, 0, 1, 2, ... would be read as hours of a model whose step is 2 hours
    with pytest.raises(InputTypeError, match=r"times: expected the times of X .* 2 per step"):
        est.impute({"X": X}, num_samples=5)
    with pytest.raises(InputTypeError, match="times: expected the times of X"):
        est.forecast(X, horizon=2, num_samples=5)
    with pytest.warns(UserWarning, match="found numbers: they are read as hours since"):
        dict_res = est.impute({"X": X, "times": 2.0 * np.arange(30)}, num_samples=5)
    assert dict_res.mean.shape == X.shape
    stamps = np.asarray(idx, dtype="datetime64[ns]")
    np.testing.assert_allclose(est.impute(X, stamps, num_samples=5).mean[0], res.mean.to_numpy())


def test_impute_with_a_fitted_frame_rejects_other_feature_names() -> None:
    frame = long_frame()
    est = GPVAE(**FAST).fit(frame)
    with pytest.raises(ValidationError, match="X"):
        est.impute(frame.rename(columns={"b": "c"}))


# ---------------------------------------------------------------- other methods


def test_forecast_shapes_and_times(fitted: tuple[GPVAE, np.ndarray]) -> None:
    est, X = fitted
    fc = est.forecast(X, horizon=4, num_samples=10)
    assert fc.mean.shape == fc.lower.shape == fc.upper.shape == (16, 4, 3)
    assert np.array_equal(fc.times, np.tile(np.arange(20, 24.0), (16, 1)))
    assert (fc.lower <= fc.upper).all()
    explicit = est.forecast(X, future_times=[20.0, 21.0, 22.0, 23.0], num_samples=10)
    assert np.array_equal(explicit.times, fc.times)
    per_series = est.forecast(X, future_times=fc.times + 1, num_samples=10)
    assert per_series.mean.shape == (16, 4, 3)
    with pytest.raises(ValidationError, match="horizon"):
        est.forecast(X)
    with pytest.raises(GPVAEError, match="future_times"):
        est.forecast(X, future_times=[20.0, np.inf])


def test_forecast_long_frame_to_frame() -> None:
    frame = long_frame()
    est = GPVAE(**FAST).fit(frame)
    fc = est.forecast(frame, horizon=2, num_samples=5)
    out = fc.to_frame()
    assert list(out.columns) == ["id", "time", "a", "b", "a_lower", "b_lower", "a_upper", "b_upper"]
    assert sorted(out["id"]) == ["s0", "s0", "s1", "s1", "s2", "s2"]
    last = frame.groupby("id")["time"].max()
    for sid, rows in out.groupby("id"):
        assert rows["time"].tolist() == [last[sid] + 2.0, last[sid] + 4.0]


def test_sample_and_latent(fitted: tuple[GPVAE, np.ndarray]) -> None:
    est, X = fitted
    draws = est.sample(np.arange(15.0), num_samples=4)
    assert draws.shape == (4, 15, 3)
    assert np.isfinite(draws).all()
    assert abs(draws.mean() - np.nanmean(X)) < 2 * np.nanstd(X)  # original units
    mean, var = est.latent(X)
    assert mean.shape == var.shape == (16, 20, 2)
    assert (var > 0).all()
    with pytest.raises(ValidationError, match="times"):
        est.sample([1.0, 1.0])
    # the smooth signal: the same latent paths (same seed), decoded to E[y | z], without
    # the observation noise each step draws on its own
    t = np.arange(200.0)
    noisy, smooth = est.sample(t, 3), est.sample(t, 3, noise=False)
    rough = [float(np.mean(np.abs(np.diff(d, axis=1)))) for d in (noisy, smooth)]
    assert rough[1] < 0.5 * rough[0], rough
    spread = est.model_.likelihood.variance(est.model_.decode(torch.zeros(1, 1, 2))).sqrt()
    assert spread.shape[-1] == 3
    noise_sd = float(spread.mean()) * float(est.scaler_.std_.mean())
    assert np.abs(noisy - smooth).mean() > 0.3 * noise_sd
    with pytest.raises(InputTypeError, match="noise"):
        est.sample(t, 2, noise="no")  # type: ignore[arg-type]


def test_sample_takes_a_seed_for_other_draws(fitted: tuple[GPVAE, np.ndarray]) -> None:
    """sample gave the same series at every call, with no way to ask for others but to
    change the estimator's seed."""
    est, _ = fitted
    t = np.arange(12.0)
    default = est.sample(t, 2)
    assert np.array_equal(est.sample(t, 2, seed=None), default)  # the model's seed, as before
    assert np.array_equal(est.sample(t, 2, seed=est.seed), default)
    other = est.sample(t, 2, seed=est.seed + 1)
    assert not np.allclose(other, default)
    assert np.array_equal(est.sample(t, 2, seed=est.seed + 1), other)  # reproducible
    smooth = est.sample(t, 2, noise=False, seed=est.seed + 1)
    assert not np.allclose(smooth, est.sample(t, 2, noise=False))
    assert est.seed == 0  # the estimator's own seed is left alone
    with pytest.raises(InputTypeError, match=r"^seed: expected an integer"):
        est.sample(t, 2, seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"^seed: expected an integer >= 0"):
        est.sample(t, 2, seed=-1)
    with pytest.raises(ValidationError, match=r"^seed: expected an integer in \[0, 2\*\*63 - 1\]"):
        est.sample(t, 2, seed=2**63)


def test_requests_beyond_memory_fail_at_once_naming_the_argument(
    fitted: tuple[GPVAE, np.ndarray],
) -> None:
    """Absurd sizes raise a ValidationError before any allocation, not a MemoryError."""
    est, X = fitted
    huge = 10**13  # draws or steps: terabytes of values, beyond any machine here
    with pytest.raises(ValidationError, match=r"^horizon: .*GiB"):
        est.forecast(X, horizon=huge)
    # a forecast's draws cover the history: its refusal names X, says that the history's
    # length sets the cost (not the horizon) and gives the remedies (audit B3)
    with pytest.raises(ValidationError, match=r"^num_samples, X: .*GiB") as err:
        est.forecast(X, horizon=3, num_samples=huge)
    assert "(20 of history and 3 ahead)" in str(err.value)
    assert "the history's length (not with the horizon)" in str(err.value)
    assert "pass fewer num_samples, or only the recent history (X[-k:]" in str(err.value)
    with pytest.raises(ValidationError, match=r"^num_samples, X: .*GiB"):
        est.forecast(X, future_times=[30.0, 31.0], num_samples=huge)
    with pytest.raises(ValidationError, match=r"^num_samples: .*GiB"):
        est.impute(X, num_samples=huge)
    with pytest.raises(ValidationError, match=r"^num_samples: .*GiB"):
        est.anomaly_scores(X, num_samples=huge)
    with pytest.raises(ValidationError, match=r"^num_samples, times: .*GiB"):
        est.sample(np.arange(15.0), num_samples=huge)
    # sizes that fit still run, and the fitted model is untouched by the refusals
    assert est.forecast(X, horizon=2, num_samples=3).mean.shape == (16, 2, 3)


def test_draw_memory_estimate_counts_the_latent_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard counted 3-4 copies of the draws of y (2.4-3.2 KB per step at 100 draws, 2
    features): it let through requests that then used 7-9x more (a forecast of 60,000 steps,
    about 1.3 GiB measured, passed a 1 GiB limit). The measured cost per step is counted now."""
    from gpvae import arguments

    X = np.random.default_rng(0).standard_normal((1, 30, 2))
    est = GPVAE(latent_dim=2, epochs=1, hidden=(8,), progress=False).fit(X)
    monkeypatch.setattr(arguments, "physical_memory", lambda: 2**30)
    expected = (
        r"100 draws x 1 series x 60030 steps \(30 of history and 60000 ahead\) of 2 latent "
        r"channels and 2 features"
    )
    with pytest.raises(ValidationError, match=rf"^num_samples, horizon: .*{expected}, about 1\.34"):
        est.forecast(X, horizon=60_000)
    # impute draws in chunks: one chunk's working set and what is kept of all 100 draws
    # (their draws of y and a margin: 2 values per entry; 13 before the copies went); a
    # long series' smoother runs in passes of 8 draws here: 0.49 GiB (1.38 before them)
    monkeypatch.setattr(arguments, "physical_memory", lambda: 2**28)
    with pytest.raises(ValidationError, match=r"^num_samples: .*about 0\.49 GiB"):
        est.impute(np.random.default_rng(1).standard_normal((1, 60_000, 2)))
    monkeypatch.setattr(arguments, "physical_memory", lambda: 2**30)
    assert est.forecast(X, horizon=100).mean.shape == (1, 100, 2)  # small requests still run
    # forecasts of long paths go one series per batch (FORECAST_BATCH_POINTS): the guard
    # counts that batch, not batch_size series (12 BeijingAir stations were refused)
    monkeypatch.setattr(arguments, "physical_memory", lambda: 2**29)
    four = np.random.default_rng(2).standard_normal((4, 30, 2))
    assert est.forecast(four, horizon=12_000).mean.shape == (4, 12_000, 2)


def test_chunked_draw_memory_counts_one_chunk_working_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Imputation draws come in chunks of SAMPLE_CHUNK: the guard charged the working set of
    every draw, refusing 5,500 draws of one 5,000-step series (8 latent channels, 5
    features) as 24 GiB where about 3 GB were used. It charges one chunk's working set and
    what is kept of every draw now; draws made all at once are charged as before."""
    from gpvae import arguments

    X = np.random.default_rng(0).standard_normal((1, 30, 5))
    est = GPVAE(latent_dim=8, epochs=1, hidden=(8,), progress=False).fit(X)
    ctx = est._context("impute")
    monkeypatch.setattr(arguments, "physical_memory", lambda: 8 * 2**30)
    # 4 B x (88 x 8 x 26 + (4 x 8 + 10) x 32 + 10 x 5500) x 5000: the simulation smoother's
    # passes of 26 draws (2**20 latent points), the noise, z and decoding of a chunk of 32
    ctx.check_draws("num_samples", 5500, 1, 5000)
    # what is kept of each draw is its draws of y (2 values per entry with a margin; 13 were
    # counted before the quantiles' and the spread's copies went: 7.08 GiB where 1.49 are
    # used now, 3.21 before)
    monkeypatch.setattr(arguments, "physical_memory", lambda: 1.3 * 2**30)
    with pytest.raises(ValidationError, match=r"^num_samples: .*5500 draws .*about 1\.39 GiB"):
        ctx.check_draws("num_samples", 5500, 1, 5000)
    # below a chunk every draw's noise and decoding count; the chunk and the smoother's
    # passes come from the settings
    one_chunk = 4.0 * (88 * 8 * 26 + (4 * 8 + 2 * 5 + KEPT_PER_ENTRY * 5) * 32) * 5000
    monkeypatch.setattr(arguments, "physical_memory", lambda: one_chunk)
    ctx.check_draws("num_samples", 32, 1, 5000)
    with pytest.raises(ValidationError, match="33 draws"):
        ctx.check_draws("num_samples", 33, 1, 5000)
    monkeypatch.setattr(settings, "SAMPLE_CHUNK", 16)
    ctx.check_draws("num_samples", 33, 1, 5000)
    monkeypatch.setattr(settings, "SAMPLE_CHUNK", 32)
    monkeypatch.setattr(settings, "SMOOTHER_PASS_POINTS", 8 * 5000 * 20)  # passes of 20
    ctx.check_draws("num_samples", 33, 1, 5000)
    # series up to DENSE_MAX_POINTS steps draw from their dense posterior, not in passes
    short = 4.0 * (88 * 8 + 2 * 5 + KEPT_PER_ENTRY * 5) * 32 * 256
    monkeypatch.setattr(arguments, "physical_memory", lambda: short)
    ctx.check_draws("num_samples", 32, 1, 256)
    with pytest.raises(ValidationError, match="33 draws"):
        ctx.check_draws("num_samples", 33, 1, 256)
    # forecasts (their own batch) and prior draws make all S at once: all are charged
    monkeypatch.setattr(arguments, "physical_memory", lambda: 8 * 2**30)
    with pytest.raises(ValidationError, match=r"about 24 GiB"):
        ctx.check_draws("num_samples, horizon", 5500, 1, 5000, batch=1)
    with pytest.raises(ValidationError, match=r"about 9\.22 GiB"):
        ctx.check_draws("num_samples, times", 5500, 1, 5000, prior_only=True)


def test_draw_memory_counts_the_returned_draws_of_every_series(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """impute(return_samples=True) keeps the float64 draws of every series of the call, but
    the guard counted one batch (audit R2: 1,024 series of 200 steps, 200 draws, peaked at
    2.7 GiB against 0.39 GiB counted, flat in the number of series)."""
    from gpvae import arguments

    X = np.random.default_rng(0).standard_normal((1, 30, 4))
    est = GPVAE(latent_dim=2, epochs=1, hidden=(8,), progress=False).fit(X)
    many = np.random.default_rng(1).standard_normal((1024, 200, 4))
    # the returned draws alone: 8 B x 200 draws x 4 features x 1024 x 200 steps = 1.22 GiB
    monkeypatch.setattr(arguments, "physical_memory", lambda: 2**30)
    with pytest.raises(ValidationError, match=r"^num_samples, return_samples: .*returned"):
        est.impute(many, num_samples=200, return_samples=True)
    ctx = est._context("impute")
    ctx.check_draws("num_samples", 200, 1024, 200)  # without them, one batch is counted
    with pytest.raises(ValidationError, match=r"200 draws of 204800 steps x 4 features"):
        ctx.check_draws("num_samples", 200, 1024, 200, returned=1024 * 200)


def test_a_failed_allocation_names_the_draws_and_the_remedies(
    fitted: tuple[GPVAE, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """impute on a dense kernel (cauchy, 8,000 steps, under a ulimit) passed the estimate,
    which counts the machine's memory, then died with torch's bare "RuntimeError:
    DefaultCPUAllocator: can't allocate memory" (audit B3). A failed allocation of the draws
    is a ValidationError naming num_samples and the series' length, with the remedies."""
    est, X = fitted
    torch_error = RuntimeError(
        "DefaultCPUAllocator: can't allocate memory: you tried to allocate 5120000000 bytes. "
        "Error code 12 (Cannot allocate memory)"
    )

    raised = [torch_error]

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise raised[0]

    monkeypatch.setattr(GPVAEModel, "predictive_draws", fail)
    with pytest.raises(ValidationError, match=r"^num_samples: .*allocating them failed") as err:
        est.impute(X, num_samples=20)
    text = str(err.value)
    assert "20 draws x 8 series x 20 steps" in text  # a batch of 8 of the 16 series
    assert "DefaultCPUAllocator" in text  # torch's words, as the detail
    assert "pass fewer num_samples" in text
    assert err.value.__cause__ is torch_error
    monkeypatch.setattr(GPVAEModel, "forecast_draws", fail)
    with pytest.raises(ValidationError, match=r"^num_samples, X: .*allocating them failed") as err:
        est.forecast(X, horizon=3, num_samples=20)
    assert "(20 of history and 3 ahead)" in str(err.value)
    assert "X[-k:]" in str(err.value)
    # anomaly scores' draws (the held-out folds) likewise
    monkeypatch.setattr(anomaly_module, "heldout_nlpd", fail)
    with pytest.raises(ValidationError, match=r"^num_samples: .*allocating them failed") as err:
        est.anomaly_scores(X, num_samples=20)
    assert "pass fewer num_samples" in str(err.value)
    assert err.value.__cause__ is torch_error
    # other RuntimeErrors are not memory's: they pass unchanged
    raised[0] = RuntimeError("mat1 and mat2 shapes cannot be multiplied")
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        est.impute(X, num_samples=20)


def test_imputation_quantiles_go_in_blocks_with_the_same_bits(
    fitted: tuple[GPVAE, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interval quantiles copied, transposed and sorted the draws of every missing entry
    at once (3 copies, 12 bytes per draw and entry: a large share of impute's memory on one
    long series, audit B3). They go in blocks of QUANTILE_BLOCK draw values now, with the
    same bits."""
    from gpvae.estimator import imputation

    est, X = fitted
    whole = est.impute(X, num_samples=20, return_samples=True)
    seen: list[int] = []
    plain = imputation.sorted_quantiles

    def spy(samples: Tensor, *args: Any) -> list[Tensor]:
        seen.append(samples.numel())
        return plain(samples, *args)

    monkeypatch.setattr(imputation, "sorted_quantiles", spy)
    monkeypatch.setattr(settings, "QUANTILE_BLOCK", 50)
    blocks = est.impute(X, num_samples=20, return_samples=True)
    assert len(seen) > 1
    assert max(seen) <= 50  # 2 entries x 20 draws at a time
    for a, b in ((whole.mean, blocks.mean), (whole.lower, blocks.lower)):
        assert same_bits(a, b)
    assert same_bits(whole.upper, blocks.upper)
    assert same_bits(whole.samples, blocks.samples)


def test_check_memory_uses_the_machine_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    from gpvae import arguments

    monkeypatch.setattr(arguments, "physical_memory", lambda: 2**30)
    arguments.check_memory("num_samples", 2**30, "exactly the limit")  # not above: passes
    with pytest.raises(ValidationError, match=r"num_samples: .*1\.0 GiB, found 3 draws"):
        arguments.check_memory("num_samples", 2**30 + 1, "3 draws")
    monkeypatch.setattr(arguments, "physical_memory", lambda: None)  # unknown: no check
    arguments.check_memory("num_samples", 1e30, "anything")


def test_anomaly_scores_find_an_injected_outlier(fitted: tuple[GPVAE, np.ndarray]) -> None:
    est, X = fitted
    Y = X.copy()
    Y[3, 10, 1] = np.nanmax(X) + 8 * np.nanstd(X)  # a gross outlier
    res = est.anomaly_scores(Y, num_samples=30)
    entry, step = res.entry, res.step
    assert entry.shape == X.shape
    assert step.shape == X.shape[:2]
    assert np.array_equal(np.isnan(entry), np.isnan(Y))
    assert np.unravel_index(np.nanargmax(entry), entry.shape) == (3, 10, 1)
    np.testing.assert_allclose(step[3, 10], np.nansum(entry[3, 10]))
    assert res.num_folds == 5


# ---------------------------------------------------------------- determinism, save/load


def test_same_seed_gives_identical_fit_and_outputs() -> None:
    X, _ = smooth_series(8, 15)
    a = GPVAE(**FAST, seed=3).fit(X)
    b = GPVAE(**FAST, seed=3).fit(X)
    assert [h["loss"] for h in a.history_] == [h["loss"] for h in b.history_]
    assert np.array_equal(a.impute(X, num_samples=5).mean, b.impute(X, num_samples=5).mean)
    assert np.array_equal(a.forecast(X, horizon=2).mean, b.forecast(X, horizon=2).mean)
    assert np.array_equal(a.sample(np.arange(5.0), 2), b.sample(np.arange(5.0), 2))
    c = GPVAE(**FAST, seed=4).fit(X)
    assert not np.array_equal(a.impute(X, num_samples=5).mean, c.impute(X, num_samples=5).mean)


def _outputs(est: GPVAE, X: Any, times: Any = None) -> list[Any]:
    imp = est.impute(X, times, num_samples=8, return_samples=True)
    outs = [imp.mean, imp.lower, imp.upper, imp.samples, est.latent(X, times)[0]]
    outs.append(est.anomaly_scores(X, times, num_samples=8).entry)
    outs.append(est.forecast(X, times, horizon=2, num_samples=8).mean)
    outs.append(est.sample(np.arange(6.0), 2))
    return outs


def _assert_same(a: Any, b: Any) -> None:
    if isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b)
    else:
        assert np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize("form", ["array", "ragged", "dataframe"])
def test_save_load_round_trip_gives_identical_outputs(form: str, tmp_path: Path) -> None:
    if form == "array":
        X, times = smooth_series(8, 12)[0], None
    elif form == "ragged":
        X, times = ragged_series([5, 9, 14])
    else:
        X, times = long_frame(), None
    est = GPVAE(**FAST).fit(X, times)
    est.save(tmp_path / "model")
    loaded = GPVAE.load(tmp_path / "model")
    for a, b in zip(_outputs(est, X, times), _outputs(loaded, X, times)):
        _assert_same(a, b)
    assert loaded.history_ == est.history_
    assert loaded.feature_names_ == est.feature_names_
    cfg = json.loads((tmp_path / "model" / "config.json").read_text())
    assert cfg["config"]["estimator"]["latent_dim"] == 2
    assert cfg["config"]["time_step"] == est.scaler_.time_step_
    assert cfg["gpvae_version"] == gpvae.__version__


def test_save_load_kernel_instance_and_unsaveable_arguments(tmp_path: Path) -> None:
    X, _ = smooth_series(4, 10)
    est = GPVAE(**{**FAST, "epochs": 1}, kernel=Matern52(lengthscale=2.0)).fit(X)
    est.save(tmp_path / "m")
    loaded = GPVAE.load(tmp_path / "m")
    assert np.array_equal(est.impute(X).mean, loaded.impute(X).mean)
    # sums (and products) of registered kernels save and load since issue 16
    summed = GPVAE(**{**FAST, "epochs": 1}, kernel=Matern12() + Matern32()).fit(X)
    summed.save(tmp_path / "s")
    assert np.array_equal(summed.impute(X).mean, GPVAE.load(tmp_path / "s").impute(X).mean)

    class Custom(Matern32):
        """A kernel class the registry does not know: JSON cannot rebuild it."""

    custom_kernel = GPVAE(**{**FAST, "epochs": 1}, kernel=Custom()).fit(X)
    with pytest.raises(ValidationError, match=r"^kernel"):
        custom_kernel.save(tmp_path / "k")

    class Enc(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(6, 4)

        def forward(self, y: Tensor, observed: Tensor) -> tuple[Tensor, Tensor]:
            h = self.lin(torch.cat([y, observed.to(y.dtype)], -1))
            return h[..., :2], nn.functional.softplus(h[..., 2:]) + 1e-3

    custom = GPVAE(**{**FAST, "epochs": 1}, encoder=Enc()).fit(X)
    assert custom.impute(X).mean.shape == X.shape
    with pytest.raises(ValidationError, match=r"^encoder"):
        custom.save(tmp_path / "c")


def test_load_rejects_mismatched_weights(fitted: tuple[GPVAE, np.ndarray], tmp_path: Path) -> None:
    est, _ = fitted
    est.save(tmp_path / "m")
    path = tmp_path / "m" / "config.json"
    doc = json.loads(path.read_text())
    doc["config"]["estimator"]["hidden"] = [17]
    path.write_text(json.dumps(doc))
    with pytest.raises(ModelFileError, match="shape"):
        GPVAE.load(tmp_path / "m")
    doc["config"]["estimator"]["hidden"] = [16]
    doc["config"]["estimator"]["kernel"] = {"name": "no-such-kernel"}
    path.write_text(json.dumps(doc))
    with pytest.raises(ModelFileError, match="kernel"):
        GPVAE.load(tmp_path / "m")
    with pytest.raises(ModelFileError):
        GPVAE.load(tmp_path / "missing")


def test_best_epoch_is_the_epoch_whose_weights_were_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # early stopping never said which epoch it kept (audit A3 #11)
    from gpvae.estimator.estimator import best_epoch

    kept: list[int] = []
    real_run = gpvae.training.session.FitSession.run

    def spy(self: Any, resume: bool) -> Any:
        state = real_run(self, resume)
        kept.append(state.best_epoch)  # the loop's own record of the kept epoch
        return state

    monkeypatch.setattr(gpvae.training.session.FitSession, "run", spy)
    X, _ = smooth_series(8, 20)
    assert GPVAE(**FAST).best_epoch_ is None  # before fit
    est = GPVAE(**{**FAST, "epochs": 30, "patience": 2, "lr": 3e-2}).fit(X)
    history = est.history_
    assert len(history) < 30  # stopped early, so the kept epoch is not the last
    assert est.best_epoch_ == kept[-1] == len(history) - 2
    scores = [h["val_score"] for h in history]
    assert history[est.best_epoch_ - 1]["val_score"] == min(scores)
    est.save(tmp_path / "m")
    assert GPVAE.load(tmp_path / "m").best_epoch_ == est.best_epoch_
    # ties keep the first epoch, as the loop does; no finite score: the last epoch's weights
    rows = [{"epoch": k + 1.0, "val_score": v} for k, v in enumerate([3.0, 1.0, 2.0, 1.0])]
    assert best_epoch(rows) == 2
    nan_rows = [{"epoch": k + 1.0, "val_score": np.nan} for k in range(3)]
    assert best_epoch(nan_rows) == 3
    assert best_epoch([]) is None


def test_an_impossible_forecast_horizon_warns_before_training(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # forecast_horizon=500 on series of 40 steps (1,500 needed) was reported only after
    # every epoch had trained, though the series' lengths said so before (audit A3 #10)
    import warnings

    said_before: list[list[str]] = []
    real_run = gpvae.training.session.FitSession.run

    def spy(self: Any, resume: bool) -> Any:
        said_before.append([str(w.message) for w in caught])
        return real_run(self, resume)

    monkeypatch.setattr(gpvae.training.session.FitSession, "run", spy)
    X, _ = smooth_series(4, 40)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = GPVAE(**FAST, forecast_horizon=500, forecast_blend=True).fit(X)
    said = [str(w.message) for w in caught if str(w.message).startswith("forecast_horizon")]
    assert len(said) == 1, said  # once, not again after training
    assert said[0] in said_before[0]
    assert "at least 1500 steps" in said[0]
    assert "found at most 40" in said[0]
    assert "not calibrated, and the forecast not blended" in said[0]
    assert est.forecast_scale_ is None
    assert est.forecast_blend_ is None
    # a horizon the series allow: no such warning, and the forecasts are calibrated
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = GPVAE(**FAST, forecast_horizon=4).fit(X)
    assert not [w for w in caught if str(w.message).startswith("forecast_horizon")]
    assert est.forecast_scale_ is not None


def test_save_and_load_name_the_folder_they_cannot_use(
    fitted: tuple[GPVAE, np.ndarray], tmp_path: Path
) -> None:
    # a folder that cannot be made raised a raw NotADirectoryError / FileNotFoundError,
    # and loading the output folder of `gpvae fit` (model in ./model) said only that
    # config.json was missing
    est, _ = fitted
    (tmp_path / "a_file").write_text("")
    for bad in (tmp_path / "a_file" / "sub", tmp_path / "a_file"):
        with pytest.raises(ValidationError, match=r"^path: expected a folder .*a_file"):
            est.save(bad)
    ensemble = gpvae.GPVAEEnsemble(members=1, **FAST)
    ensemble.members_ = [est]  # as fitted, without fitting again
    with pytest.raises(ValidationError, match=r"^path: expected a folder .*a_file"):
        ensemble.save(tmp_path / "a_file" / "sub")
    est.save(tmp_path / "run" / "model")  # the layout of `gpvae fit -o run`
    with pytest.raises(ModelFileError, match=r"run.model holds one .*load '.*run.model'"):
        GPVAE.load(tmp_path / "run")
    assert GPVAE.load(tmp_path / "run" / "model").is_fitted


def test_an_interrupted_refit_keeps_the_whole_fitted_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a refit stopped in its forecast calibration (Ctrl-C) kept the old weights but had
    # dropped their forecast calibration and blend already
    X, _ = smooth_series(4, 40)
    est = GPVAE(**FAST, forecast_horizon=4, forecast_blend=True, interp_blend=True).fit(X)
    model, scale, blend = est.model_, est.forecast_scale_, est.forecast_blend_
    weight, history = est.blend_weight_, est.history_
    assert scale is not None
    assert blend is not None
    assert weight is not None
    before = est.forecast(X, horizon=4)

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(gpvae.estimator.estimator, "calibrate_and_blend", interrupted)
    with pytest.raises(KeyboardInterrupt):
        est.fit(X[:, :30])
    assert est.model_ is model
    assert est.history_ == history
    assert est.forecast_scale_ is scale
    assert est.forecast_blend_ is blend
    assert est.blend_weight_ is weight
    after = est.forecast(X, horizon=4)
    assert same_bits(after.upper, before.upper)
    assert same_bits(after.mean, before.mean)


def test_a_float64_default_dtype_fits_and_predicts_as_float32(tmp_path: Path) -> None:
    # many GP users set torch's default dtype to float64: the model stays float32 (the
    # compute dtype) with the same weights, and every prediction batch takes the model's
    # dtype; a float32 model saved elsewhere loads and predicts in such a process
    X, _ = smooth_series(8, 16)
    kw = {**FAST, "epochs": 2, "forecast_horizon": 3, "forecast_blend": True}
    reference = GPVAE(**kw).fit(X)
    reference.save(tmp_path / "m")
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        est = GPVAE(**kw).fit(X)
        assert next(est.model_.parameters()).dtype == torch.float32
        for k, v in reference.model_.state_dict().items():
            assert torch.equal(v, est.model_.state_dict()[k]), k
        assert same_bits(est.impute(X).mean, reference.impute(X).mean)
        assert same_bits(est.forecast(X, horizon=3).upper, reference.forecast(X, horizon=3).upper)
        assert np.isfinite(est.anomaly_scores(X).entry[~np.isnan(X)]).all()
        loaded = GPVAE.load(tmp_path / "m")
        assert same_bits(loaded.impute(X).mean, reference.impute(X).mean)
    finally:
        torch.set_default_dtype(default)


# ---------------------------------------------------------------- checkpoints and resume


def _fit_dying_after_two_checkpoints(
    monkeypatch: pytest.MonkeyPatch, settings: dict[str, Any], folder: Path, X: np.ndarray
) -> None:
    """Fit with checkpoints into ``folder`` until the process dies (KeyboardInterrupt)
    right after writing its 2nd checkpoint."""
    real_save = gpvae.training.session.save_checkpoint
    calls = {"n": 0}

    def crashing_save(*args: Any, **kwargs: Any) -> None:
        real_save(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(gpvae.training.session, "save_checkpoint", crashing_save)
    with pytest.raises(KeyboardInterrupt):
        GPVAE(**settings, checkpoint_dir=folder).fit(X)
    monkeypatch.setattr(gpvae.training.session, "save_checkpoint", real_save)


def test_resume_after_a_crash_matches_an_uninterrupted_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, _ = smooth_series(12, 15)
    settings = {**FAST, "epochs": 5, "patience": None}
    reference = GPVAE(**settings, checkpoint_dir=tmp_path / "ref").fit(X)

    _fit_dying_after_two_checkpoints(monkeypatch, settings, tmp_path / "run", X)

    resumed = GPVAE(**settings, checkpoint_dir=tmp_path / "run").fit(X, resume=True)
    assert len(resumed.history_) == 5
    assert [h["loss"] for h in resumed.history_] == [h["loss"] for h in reference.history_]
    for k, v in reference.model_.state_dict().items():
        assert torch.equal(v, resumed.model_.state_dict()[k]), k
    # resuming a finished run trains no further
    again = GPVAE(**settings, checkpoint_dir=tmp_path / "run").fit(X, resume=True)
    assert [h["loss"] for h in again.history_] == [h["loss"] for h in reference.history_]
    other, _ = smooth_series(12, 15, seed=9)
    with pytest.raises(ValidationError, match="resume"):
        GPVAE(**settings, checkpoint_dir=tmp_path / "run").fit(other, resume=True)
    with pytest.raises(ValidationError, match="resume"):
        GPVAE(**settings).fit(X, resume=True)
    # other settings: refused, naming them (the checkpoint's optimiser state kept the old
    # learning rate and its weights went into another kernel without a word); more epochs
    # or another patience may continue it
    for changed, names in (({"lr": 0.5}, "lr"), ({"kernel": "matern12", "lr": 0.5}, "kernel, lr")):
        with pytest.raises(ValidationError, match=rf"^resume: .*found {names} changed"):
            GPVAE(**{**settings, **changed}, checkpoint_dir=tmp_path / "run").fit(X, resume=True)
    longer = {**settings, "epochs": 6, "patience": 3}
    assert len(GPVAE(**longer, checkpoint_dir=tmp_path / "run").fit(X, resume=True).history_) == 6


def test_resume_honours_epochs_and_patience_and_ignores_post_training_settings(
    tmp_path: Path,
) -> None:
    """resume ignored a larger epochs / patience after an early stop, returned a model of
    8 epochs for epochs=3, and refused another calibrate, interp_blend or forecast_blend
    (which act after training only)."""
    X, _ = smooth_series(12, 15)
    quick = {**FAST, "lr": 0.05, "epochs": 12}
    early = GPVAE(**quick, patience=1, checkpoint_dir=tmp_path / "run").fit(X)
    ran = len(early.history_)
    assert ran < 12  # stopped early
    more = {**quick, "patience": 4}
    resumed = GPVAE(**more, checkpoint_dir=tmp_path / "run").fit(X, resume=True)
    reference = GPVAE(**more, checkpoint_dir=tmp_path / "ref").fit(X)
    assert len(resumed.history_) > ran
    assert [h["loss"] for h in resumed.history_] == [h["loss"] for h in reference.history_]
    for k, v in reference.model_.state_dict().items():
        assert torch.equal(v, resumed.model_.state_dict()[k]), k
    done = len(resumed.history_)
    with pytest.raises(ValidationError, match=rf"^epochs: expected at least the {done} epochs"):
        GPVAE(**{**more, "epochs": done - 1}, checkpoint_dir=tmp_path / "run").fit(X, resume=True)
    # patience=1 would have stopped the run after the first epoch without improvement
    scores = [h["val_score"] for h in resumed.history_]
    assert any(b >= min(scores[:i]) for i, b in enumerate(scores[1:-1], start=1))
    with pytest.raises(ValidationError, match=r"^patience: .*found 1, which stops after epoch"):
        GPVAE(**{**more, "patience": 1}, checkpoint_dir=tmp_path / "run").fit(X, resume=True)
    post = {"calibrate": False, "interp_blend": True, "forecast_blend": True}
    with pytest.warns(UserWarning, match="^forecast_blend: expected forecast_horizon"):
        again = GPVAE(**more, **post, checkpoint_dir=tmp_path / "run").fit(X, resume=True)
    assert [h["loss"] for h in again.history_] == [h["loss"] for h in resumed.history_]
    assert again.blend_weight_ is not None
    np.testing.assert_array_equal(again.interval_scale_, np.ones(3))


def test_noise_lr_moves_the_likelihood_s_noise_at_its_own_rate(tmp_path: Path) -> None:
    """The Gaussian noise variance learned at lr (Adam moves its raw value by about lr per
    step: at 1e-3 it stayed near its start of 0.1 for hundreds of steps); noise_lr sets
    its own rate, kept by save / load and get_config."""
    X, _ = smooth_series(16, 15)
    settings = {**FAST, "epochs": 2, "patience": None}  # 2 steps per epoch: 4 steps

    def moved(est: GPVAE) -> float:
        raw = est.model_.likelihood.raw_variance.detach()
        start = GPVAE(**settings)._build_model(3).likelihood.raw_variance.detach()
        return float((raw - start).abs().max())

    default = GPVAE(**settings).fit(X)
    assert default.noise_lr is None
    assert moved(default) < 0.02  # at lr: about 1e-3 per step
    fast = GPVAE(**settings, noise_lr=0.1).fit(X)
    assert moved(fast) > 0.2  # at 0.1 per step
    fast.save(tmp_path / "m")
    loaded = GPVAE.load(tmp_path / "m")
    assert loaded.noise_lr == 0.1
    assert GPVAE(**fast.get_config()).noise_lr == 0.1
    with pytest.raises(ValidationError, match=r"^noise_lr"):
        GPVAE(noise_lr=-1.0)


def test_fit_warns_when_early_stopping_ends_it_after_few_steps() -> None:
    """A fit of few series (2 steps per epoch) that patience stopped after a few epochs
    ended without a word; it warns naming batch_size and patience, and stops where it did."""
    import warnings

    X, _ = smooth_series(12, 15)
    quick = {**FAST, "lr": 0.05, "epochs": 12, "patience": 1}
    with pytest.warns(UserWarning, match=r"^training: early stopping \(patience=1") as caught:
        est = GPVAE(**quick).fit(X)
    assert len(est.history_) < 12
    assert f"after {2 * len(est.history_)} optimiser steps" in str(caught[0].message)
    assert "batch_size" in str(caught[0].message)
    with warnings.catch_warnings():  # all epochs ran: no warning
        warnings.filterwarnings("error", message="training: early stopping")
        GPVAE(**{**quick, "epochs": 2}).fit(X)


def test_resume_with_noise_lr_and_of_checkpoints_written_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """noise_lr adds an optimiser group: a fit with it resumes as it would have gone on; a
    checkpoint written before noise_lr existed (its settings without the key) resumes
    with noise_lr=None, the behaviour it ran with, and is refused with another."""
    X, _ = smooth_series(12, 15)
    settings = {**FAST, "epochs": 4, "patience": None, "noise_lr": 0.05}
    reference = GPVAE(**settings, checkpoint_dir=tmp_path / "ref").fit(X)
    _fit_dying_after_two_checkpoints(monkeypatch, settings, tmp_path / "run", X)
    resumed = GPVAE(**settings, checkpoint_dir=tmp_path / "run").fit(X, resume=True)
    assert [h["loss"] for h in resumed.history_] == [h["loss"] for h in reference.history_]
    for k, v in reference.model_.state_dict().items():
        assert torch.equal(v, resumed.model_.state_dict()[k]), k
    with pytest.raises(ValidationError, match=r"^resume: .*found noise_lr changed"):
        GPVAE(**{**settings, "noise_lr": None}, checkpoint_dir=tmp_path / "run").fit(X, resume=True)

    # a checkpoint of 2 epochs as fits wrote it before noise_lr: no such setting
    old = {**settings, "epochs": 2, "noise_lr": None}
    GPVAE(**old, checkpoint_dir=tmp_path / "old").fit(X)
    file = tmp_path / "old" / gpvae.training.session.CHECKPOINT_FILE
    tensors, meta = gpvae.io.load_checkpoint(file)
    assert meta["settings"].pop("noise_lr") is None
    gpvae.io.save_checkpoint(file, tensors, meta)
    more = {**old, "epochs": 4}
    resumed = GPVAE(**more, checkpoint_dir=tmp_path / "old").fit(X, resume=True)
    reference = GPVAE(**more, checkpoint_dir=tmp_path / "ref_old").fit(X)
    assert [h["loss"] for h in resumed.history_] == [h["loss"] for h in reference.history_]
    with pytest.raises(ValidationError, match=r"^resume: .*found noise_lr changed"):
        GPVAE(**{**more, "noise_lr": 0.05}, checkpoint_dir=tmp_path / "old").fit(X, resume=True)


def test_the_data_fingerprint_is_made_only_for_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = gpvae.training.session._fingerprint
    calls = {"n": 0}

    def counted(*sets: Any) -> str:
        calls["n"] += 1
        return real(*sets)

    monkeypatch.setattr(gpvae.training.session, "_fingerprint", counted)
    X, _ = smooth_series(6, 10)
    settings = {**FAST, "epochs": 1, "patience": None}
    GPVAE(**settings).fit(X)
    assert calls["n"] == 0  # nothing reads it without checkpoints (one process)
    GPVAE(**settings, checkpoint_dir=tmp_path / "run").fit(X)
    assert calls["n"] == 1
    other, _ = smooth_series(6, 10, seed=9)  # resume still tells other data apart
    with pytest.raises(ValidationError, match="resume"):
        GPVAE(**settings, checkpoint_dir=tmp_path / "run").fit(other, resume=True)


def test_validation_data_and_plain_vae_baseline() -> None:
    X, _ = smooth_series(10, 15)
    Xv, _ = smooth_series(4, 15, seed=1)
    est = GPVAE(**FAST, kernel="white", posterior="diagonal").fit(X, X_val=Xv)
    assert all(np.isfinite(h["val_score"]) for h in est.history_)
    assert est.impute(X).mean.shape == X.shape
    with pytest.raises(GPVAEError, match="structured"):
        est.forecast(X, horizon=2)
    with pytest.raises(ShapeError, match="X_val"):
        GPVAE(**FAST).fit(X, X_val=Xv[..., :2])
    with pytest.raises(GPVAEError, match="times_val"):
        GPVAE(**FAST).fit(X, X_val=Xv, times_val=np.arange(3.0))


# ---------------------------------------------------------------- bad input


def _bad_inputs() -> list[tuple[str, dict[str, Any], str]]:
    X, _ = smooth_series(4, 6)
    inf = X.copy()
    inf[0, 2, 1] = np.inf
    dup = np.tile(np.arange(6.0), (4, 1))
    dup[2, 3] = dup[2, 2]
    nonfinite = np.tile(np.arange(6.0), (4, 1))
    nonfinite[0, 4] = np.nan
    return [
        ("all-missing data", {"X": np.full_like(X, np.nan)}, "X"),
        ("duplicate timestamps", {"X": X, "times": dup}, "times"),
        ("times shape", {"X": X, "times": np.arange(5.0)}, "times"),
        ("non-finite times", {"X": X, "times": nonfinite}, "times"),
        ("inf in X", {"X": inf}, "X"),
        ("1-D X", {"X": X[0, :, 0]}, "X"),
        ("2-D X", {"X": X[0]}, "X"),
        ("ragged feature counts", {"X": [X[0], X[1][:, :2]]}, "X"),
        ("strings", {"X": np.array([[["a", "b"], ["c", "d"]]])}, "X"),
    ]


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [(c[1], c[2]) for c in _bad_inputs()],
    ids=[c[0] for c in _bad_inputs()],
)
def test_fit_rejects_bad_input_and_keeps_the_fitted_model(
    fitted: tuple[GPVAE, np.ndarray], kwargs: dict[str, Any], argument: str
) -> None:
    est, X = fitted
    before = est.impute(X, num_samples=4).mean
    with pytest.raises(GPVAEError, match=rf"^{argument}\b"):
        est.fit(**kwargs)
    assert np.array_equal(est.impute(X, num_samples=4).mean, before)
    with pytest.raises(GPVAEError, match=rf"^{argument}\b"):
        GPVAE(**FAST).fit(**kwargs)


def test_predict_rejects_bad_input(fitted: tuple[GPVAE, np.ndarray]) -> None:
    est, X = fitted
    with pytest.raises(ShapeError, match=r"^X.*features"):
        est.impute(X[..., :2])
    with pytest.raises(ShapeError, match=r"^X"):
        est.forecast(X[0], horizon=2)
    with pytest.raises(ValidationError, match=r"^num_samples"):
        est.impute(X, num_samples=0)
    with pytest.raises(ValidationError, match=r"^quantiles"):
        est.impute(X, quantiles=(0.9, 0.1))
    with pytest.raises(GPVAEError, match=r"^times"):
        est.anomaly_scores(X, times=np.arange(3.0))


@pytest.mark.parametrize("method", ["impute", "forecast", "latent", "anomaly_scores", "sample"])
def test_methods_before_fit_raise_not_fitted(method: str, tmp_path: Path) -> None:
    est = GPVAE(**FAST)
    X, _ = smooth_series(2, 5)
    calls = {
        "sample": lambda: est.sample(np.arange(3.0)),
        "forecast": lambda: est.forecast(X, horizon=1),
    }
    call = calls.get(method, lambda: getattr(est, method)(X))
    with pytest.raises(NotFittedError, match=method):
        call()
    with pytest.raises(NotFittedError):
        est.save(tmp_path / "m")
    with pytest.raises(NotFittedError):
        _ = est.model_


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"kernel": "maternn32"}, "kernel"),
        ({"kernel": 3}, "kernel"),
        ({"likelihood": "poisson"}, "likelihood"),
        ({"posterior": "full"}, "posterior"),
        ({"backend": "sparse9"}, "backend"),
        ({"encoder": "transformer"}, "encoder"),
        ({"decoder": "transformer"}, "decoder"),
        ({"optimizer": "sgd9"}, "optimizer"),
        ({"encoder": "partial", "posterior": "banded"}, "encoder"),
        ({"kernel": "rbf", "backend": "markov"}, "backend"),
        ({"latent_dim": 0}, "latent_dim"),
        ({"latent_dim": 2.5}, "latent_dim"),
        ({"hidden": (16, 0)}, "hidden"),
        ({"hidden": "big"}, "hidden"),
        ({"beta": -1.0}, "beta"),
        ({"beta": float("nan")}, "beta"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": 0.0}, "lr"),
        ({"patience": 0}, "patience"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"num_samples": 0}, "num_samples"),
        ({"lengthscale": -2.0}, "lengthscale"),
        ({"device": "gpu9"}, "device"),
        ({"device": "meta"}, "device"),  # passed, then fit failed inside torch
        # ignored without a word, as period= is refused with a kernel instance
        ({"kernel": Matern32(), "lengthscale": 7.0}, "lengthscale"),
        (
            {"kernel": ["matern32", Matern12()], "latent_dim": 2, "lengthscale": (2, 30)},
            "lengthscale",
        ),
        # fit failed naming the internal x1: the estimator's kernel acts on 1-D time
        ({"kernel": Matern32(lengthscale=[1.0, 2.0])}, "kernel"),
        ({"kernel": Matern12() + Matern32(lengthscale=[1.0, 2.0])}, "kernel"),
        ({"kernel": ["matern32", Matern32(lengthscale=[1.0, 2.0])], "latent_dim": 2}, "kernel"),
        # ignored without a word: no factor takes a lengthscale in steps
        ({"kernel": "white", "lengthscale": 3}, "lengthscale"),
        ({"kernel": "periodic", "period": 24, "lengthscale": 3}, "lengthscale"),
        ({"kernel": ["white", "matern32"], "latent_dim": 2, "lengthscale": (3, 4)}, "lengthscale"),
        # accepted here, fit failed
        ({"kernel": "periodic", "period": 0}, "period"),
        ({"kernel": "periodic", "period": -24}, "period"),
        ({"kernel": "periodic", "period": float("nan")}, "period"),
        ({"kernel": "periodic+periodic", "period": [24, float("inf")]}, "period"),
        ({"seed": -1}, "seed"),
        ({"progress": "yes"}, "progress"),
        ({"checkpoint_dir": 5}, "checkpoint_dir"),
        ({"checkpoint_every": 0}, "checkpoint_every"),
        # fit ignored them, and forecast refused the model only after the whole fit
        ({"posterior": "banded", "forecast_horizon": 5}, "forecast_horizon"),
        ({"posterior": "diagonal", "forecast_blend": True}, "forecast_blend"),
        ({"posterior": "banded", "difference": True}, "difference"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs: dict[str, Any], argument: str) -> None:
    with pytest.raises(GPVAEError, match=rf"^{argument}\b"):
        GPVAE(**kwargs)


@pytest.mark.skipif(
    torch.backends.mps.is_available() or torch.cuda.is_available(), reason="needs no GPU"
)
def test_a_device_this_machine_lacks_is_refused_naming_device(tmp_path: Path) -> None:
    """fit and load with 'mps' failed inside torch ('PyTorch is not linked with support for
    mps devices'), 'xpu' and 'meta' passed the constructor's check."""
    X, _ = smooth_series(4, 10)
    for device in ("mps", "cuda", "cuda:0"):
        with pytest.raises(ValidationError, match=rf"^device: .*found '{device}' \(not avail"):
            GPVAE(**FAST, device=device).fit(X)
    GPVAE(**{**FAST, "epochs": 1}).fit(X).save(tmp_path / "m")
    for device in ("mps", "cuda", "meta"):
        with pytest.raises(ValidationError, match=rf"^device: .*found '{device}' \(not avail"):
            GPVAE.load(tmp_path / "m", device=device)
    if not torch.xpu.is_available():
        with pytest.raises(ValidationError, match=r"^device: .*found 'xpu' \(not avail"):
            GPVAE(device="xpu")
    assert GPVAE.load(tmp_path / "m", device=torch.device("cpu")).device_ == torch.device("cpu")


def test_forecast_blend_without_a_horizon_warns_at_fit() -> None:
    """It blended nothing without a word (the blend is chosen on the forecast calibration's
    origins); calibrate_forecast chooses it afterwards."""
    X, _ = smooth_series(4, 30)
    with pytest.warns(UserWarning, match=r"^forecast_blend: expected forecast_horizon") as caught:
        est = GPVAE(**{**FAST, "epochs": 1}, forecast_blend=True).fit(X)
    assert caught[0].filename == __file__
    assert est.forecast_blend_ is None
    assert est.calibrate_forecast(X, horizon=3).forecast_blend_ is not None


def test_lengthscale_goes_where_a_kernel_takes_it() -> None:
    """A named channel beside an instance, and a gaussian_gp noise kernel, take it."""
    mixed = GPVAE(kernel=["matern32", Matern12()], latent_dim=2, lengthscale=7.0)
    assert mixed.lengthscale == 7.0
    noise = GPVAE(kernel=Matern32(), likelihood="gaussian_gp", lengthscale=7.0)
    kernel = noise._build_model(2).likelihood.gp.kernels[0]
    assert float(kernel.lengthscale.detach()) == pytest.approx(7.0)


def test_numpy_bools_are_taken_as_bools() -> None:
    """progress refused np.False_, which every other boolean argument takes."""
    for name in ("calibrate", "interp_skip", "forecast_blend", "progress"):
        value = getattr(GPVAE(**{name: np.bool_(False)}), name)
        assert value is False, name


def test_unknown_names_list_the_options() -> None:
    with pytest.raises(ValidationError, match="matern32"):
        GPVAE(kernel="maternn32")
    with pytest.raises(ValidationError, match=r"'gaussian'.*'student_t'"):
        GPVAE(likelihood="poisson")


# ---------------------------------------------------------------- per-series draws


@pytest.mark.parametrize(
    ("posterior", "dense_max"),
    [("structured", 256), ("structured", 4), ("diagonal", 256), ("banded", 256)],
    ids=["structured-dense", "structured-markov", "diagonal", "banded"],
)
def test_per_series_draws_have_the_posterior_moments(
    posterior: str, dense_max: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The per-series draws of each posterior family (own noise per series) have q's
    marginal means and variances, whatever route (dense per series, or the simulation
    smoother for long series)."""
    monkeypatch.setattr(settings, "DENSE_MAX_POINTS", dense_max)
    X, times = ragged_series([12, 30, 7], seed=4)
    est = GPVAE(**{**FAST, "epochs": 1}, posterior=posterior).fit(X, times)
    ctx = est._context("test")
    ss, scaled = ctx.input(X, times)
    idx = np.arange(3)
    batch = ctx.batch(scaled, idx)
    with torch.no_grad():
        q = est.model_.encode(batch)
        mean, var = q.marginals()
        S = 4000
        sampler = q.series_sampler(ctx.series_generators(ss, idx, salt=0))
        z = torch.cat([sampler.draw(1000) for _ in range(4)])  # (S, B, N, L)
    valid = batch.valid[..., None].expand_as(mean)
    z_score = ((z.mean(0) - mean) / (var / S).sqrt())[valid]
    ratio = (z.var(0) / var)[valid]
    assert z_score.abs().max() < 4.5
    assert ratio.min() > 0.88
    assert ratio.max() < 1.12


def test_heteroscedastic_gaussian_fits_and_imputes_with_ordered_intervals() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(30, dtype=float)
    X = np.stack(
        [np.sin(t / 4 + p)[:, None] * [1.0, -0.5] + rng.normal(0, 0.1, (30, 2)) for p in range(8)]
    )
    X[rng.random(X.shape) < 0.3] = np.nan
    model = GPVAE(
        latent_dim=2, likelihood="gaussian_hetero", epochs=3, hidden=(16,), progress=False
    ).fit(X)
    res = model.impute(X, num_samples=20)
    observed = ~np.isnan(X)
    assert np.array_equal(res.mean[observed], X[observed])
    assert np.isfinite(res.mean).all()
    assert (res.lower <= res.mean + 1e-12).all()
    assert (res.mean <= res.upper + 1e-12).all()
    assert (res.upper - res.lower)[~observed].min() > 0


def test_sample_reads_datetimes_as_forecast_reads_future_times() -> None:
    """sample(pd.date_range(...)) drew the prior at nanoseconds since 1970, so every step
    was independent of the next, without a word; then it refused datetimes altogether
    (InputTypeError "expected numbers"), though forecast takes future dates. Datetimes
    and durations are now read as forecast's future_times are: hours apart, zone-aware
    ones in UTC (an hour of a clock change is one hour), a calendar model's dates in
    steps of its grid."""
    frame = pd.DataFrame(
        {"a": np.sin(np.arange(40) / 4.0)}, index=pd.date_range("2020-01-01", periods=40, freq="h")
    )
    model = GPVAE(latent_dim=2, epochs=1, progress=False, hidden=(8,)).fit(frame)
    hours = model.sample(np.arange(3.0), 4, seed=5)
    dates = pd.date_range("2020-03-01", periods=3, freq="h")
    given: list[Any] = [
        dates,
        dates.to_numpy(),
        list(dates),
        # ISO strings, as forecast's future_times take them (audit R #4: refused as
        # "expected numeric times, found list")
        ["2020-03-01 00:00", "2020-03-01 01:00", "2020-03-01 02:00"],
        np.array(["2020-03-01T00:00", "2020-03-01T01:00", "2020-03-01T02:00"]),
        pd.to_timedelta([7, 8, 9], unit="h"),
        [pd.Timedelta(hours=h) for h in (7, 8, 9)],
        # 01:00 and 03:00 of the clock change in Berlin are one hour apart
        pd.DatetimeIndex(["2024-03-31 00:00", "2024-03-31 01:00", "2024-03-31 03:00"]).tz_localize(
            "Europe/Berlin"
        ),
    ]
    for times in given:
        np.testing.assert_array_equal(model.sample(times, 4, seed=5), hours)
    backwards = model.sample(dates[::-1], 4, seed=5)
    np.testing.assert_array_equal(backwards, hours[:, ::-1])
    with pytest.raises(InputTypeError, match=r"times: expected datetimes all with a time zone"):
        model.sample([pd.Timestamp("2020-03-01"), pd.Timestamp("2020-03-01 01:00", tz="UTC")])
    with pytest.raises(ValidationError, match=r"times: expected finite times, found NaT"):
        model.sample(pd.DatetimeIndex(["2020-03-01", None]))
    with pytest.raises(ValidationError, match=r"times: expected distinct times"):
        model.sample(pd.DatetimeIndex(["2020-03-01", "2020-03-01"]))

    monthly = pd.DataFrame(
        {"a": np.sin(np.arange(24) / 3.0)}, index=pd.date_range("2020-01-01", periods=24, freq="MS")
    )
    months = GPVAE(latent_dim=2, epochs=1, progress=False, hidden=(8,)).fit(monthly)
    np.testing.assert_array_equal(
        months.sample(pd.date_range("2031-05-01", periods=3, freq="MS"), 2, seed=1),
        months.sample(np.arange(3.0), 2, seed=1),
    )
    with pytest.raises(ValidationError, match=r"times: expected times on the data's calendar"):
        months.sample(pd.DatetimeIndex(["2031-05-01", "2031-05-02"]))
    with pytest.raises(InputTypeError, match=r"times: expected datetimes on the model's calendar"):
        months.sample(pd.to_timedelta([1, 2], unit="h"))

    numbers = GPVAE(latent_dim=2, epochs=1, progress=False, hidden=(8,)).fit(frame.to_numpy()[None])
    with pytest.raises(InputTypeError, match=r"times: expected numbers in the model's time units"):
        numbers.sample(dates)


def test_get_config_rebuilds_the_estimator_and_seeds_fit_64_bits() -> None:
    """GPVAE(**model.get_config()) refused the saved kernel (a dict); a seed of 2**63 or
    more was taken and crashed at the first draw."""
    from gpvae.kernels import Matern32, Periodic

    X = np.random.default_rng(0).normal(size=(2, 30, 2))
    for kernel in ("matern32+periodic", Matern32(lengthscale=3.0) + Periodic(period=7.0)):
        period = 7.0 if isinstance(kernel, str) else None
        model = GPVAE(**{**FAST, "epochs": 1}, kernel=kernel, period=period).fit(X)
        again = GPVAE(**model.get_config())
        assert again.get_config() == model.get_config()
    with pytest.raises(ValidationError, match=r"seed: expected an integer in \[0, 2\*\*63 - 1\]"):
        GPVAE(seed=2**63)
    assert GPVAE(seed=2**63 - 1).seed == 2**63 - 1


def test_a_checkpoint_dir_that_cannot_be_made_fails_before_training(tmp_path: Path) -> None:
    """It failed with a raw NotADirectoryError after the first epoch."""
    afile = tmp_path / "data.csv"
    afile.write_text("x\n")
    X = np.random.default_rng(0).normal(size=(2, 20, 2))
    model = GPVAE(**FAST, checkpoint_dir=afile / "ck")
    with pytest.raises(ValidationError, match=r"^checkpoint_dir: expected a folder that can be"):
        model.fit(X)
    assert model.history_ is None or not model.history_


def test_frame_columns_that_differ_from_the_fit_are_named() -> None:
    # the error said "expected 2 features (last axis; as at fit), found 3", naming no column
    frame = pd.DataFrame({"time": np.arange(30.0), "a": np.sin(np.arange(30.0)), "b": 1.0})
    est = GPVAE(**{**FAST, "epochs": 1}).fit(frame)
    with pytest.raises(ValidationError, match=r"found \['b'\] missing, \['B'\] besides them"):
        est.impute(frame.rename(columns={"b": "B"}))
    with pytest.raises(ValidationError, match=r"found \['b'\] missing \("):
        est.impute(frame.drop(columns="b"))


def test_a_frame_is_read_by_the_names_of_the_fitted_features() -> None:
    """Audit (session 45): the Python API refused a frame whose feature columns stood in
    another order, or beside other columns, which the command line matches by name. The
    features are now found by name: the same results whatever the order; other columns are
    left out with a warning naming them and kept in the returned frame; a text value in a
    feature advises NaN (the model's feature cannot be left out); validation frames alike."""
    rng = np.random.default_rng(0)
    t = np.arange(40.0)
    frame = pd.DataFrame(
        {"time": t, "a": np.sin(t / 4) + 0.1 * rng.standard_normal(40), "b": np.cos(t / 4)}
    )
    frame.loc[[3, 17], "a"] = np.nan
    frame.loc[9, "b"] = np.nan
    est = GPVAE(**{**FAST, "epochs": 2}, calibrate=False).fit(frame)
    same = est.impute(frame).to_frame()
    moved = frame[["b", "time", "a"]].assign(note="kept")
    with pytest.warns(
        UserWarning, match=r"X: columns \['note'\] are not among the model's features"
    ):
        out = est.impute(moved).to_frame()
    assert list(out.columns[:4]) == ["b", "time", "a", "note"]
    assert (out["note"] == "kept").all()
    np.testing.assert_array_equal(
        out[["a", "b", "a_lower", "b_upper"]], same[["a", "b", "a_lower", "b_upper"]]
    )
    np.testing.assert_array_equal(out["b"].iloc[[0, 5]], frame["b"].iloc[[0, 5]])  # observed kept
    text = moved.astype({"a": object})
    text.loc[2, "a"] = "n.a."
    with pytest.raises(
        InputTypeError,
        match=r"X\['a'\].*'n\.a\.'.*write missing values as NaN \(the column is one of the "
        r"model's features\)$",
    ):
        est.impute(text.drop(columns="note"))
    # validation frames are read by name too, and a target in yet another order
    hidden = frame.copy()
    hidden.loc[[5, 25], "a"] = np.nan
    train = hidden.copy()
    with pytest.warns(
        UserWarning, match=r"X_val: columns \['note'\] are not among the features of X"
    ):
        fitted = GPVAE(**{**FAST, "epochs": 2}, calibrate=False).fit(
            train,
            X_val=hidden[["a", "b", "time"]].assign(note=1.0),
            X_val_target=frame[["time", "b", "a"]],
        )
    reference = GPVAE(**{**FAST, "epochs": 2}, calibrate=False).fit(
        train, X_val=hidden, X_val_target=frame
    )
    assert [h["val_score"] for h in fitted.history_] == [h["val_score"] for h in reference.history_]
    # a validation frame without one of X's features names it (audit, session 47: it said
    # "expected 2 features (last axis; as at fit), found 1", array words for a frame)
    for key in ("X_val", "X_val_target"):
        given = {"X_val": hidden, "X_val_target": frame, key: frame.drop(columns="b")}
        with pytest.raises(ValidationError, match=rf"^{key}: .*found \['b'\] missing"):
            GPVAE(**{**FAST, "epochs": 1}).fit(train, **given)


@pytest.mark.filterwarnings("ignore:forecast_horizon:UserWarning")  # uncalibrated forecasts
def test_a_series_far_from_the_training_origin_keeps_its_times_apart() -> None:
    """Audit T #1: the scaled times of every series were cast to float32 with one shift, the
    training origin: a series 200 samples one second apart a year (3.15e7 steps, beyond
    2**24) after it kept 101 of its 200 distinct times, and its imputed gap came out in
    flat runs. Each series is now moved by its own whole steps: the far series is read
    exactly like the same series at the origin (same latents, forecasts and samples)."""
    rng = np.random.default_rng(0)
    T, year = 200, 365 * 24 * 3600.0
    t0, t1 = np.arange(T, dtype=float), year + np.arange(T, dtype=float)
    X0 = np.sin(t0 / 10)[:, None] + 0.05 * rng.standard_normal((T, 1))
    X1 = np.sin(t1 / 10)[:, None] + 0.05 * rng.standard_normal((T, 1))
    X1[50:60] = np.nan  # a gap to impute
    est = GPVAE(**{**FAST, "epochs": 2}, calibrate=False).fit([X0, X1], times=[t0, t1])
    ctx = est._context("impute")
    batch = ctx.batch(ctx.input([X1], [t1])[1], np.array([0]))
    assert len(torch.unique(batch.x[0, :, 0])) == T
    near = t1 - year  # the same series, starting at the training origin
    far_mean, far_var = est.latent([X1], times=[t1])
    near_mean, near_var = est.latent([X1], times=[near])
    assert (np.diff(far_mean[0], axis=0) != 0).all()  # no flat runs (99 of 199 steps were)
    assert np.array_equal(far_mean[0], near_mean[0])
    assert np.array_equal(far_var[0], near_var[0])
    far_fc = est.forecast([X1], times=[t1], horizon=4, num_samples=20).mean
    near_fc = est.forecast([X1], times=[near], horizon=4, num_samples=20).mean
    assert np.array_equal(np.asarray(far_fc), np.asarray(near_fc))
    assert np.array_equal(est.sample(t1[:50], 2), est.sample(near[:50], 2))


@pytest.mark.parametrize("posterior", ["diagonal", "banded"])
@pytest.mark.parametrize(
    "kernel",
    ["periodic", "periodic+periodic", "periodic*periodic", HarmonicPeriodic(period=24.0)],
    ids=str,
)
def test_a_finite_rank_kernel_is_refused_with_posteriors_of_independent_points(
    kernel: Any, posterior: str
) -> None:
    """The diagonal and banded posteriors' KL to the resonator kernel's rank-7 prior is
    infinite: fit 'succeeded' with a KL of 3e13 per entry, or failed with NaN and advice to
    lower lr; now the constructor refuses, naming posterior and kernel."""
    period = 24 if isinstance(kernel, str) else None
    with pytest.raises(ValidationError, match=r"^posterior: expected 'structured' with kernel="):
        GPVAE(**FAST, kernel=kernel, posterior=posterior, period=period)
    GPVAE(**FAST, kernel=kernel, posterior="structured", period=period)
    for full_rank in ("matern32+periodic", "periodic*matern52"):
        GPVAE(**FAST, kernel=full_rank, posterior=posterior, period=24)


@pytest.mark.parametrize(("period", "learned"), [(8, False), (None, True)])
def test_load_keeps_which_periods_are_learned(
    period: int | None, learned: bool, tmp_path: Path
) -> None:
    """A period given to GPVAE is fixed in training, but came back learnable after load
    (persistence built the model with learn_period=True): fine-tuning the loaded model moved
    it. Periods found in the data stay learned."""
    X, _ = smooth_series(4, 40)
    fitted = GPVAE(**{**FAST, "epochs": 1}, kernel="matern32+periodic", period=period).fit(X)
    fitted.save(tmp_path / "m")
    loaded = GPVAE.load(tmp_path / "m")
    for est in (fitted, loaded):
        flags = {n: p.requires_grad for n, p in est.model_.prior.named_parameters()}
        periods = [flag for n, flag in flags.items() if "period" in n]
        assert periods, flags
        assert all(flag is learned for flag in periods), flags
    # every other hyper-parameter keeps its flag too
    assert {n: p.requires_grad for n, p in loaded.model_.named_parameters()} == {
        n: p.requires_grad for n, p in fitted.model_.named_parameters()
    }


def test_numpy_periods_and_lengthscales_where_they_are_used() -> None:
    """period=np.int64(24) was refused ('found int64') while numpy lengthscales were taken;
    a lengthscale is still taken where a factor uses it (one value for a list of names of
    which one takes it, the noise kernel of gaussian_gp)."""
    est = GPVAE(kernel="periodic", period=np.int64(24))
    assert est.period == 24
    assert type(est.period) is int  # JSON-able in get_config
    assert GPVAE(kernel="periodic", period=[np.float32(12.5)]).period == [12.5]
    GPVAE(kernel=["white", "matern32"], latent_dim=2, lengthscale=3)
    GPVAE(kernel="white", likelihood="gaussian_gp", lengthscale=3)
    GPVAE(kernel="matern32+periodic", period=24, lengthscale=3)


def test_state_space_messages_name_every_kernel_that_has_one() -> None:
    """The errors said a state-space form means 'Matern12/32/52 or sums of them', though
    trend, periodic and (quasi-periodic) products have one too."""
    from gpvae.kernels import RBF

    with pytest.raises(ValidationError, match=r"^backend: .*trend, periodic, and sums and prod"):
        GPVAE(kernel="rbf", backend="markov")
    with pytest.raises(ValidationError, match=r"^kernel: .*HarmonicPeriodic, and sums and prod"):
        RBF().state_space()
    GPVAE(kernel="trend+periodic*matern32", backend="markov", period=24)


def test_long_predictions_show_a_progress_bar(
    fitted: tuple[GPVAE, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """impute, anomaly scores, forecast and latent ran silently however long they took (a
    1e5-row file: 45 s with nothing on stderr, audit B3): with the estimator's ``progress``
    on, a call over several batches shows a bar named for it once it has run
    PREDICT_PROGRESS_DELAY seconds; results are the same with or without it."""
    est, X = fitted
    monkeypatch.setattr(settings, "PREDICT_PROGRESS_DELAY", 0.0)
    monkeypatch.setattr(est, "batch_size", 4)  # 16 series: 4 batches
    monkeypatch.setattr(settings, "ANOMALY_WINDOW_BATCH", 4)  # anomaly scores' windows
    quiet = est.impute(X, num_samples=20)  # FAST fits quietly: progress=False
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(est, "progress", True)
    shown = est.impute(X, num_samples=20)
    assert "impute" in capsys.readouterr().err
    assert same_bits(quiet.mean, shown.mean)
    assert same_bits(quiet.upper, shown.upper)
    est.anomaly_scores(X, num_samples=4)
    assert "anomaly scores" in capsys.readouterr().err
    est.latent(X)
    assert "latent" in capsys.readouterr().err
    est.forecast(X, horizon=2, num_samples=4)
    assert "forecast" in capsys.readouterr().err
    # a quick call shows nothing
    monkeypatch.setattr(settings, "PREDICT_PROGRESS_DELAY", 60.0)
    est.impute(X, num_samples=20)
    assert capsys.readouterr().err == ""


def test_impute_of_one_series_shows_its_progress_by_chunks_of_draws(
    fitted: tuple[GPVAE, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """impute's bar ticked per batch, so one long series (a single batch) showed nothing
    however long it ran (session 42's left-out): it ticks after every chunk of draws now;
    results are the same with or without it."""
    est, X = fitted
    monkeypatch.setattr(settings, "PREDICT_PROGRESS_DELAY", 0.0)
    monkeypatch.setattr(settings, "SAMPLE_CHUNK", 8)  # 20 draws: 3 chunks
    one = X[:1]
    quiet = est.impute(one, num_samples=20)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(est, "progress", True)
    shown = est.impute(one, num_samples=20)
    err = capsys.readouterr().err
    assert "impute:" in err
    assert "/20 " in err  # 20 draws of one batch
    assert same_bits(quiet.mean, shown.mean)
    assert same_bits(quiet.lower, shown.lower)
    monkeypatch.setattr(settings, "SAMPLE_CHUNK", 32)  # one chunk of one batch: no bar
    est.impute(one, num_samples=20)
    assert capsys.readouterr().err == ""


def test_sample_and_future_times_that_float32_cannot_resolve_are_refused(
    fitted: tuple[GPVAE, np.ndarray],
) -> None:
    """fit and impute refuse series whose times float32 cannot resolve, but sample(times=...)
    drew at them without a word (audit R: 1-s times two years on merged in groups of 3-4,
    the draws a staircase), and forecast's future_times were not checked with the history."""
    est, X = fitted
    far = np.concatenate([np.arange(100.0), 6.3e7 + np.arange(100.0)])
    with pytest.raises(ValidationError, match=r"^times: expected times that float32"):
        est.sample(far, num_samples=1)
    assert est.sample(6.3e7 + np.arange(100.0), num_samples=1).shape == (1, 100, X.shape[2])
    future = np.broadcast_to(6.3e7 + np.arange(3.0), (len(X), 3))
    with pytest.raises(ValidationError, match=r"^future_times: expected times that float32"):
        est.forecast(X, future_times=future, num_samples=20)
    assert est.forecast(X, future_times=future[:, :1] * 0 + 25.0, num_samples=20).mean.shape
    # the history's times are checked in the model's scaled units, as the future's (the
    # first version mixed the input's units with the scaled ones and refused ordinary
    # forecasts of a model whose time step is not 1: test_fuzz_fit found it)
    far, _ = smooth_series(4, 20)
    # float32 at 1e6 holds steps of 0.0625; the series start between the model's steps
    times = 1e6 + 0.01 * np.arange(20.0) + 0.0033 * np.arange(4.0)[:, None]
    model = GPVAE(**FAST).fit(far, times)
    fc = model.forecast(far, times, horizon=2, num_samples=20)
    assert fc.mean.shape == (4, 2, far.shape[2])
