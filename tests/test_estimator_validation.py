"""Validation on hidden ground truth, block hold-outs, artificial missingness, ragged records.

Covers :mod:`gpvae.estimator.validation`, :mod:`gpvae.data.holdout`, the model's training
mask, and the robustness of ``fit`` / ``impute`` on real-record shapes (single-step and empty
series, repeated and far-away timestamps).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
import pytest
import torch

from gpvae import GPVAE
from gpvae.batch import Batch
from gpvae.data import merge_duplicate_times, to_series_set
from gpvae.data.holdout import hide_mask, hold_out_blocks
from gpvae.errors import GPVAEError, InputTypeError, ShapeError, ValidationError
from gpvae.estimator.validation import hidden_targets, validation_split
from gpvae.gp import GPPrior
from gpvae.kernels import Matern32
from gpvae.likelihoods import Gaussian
from gpvae.model import GPVAEModel
from gpvae.nets import MLPDecoder, MLPEncoder
from gpvae.posteriors import StructuredPosterior

FAST = {"latent_dim": 2, "hidden": (16,), "epochs": 3, "batch_size": 8, "progress": False}


def _sines(n: int, T: int, seed: int = 0, missing: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """(n, T, 2) noisy sinusoids with NaN gaps, and the complete values."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)[None, :, None]
    full = np.sin(t / 4 + rng.uniform(0, 6, (n, 1, 1))) * np.array([1.0, 2.0])
    full = full + 0.1 * rng.standard_normal((n, T, 2))
    X = np.where(rng.random(full.shape) < missing, np.nan, full)
    X[:, 0, 0] = full[:, 0, 0]
    return X, full


def _runs(mask: np.ndarray) -> list[int]:
    """Lengths of the runs of True along axis 0 of every column of a (T, D) mask."""
    out = []
    for col in mask.T:
        padded = np.concatenate([[False], col, [False]]).astype(int)
        edges = np.flatnonzero(np.diff(padded))
        out += list(edges[1::2] - edges[::2])
    return out


# ---------------------------------------------------------------- hiding


def test_hold_out_blocks_hides_runs_of_observed_entries() -> None:
    X, _ = _sines(30, 60, missing=0.0)
    ss = to_series_set(X)
    kept, held = hold_out_blocks(ss, 0.1, (5, 12), seed=3)
    hidden = np.stack([~np.isnan(h) for h in held.values])
    assert 0.08 <= hidden.mean() <= 0.2
    for i in range(30):
        # kept and held split the observed entries exactly
        both = np.where(hidden[i], held.values[i], kept.values[i])
        np.testing.assert_array_equal(both, X[i])
        runs = _runs(hidden[i])
        assert max(runs) <= 24  # two blocks may touch; each is 5..12 steps
        assert np.mean(np.array(runs) >= 5) > 0.9
    # the same seed gives the same blocks
    again = hold_out_blocks(ss, 0.1, (5, 12), seed=3)[1]
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(again.values, held.values))


def test_hold_out_steps_hides_runs_of_whole_steps() -> None:
    """pattern="steps" hides runs of consecutive steps with every feature hidden (a gap
    where nothing is observed), about the fraction asked; "blocks" hides one feature."""
    X, _ = _sines(30, 60, missing=0.0)
    ss = to_series_set(X)
    kept, held = hold_out_blocks(ss, 0.1, (5, 12), seed=3, pattern="steps")
    hidden = np.stack([~np.isnan(h) for h in held.values])  # (n, T, D)
    assert 0.08 <= hidden.mean() <= 0.2
    assert (hidden.all(axis=2) == hidden.any(axis=2)).all()  # whole steps only
    for i in range(30):
        both = np.where(hidden[i], held.values[i], kept.values[i])
        np.testing.assert_array_equal(both, X[i])
        runs = _runs(hidden[i, :, :1])
        assert np.mean(np.array(runs) >= 5) > 0.9
    blocks = np.stack([~np.isnan(h) for h in hold_out_blocks(ss, 0.1, (5, 12), seed=3)[1].values])
    assert (blocks.all(axis=2) != blocks.any(axis=2)).any()  # blocks: one feature at a time
    with pytest.raises(ValidationError, match=r"^pattern: expected one of"):
        hold_out_blocks(ss, 0.1, (5, 12), seed=3, pattern="points")


def test_val_pattern_steps_holds_out_whole_steps_for_validation() -> None:
    """GPVAE(val_pattern="steps") is accepted (it was refused) and the validation split
    holds out whole steps of the training data, which trains without them."""
    X, _ = _sines(12, 40, missing=0.0)
    est = GPVAE(**FAST, val_pattern="steps", mask_pattern="steps", block_lengths=(3, 5))
    assert (est.val_pattern, est.mask_pattern) == ("steps", "steps")
    ss = to_series_set(X)
    train, validation = validation_split(
        ss, None, None, pattern="steps", fraction=0.2, lengths=(3, 5), seed=0
    )
    assert validation is not None
    held = np.stack([~np.isnan(h) for h in validation[1].values])
    assert held.any()
    assert (held.all(axis=2) == held.any(axis=2)).all()
    assert np.isnan(np.stack(train.values)[held]).all()
    est.fit(X)
    assert np.isfinite(est.interval_scale_).all()


def test_hold_out_blocks_keeps_one_entry_per_series() -> None:
    ss = to_series_set([np.array([[1.0], [2.0]])])
    kept, _ = hold_out_blocks(ss, 0.9, (2, 2), seed=0)
    assert (~np.isnan(kept.values[0])).sum() == 1


@pytest.mark.parametrize("pattern", ["points", "blocks", "steps"])
def test_hide_mask_rate_shape_and_observed_only(pattern: str) -> None:
    g = torch.Generator().manual_seed(0)
    observed = torch.rand(64, 100, 5, generator=g) < 0.7
    hide = hide_mask(observed, 0.2, pattern, (5, 15), g)
    assert not (hide & ~observed).any()
    share = float(hide.sum() / observed.sum())
    assert 0.14 <= share <= 0.22
    full = hide_mask(torch.ones(64, 100, 5, dtype=torch.bool), 0.2, pattern, (5, 15), g)
    runs = _runs(full.reshape(-1, 5).numpy())  # series run into each other: only a bound
    if pattern == "points":
        assert np.mean(np.array(runs) == 1) > 0.7
    else:
        assert np.mean(np.array(runs) >= 5) > 0.9
    if pattern == "steps":  # every feature of a hidden step, where observed
        assert (full.all(-1) == full.any(-1)).all()
        assert (hide == (hide.any(-1, keepdim=True) & observed)).all()


def test_training_mask_hides_entries_from_the_encoder_only_in_train_mode() -> None:
    seen: list[int] = []

    class Spy(MLPEncoder):
        def forward(self, y: torch.Tensor, observed: torch.Tensor) -> tuple[torch.Tensor, ...]:
            seen.append(int(observed.sum()))
            return super().forward(y, observed)

    torch.manual_seed(0)
    model = GPVAEModel(
        Spy(3, 2, (8,)), StructuredPosterior(), GPPrior(Matern32(), 2), MLPDecoder(2, 3, (8,)),
        Gaussian(3), mask_rate=0.3,
    )  # fmt: skip
    batch = Batch.from_tensors(torch.randn(4, 20, 3))
    g = torch.Generator().manual_seed(1)
    model.train()
    res = model.elbo(batch, generator=g)
    assert 0.6 * 240 <= seen[-1] <= 0.8 * 240
    # every observed entry is still scored: the log-likelihood matches the full batch's
    assert torch.isfinite(res.elbo).all()
    model.eval()
    model.elbo(batch, generator=g)
    assert seen[-1] == 240
    with pytest.raises(GPVAEError, match="mask_rate"):
        GPVAE(mask_rate=1.0)
    with pytest.raises(GPVAEError, match="mask_pattern"):
        GPVAE(mask_pattern="stripes")
    with pytest.raises(GPVAEError, match="block_lengths"):
        GPVAE(block_lengths=(5, 2))
    with pytest.raises(GPVAEError, match="val_pattern"):
        GPVAE(val_pattern="lines")


# ---------------------------------------------------------------- hidden ground truth


def test_hidden_targets_are_the_entries_missing_from_x_val() -> None:
    X, full = _sines(6, 20)
    ss, target = to_series_set(X), to_series_set(full)
    held = hidden_targets(ss, target)
    for i in range(6):
        expect = np.where(np.isnan(X[i]), full[i], np.nan)
        np.testing.assert_array_equal(held.values[i], expect)
    with pytest.raises(ShapeError, match=r"^X_val_target"):
        hidden_targets(ss, to_series_set(full[:5]))
    other = full.copy()
    other[2, 0, 0] += 1.0
    with pytest.raises(ValidationError, match=r"^X_val_target.*series 2, step 0"):
        hidden_targets(ss, to_series_set(other))
    with pytest.raises(ValidationError, match=r"^X_val_target.*found none"):
        hidden_targets(ss, ss)


def test_hidden_targets_that_differ_from_x_val_say_how_many_and_where() -> None:
    """X_val_target differing from X_val where X_val observes an entry was refused as
    "found np.float64(999.0) against np.float64(142.0) in series 0, step 2, feature 1":
    numpy reprs, positions only, and not how many differ (audit M #4)."""
    val = pd.DataFrame(
        {"id": ["a"] * 4 + ["b"] * 4, "time": np.tile(np.arange(4.0), 2),
         "hr": [80.0, np.nan, 82.0, 83.0, 70.0, 71.0, np.nan, 73.0],
         "bp": [140.0, 141.0, 142.0, np.nan, 120.0, 121.0, 122.0, 123.0]}
    )  # fmt: skip
    target = val.fillna(99.0)
    target.loc[2, "bp"] = 999.0
    target.loc[5, "hr"] = 0.0
    with pytest.raises(
        ValidationError,
        match=r"^X_val_target: expected the values of X_val where both are observed, found 2 "
        r"that differ, the first 999\.0 against 142\.0 in series 0 \(id 'a'\), step 2, "
        r"feature 1 \('bp'\)",
    ):
        hidden_targets(to_series_set(val), to_series_set(target))


def test_validation_split_sources() -> None:
    X, _full = _sines(10, 40, missing=0.0)
    ss = to_series_set(X)
    kw = {"fraction": 0.1, "lengths": (5, 10), "seed": 0}
    assert validation_split(ss, None, None, pattern="points", **kw) == (ss, None)
    train, (v_in, v_tgt) = validation_split(ss, None, None, pattern="blocks", **kw)
    assert train is v_in  # the training input loses the held-out blocks
    assert train.num_observed + v_tgt.num_observed == ss.num_observed
    train, (v_in, v_tgt) = validation_split(ss, ss, None, pattern="blocks", **kw)
    assert train is ss
    assert v_tgt.num_observed > 0
    with pytest.raises(ValidationError, match=r"^X_val_target"):
        validation_split(ss, None, ss, pattern="points", **kw)
    # training series cut into windows later: points are held out here, of whole series
    train, (v_in, v_tgt) = validation_split(ss, None, None, pattern="points", windows=True, **kw)
    assert train is v_in
    assert train.num_observed + v_tgt.num_observed == ss.num_observed
    assert validation_split(ss, ss, None, pattern="points", windows=True, **kw) == (ss, None)


def test_fit_validates_and_calibrates_on_hidden_blocks() -> None:
    """With X_val_target, the validation score is the MAE of the hidden entries, and the
    intervals calibrated on hidden blocks cover fresh hidden blocks near 90%."""
    X, full = _sines(60, 40, seed=1, missing=0.0)
    blocks = hold_out_blocks(to_series_set(X), 0.15, (6, 12), seed=5)[0]
    X_blocks = np.stack(blocks.values)
    Xtr, Xva, Xte = X_blocks[:30], X_blocks[30:45], X_blocks[45:]
    est = GPVAE(**{**FAST, "epochs": 10}, seed=0).fit(Xtr, X_val=Xva, X_val_target=full[30:45])
    # the score of the kept epoch is the standardised MAE of the hidden validation entries
    hidden_va = np.isnan(Xva)
    mean = est.impute(Xva, num_samples=64).mean
    mae = (np.abs(mean - full[30:45]) / est.scaler_.std_)[hidden_va].mean()
    best = min(h["val_score"] for h in est.history_)
    assert abs(best - mae) < 0.15 * mae
    # observed-entry scores would be far lower: the model sees those entries
    assert mae > 2 * (np.abs(mean - Xva) / est.scaler_.std_)[~hidden_va].mean()
    hidden_te = np.isnan(Xte)
    res = est.impute(Xte, num_samples=64)
    inside = (res.lower <= full[45:]) & (full[45:] <= res.upper)
    assert 0.82 <= inside[hidden_te].mean() <= 0.98
    assert np.array_equal(res.mean[~hidden_te], Xte[~hidden_te])


def _target_warnings(*args: object, **kwargs: object) -> list[str]:
    """The X_val_target warnings of a quick fit."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        GPVAE(**{**FAST, "epochs": 1}).fit(*args, **kwargs)
    return [str(w.message) for w in caught if str(w.message).startswith("X_val_target")]


def test_hidden_targets_observed_in_the_training_data_warn() -> None:
    """fit(X_true, X_val=X_masked, X_val_target=X_true) trained on the very entries it
    validates on, without a word: it warns with their count (arrays: the series at the same
    position with the same values; long frames: the same id, at the same times). X with
    them hidden, or validation series of their own (same shapes), do not warn."""
    X, _ = _sines(12, 30, missing=0.1)
    hide = ~np.isnan(X) & (np.random.default_rng(3).random(X.shape) < 0.1)
    X_masked = np.where(hide, np.nan, X)
    (message,) = _target_warnings(X, X_val=X_masked, X_val_target=X)
    assert f"found {hide.sum()} of its {hide.sum()} observed in X" in message
    assert not _target_warnings(X_masked, X_val=X_masked, X_val_target=X)
    other, _ = _sines(12, 30, seed=1, missing=0.1)
    assert not _target_warnings(other, X_val=X_masked, X_val_target=X)

    # long frames: by id, in another order, at the times both hold
    def long(A: np.ndarray, ids: list[str], start: int = 0) -> pd.DataFrame:
        rows = [(i, float(t), *r) for i, a in zip(ids, A) for t, r in enumerate(a[start:], start)]
        return pd.DataFrame(rows, columns=["id", "time", "a", "b"])

    ids = [f"s{i}" for i in range(12)]
    train = long(X[::-1], ids[::-1], start=10)  # X's steps 10.. of every series
    (message,) = _target_warnings(
        train, X_val=long(X_masked[:4], ids[:4]), X_val_target=long(X[:4], ids[:4])
    )
    assert f"found {hide[:4, 10:].sum()} of its {hide[:4].sum()} observed" in message
    # a separate validation split (other series) whose ids restart like X's: no leak
    # (the ids were paired alone, and the warning counted entries of other series)
    val_ids = [f"s{i}" for i in range(4)]
    assert not _target_warnings(
        long(other, ids), X_val=long(X_masked[:4], val_ids), X_val_target=long(X[:4], val_ids)
    )


def test_fit_with_val_pattern_blocks_runs_and_rejects_target_without_x_val() -> None:
    X, full = _sines(20, 30)
    est = GPVAE(**FAST, val_pattern="blocks", block_lengths=(3, 6)).fit(X)
    assert all(np.isfinite(h["val_score"]) for h in est.history_)
    with pytest.raises(ValidationError, match=r"^X_val_target"):
        GPVAE(**FAST).fit(X, X_val_target=full)


def test_points_held_out_with_window_are_hidden_in_every_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With ``window`` the default points hold-out is drawn on the whole series before it
    is cut into half-overlapping windows: no validation target is observed in any training
    window (drawn per window, most stayed observed in the window next to theirs)."""
    import gpvae.estimator.estimator as estimator_module

    sessions = []

    class Spy(estimator_module.FitSession):  # type: ignore[misc, name-defined]
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            sessions.append(self)

    monkeypatch.setattr(estimator_module, "FitSession", Spy)
    X, _ = _sines(1, 200, missing=0.1)
    GPVAE(**{**FAST, "epochs": 1}, window=20).fit(X)
    session = sessions[0]

    def entries(data: object) -> set[tuple[float, int]]:
        return {
            (float(t[k]), int(d))
            for v, t in zip(data.values, data.times)  # type: ignore[attr-defined]
            for k, d in zip(*np.nonzero(~np.isnan(v)))
        }

    assert session.train_input.num_series > 10  # the windows
    targets = entries(session.val_target)
    assert len(targets) > 0.05 * (~np.isnan(X)).sum()
    assert not targets & entries(session.train_input)
    assert not targets & entries(session.val_input)


def test_mask_settings_are_saved(tmp_path: Path) -> None:
    X, _ = _sines(12, 20)
    est = GPVAE(**FAST, mask_rate=0.25, mask_pattern="blocks", block_lengths=(2, 4)).fit(X)
    est.save(tmp_path / "m")
    back = GPVAE.load(tmp_path / "m")
    assert (back.mask_rate, back.mask_pattern, back.block_lengths) == (0.25, "blocks", (2, 4))
    assert back.model_.mask_rate == 0.25
    np.testing.assert_allclose(
        back.impute(X, num_samples=4).mean, est.impute(X, num_samples=4).mean
    )


# ---------------------------------------------------------------- real-record shapes


def test_single_step_and_empty_series_are_accepted() -> None:
    X, _ = _sines(16, 20)
    ragged = [*X, np.array([[0.3, np.nan]]), np.full((4, 2), np.nan)]
    with pytest.warns(UserWarning, match="1 series with no observed entry left out"):
        est = GPVAE(**FAST).fit(ragged)
    with pytest.warns(UserWarning, match="no observed entry"):
        res = est.impute(ragged[-3:], num_samples=8)
    assert res.mean[1][0, 0] == 0.3
    assert np.isfinite(res.mean[1]).all()
    assert np.isfinite(res.mean[2]).all()
    assert np.isfinite(res.upper[2]).all()
    # an empty series gets the model's prior level: near the training mean
    assert np.all(np.abs(res.mean[2].mean(0) - np.nanmean(X, axis=(0, 1))) < 1.0)
    # a single-step series forecasts in steps of the training data's time step
    fc = est.forecast([np.array([[0.3, 0.1]])], times=[np.array([5.0])], horizon=3)
    np.testing.assert_allclose(fc.times[0], [6.0, 7.0, 8.0])
    assert np.isfinite(fc.mean[0]).all()
    with pytest.raises(ValidationError, match=r"^X"):
        GPVAE(**FAST).fit([np.full((4, 2), np.nan)])


def test_times_far_outside_the_training_range_warn() -> None:
    X, _ = _sines(16, 20)
    est = GPVAE(**FAST).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est.impute(X[:2], times=np.arange(20.0) + 100.0, num_samples=19)  # near: no warning
    # seconds for hours: starts at 0, inside the range, but spaced 3600 times the time step
    # and so ending far after it
    with pytest.warns(UserWarning, match="time spacing far from the training") as caught:
        est.impute(X[:2], times=np.arange(20.0) * 3600.0, num_samples=19)
    said = str(caught[0].message)
    assert "series end far outside the training range [0, 19]" in said
    assert "expected a median spacing within a factor of 10 of the training time step 1" in said
    assert "found 3600 in series 0, ending at 68400" in said
    assert "check the time unit and origin" in said
    # minutes for hours, and days read as hours (from the same origin): they warned before
    # the start rule came in, and still do (audit R2)
    for factor in (60.0, 24.0):
        with pytest.warns(UserWarning, match="time spacing far from the training"):
            est.impute(X[:2], times=np.arange(20.0) * factor, num_samples=19)
    # a wrong origin: spaced as at fit, but starting far after the training range
    with pytest.warns(UserWarning, match="start far outside the training range") as caught:
        est.impute(X[:2], times=np.arange(20.0) + 1e6, num_samples=19)
    said = str(caught[0].message)
    assert "e.g. at 1e+06 in series 0" in said
    assert "check the time unit and origin" in said
    assert not any("time spacing" in str(w.message) for w in caught)
    # the warnings point at the caller's line (they pointed into estimator.py and
    # forecast_methods.py), as do those of series with nothing observed
    far = np.arange(20.0) * 3600.0
    empty = X[:2].copy()
    empty[0] = np.nan
    calls = {
        "impute": lambda: est.impute(X[:2], times=far, num_samples=20),
        "forecast": lambda: est.forecast(X[:2], times=far, horizon=2, num_samples=20),
        "latent": lambda: est.latent(X[:2], times=far),
        "anomaly_scores": lambda: est.anomaly_scores(X[:2], times=far),
        "calibrate_forecast": lambda: est.calibrate_forecast(X[:2], times=far, horizon=2),
        "impute (wrong origin)": lambda: est.impute(X[:2], times=far / 3600 - 1e6, num_samples=20),
        "impute (empty)": lambda: est.impute(empty, num_samples=20),
    }
    for name, call in calls.items():
        with pytest.warns(UserWarning, match=r"time unit and origin|no observed entry") as caught:
            call()
        said = [w for w in caught if re.search("unit and origin|no observed entry", str(w.message))]
        assert [w.filename for w in said] == [__file__], name


def test_validation_times_in_another_unit_warn_as_prediction_times_do() -> None:
    """fit(X_val=..., times_val=...) read times_val in the training data's units without a
    word (x1000, dates for a model of numbers, numbers for a model of dates), where impute
    warned on the very same times (audit A1 #5)."""
    X, _ = _sines(6, 30)
    steps = np.tile(np.arange(30.0), (6, 1))
    days = np.datetime64("2021-01-01") + np.arange(30) * np.timedelta64(1, "D")
    dates = np.tile(days, (6, 1))
    cases = {
        "x1000": (steps, steps * 1000.0, r"^X_val: 6 series end far outside .* found 1000"),
        "dates for numbers": (steps, dates, r"^X_val: 6 series end far outside .* found 24"),
        "numbers for dates": (dates, steps * 24.0, r"^times_val: expected datetimes"),
    }
    for name, (times, times_val, message) in cases.items():
        with pytest.warns(UserWarning, match=message) as caught:
            GPVAE(**{**FAST, "epochs": 1}).fit(X, times, X_val=X, times_val=times_val)
        said = [w for w in caught if re.match(message, str(w.message))]
        assert [w.filename for w in said] == [__file__], name  # the caller's line
    with warnings.catch_warnings():  # the training data's own times: no warning
        warnings.simplefilter("error")
        GPVAE(**{**FAST, "epochs": 1}).fit(X, steps, X_val=X, times_val=steps + 5.0)
        GPVAE(**{**FAST, "epochs": 1}).fit(X, dates, X_val=X, times_val=dates)


def test_data_that_continue_after_a_short_training_stretch_do_not_warn() -> None:
    """Monitoring (NAB): fitted on the first 761 steps of a stream, scored on the 9,195 steps
    that follow. The scored series ends about 12 training widths after the training end,
    which warned "far outside the training range" on every call; it starts right after the
    training data and keeps their spacing, so nothing looks like a unit or origin mistake."""
    rng = np.random.default_rng(0)
    stamps = pd.date_range("2014-02-14 14:30", periods=761 + 9195, freq="5min")
    value = np.sin(np.arange(stamps.size) / 40) + 0.1 * rng.standard_normal(stamps.size)
    frame = pd.DataFrame({"timestamp": stamps, "value": value}).set_index("timestamp")
    est = GPVAE(**{**FAST, "epochs": 1}).fit(frame.iloc[:761])
    later = frame.iloc[761:]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = est.anomaly_scores(later, num_samples=2, num_folds=2)
        est.impute(later.iloc[:500], num_samples=19)  # a later stretch, not after the end
        est.impute(later.iloc[-500:], num_samples=19)
    assert np.isfinite(np.asarray(res.step)).all()


def test_training_series_of_other_sampling_rates_do_not_warn() -> None:
    """One table of two one-minute sensors and a three-hourly one (audit R1): the pooled
    time step is a minute, the slow sensor's spacing 180 times it. Its own training data
    warned 'time spacing far from the training data's' on every call, and in gpvae fit; a
    series inside the training range is never a unit mistake."""
    rng = np.random.default_rng(0)
    parts = []
    for sid, freq, n in [("fast1", "1min", 1440), ("fast2", "1min", 1440), ("slow", "3h", 8)]:
        t = pd.date_range("2021-01-01", periods=n, freq=freq)
        a = np.sin(np.arange(n) / 50.0) + 0.1 * rng.normal(size=n)
        parts.append(pd.DataFrame({"id": sid, "time": t, "a": a, "b": np.cos(np.arange(n) / 30)}))
    frame = pd.concat(parts, ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = GPVAE(**{**FAST, "epochs": 1, "window": 64}).fit(frame)
        est.impute(frame, num_samples=19)
        est.anomaly_scores(frame[frame["id"] == "slow"], num_samples=2, num_folds=2)


def test_num_samples_below_two_is_refused_alike() -> None:
    """num_samples=0 said "expected an integer >= 1" while num_samples=1 said "at least 2
    draws" (audit M #7): every count below 2, and a count that is no integer, now get the
    same expectation."""
    X, _ = _sines(8, 12)
    est = GPVAE(**FAST).fit(X)
    expected = r"^num_samples: expected at least 2 draws for the interval \[lower, upper\]"
    for call in (
        lambda s: est.impute(X[:1], num_samples=s),
        lambda s: est.forecast(X[:1], horizon=2, num_samples=s),
    ):
        for s in (0, -3, 1):
            with pytest.raises(ValidationError, match=rf"{expected}, found {s}$"):
                call(s)
        with pytest.raises(InputTypeError, match=rf"{expected} \(an integer\), found 2\.5$"):
            call(2.5)


def test_num_samples_must_give_an_interval() -> None:
    """One draw is refused (lower == upper); draws too few for the interval's level warn,
    naming how many it needs: 19 for (0.05, 0.95), read at positions p (S + 1)."""
    X, _ = _sines(8, 12)
    est = GPVAE(**FAST).fit(X)
    for call in (
        lambda s, q: est.impute(X[:1], num_samples=s, quantiles=q),
        lambda s, q: est.forecast(X[:1], horizon=2, num_samples=s, quantiles=q),
    ):
        with pytest.raises(ValidationError, match=r"^num_samples: expected at least 2 draws"):
            call(1, (0.05, 0.95))
        with pytest.warns(UserWarning, match="needs at least 19 draws") as caught:
            call(18, (0.05, 0.95))
        assert caught[0].filename == __file__  # the warning points at the user's call
        with pytest.warns(UserWarning, match="needs at least 3 draws"):
            call(2, (0.25, 0.75))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            # the forecast's own word that this model's intervals are not calibrated
            warnings.filterwarnings("default", message="forecast_horizon: ")
            call(19, (0.05, 0.95))
            call(3, (0.25, 0.75))
    # bad data with few draws: the error alone (the warning would only add noise before it)
    bad = X[:1].copy()
    bad[0, 0, 0] = np.inf
    for call in (
        lambda: est.impute(bad, num_samples=4),
        lambda: est.forecast(bad, horizon=2, num_samples=4),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(ValidationError, match=r"^X"):
                call()


def test_a_text_feature_gets_advice_its_caller_can_follow() -> None:
    """GPVAE.fit has no feature_cols: the error on a text column taken by default points at
    what works (to_series_set's feature_cols, whose result fit takes), and names the column
    and the value."""
    from gpvae.data import to_series_set

    X, _ = _sines(1, 24)
    frame = pd.DataFrame({"time": np.arange(24.0), "a": X[0, :, 0], "b": X[0, :, 1]})
    frame["wd"] = ["NW"] * 24
    with pytest.raises(InputTypeError, match=r"^X\['wd'\]: expected numeric values") as info:
        GPVAE(**FAST).fit(frame)
    assert "'NW'" in str(info.value)
    assert "to_series_set(X, feature_cols=[...])" in str(info.value)
    assert "pass feature_cols to" not in str(info.value)
    with pytest.raises(InputTypeError, match="leave the column out of feature_cols"):
        to_series_set(frame, feature_cols=["a", "wd"])
    est = GPVAE(**FAST).fit(to_series_set(frame, feature_cols=["a", "b"]))  # the advice works
    assert est.impute(frame[["time", "a", "b"]], num_samples=19).mean.shape == (24, 3)


def test_merge_duplicate_times_arrays_and_frames() -> None:
    values = np.array([[1.0, np.nan], [3.0, 4.0], [5.0, 6.0], [7.0, np.nan]])
    with pytest.warns(UserWarning, match="merged 2 rows into 1"):
        out = merge_duplicate_times([values], [np.array([1.0, 0.0, 1.0, 2.0])])
    np.testing.assert_array_equal(out.times[0], [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(out.X[0], [[3.0, 4.0], [3.0, 6.0], [7.0, np.nan]])
    assert out.merged == [{"series": 0, "time": 1.0, "rows": [0, 2]}]
    frame = pd.DataFrame(
        {"id": ["a", "a", "a", "b"], "time": [0, 0, 1, 0], "hr": [80.0, 90.0, np.nan, 70.0]}
    )
    with pytest.warns(UserWarning, match="merged 2 rows"):
        got = merge_duplicate_times(frame)
    assert got.merged == [{"series": "a", "time": 0, "rows": [0, 1]}]
    assert got.X["hr"].tolist()[0] == 85.0
    assert len(got.X) == 3
    # what merging produced is accepted; the unmerged frame is not, and says what to use
    to_series_set(got.X, allow_single_step=True)
    with pytest.raises(ValidationError, match="merge_duplicate_times"):
        to_series_set(frame, allow_single_step=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = merge_duplicate_times([values[:2]], [np.array([0.0, 1.0])])
    assert same.merged == []


def test_merge_duplicate_times_keeps_datetimes_as_the_user_gave_them() -> None:
    """Datetime times come back as datetimes (not seconds since 1970), and the merged group
    and the warning name the user's own timestamp."""
    t = np.array(["2014-01-07T01:00", "2014-01-07T02:00", "2014-01-07T02:00",
                  "2014-01-07T03:00"], dtype="datetime64[s]")  # fmt: skip
    values = np.array([[1.0], [2.0], [4.0], [5.0]])
    with pytest.warns(UserWarning, match=r"at time 2014-01-07T02:00:00;"):
        got = merge_duplicate_times([values], [t])
    assert got.times is not None
    assert got.times[0].dtype == np.dtype("datetime64[s]")
    np.testing.assert_array_equal(got.times[0], t[[0, 1, 3]])
    np.testing.assert_array_equal(got.X[0][:, 0], [1.0, 3.0, 5.0])
    assert got.merged == [{"series": 0, "time": np.datetime64("2014-01-07T02:00"), "rows": [1, 2]}]
    to_series_set(got.X, got.times)  # what merging produced is accepted


def test_merge_duplicate_times_refuses_rows_without_a_time_or_id() -> None:
    """Rows without a time were merged with each other without a word (nothing in .merged)."""
    long = pd.DataFrame({"time": [0.0, np.nan, np.nan, 2.0], "x": [1.0, 2.0, 3.0, 4.0]})
    with pytest.raises(ValidationError, match=r"X\['time'\]: expected a time on every row, "
                       r"found 2 rows without one \(rows \[1, 2\]\)"):  # fmt: skip
        merge_duplicate_times(long)
    ids = pd.DataFrame({"id": ["a", None, None], "time": [0.0, 1.0, 1.0], "x": [1.0, 2.0, 3.0]})
    with pytest.raises(ValidationError, match=r"X\['id'\]: expected a series id on every row"):
        merge_duplicate_times(ids, id_col="id", time_col="time")
    wide = pd.DataFrame({"x": [1.0, 2.0, 3.0]}, index=pd.to_datetime(["2020-01-01", None, None]))
    with pytest.raises(ValidationError, match=r"X.index: expected a time on every row"):
        merge_duplicate_times(wide)


@pytest.mark.filterwarnings("ignore:time_col. took")  # (the times restart: out of order)
def test_merge_duplicate_times_refuses_text_it_would_average() -> None:
    """Three stays stacked, their ids as text in a column 'patient' and id_col not given:
    merge_duplicate_times crashed with pandas' "dtype 'str' does not support operation
    'mean'"; with whole-number ids it averaged rows of different stays into one series,
    one stay repeating a time, without a word (audit M #2)."""
    t = np.arange(6.0)
    stays = pd.DataFrame(
        {"patient": np.repeat(["133064", "133065", "133066"], 6), "time": np.tile(t, 3),
         "hr": np.arange(18.0)}
    )  # fmt: skip
    stays = pd.concat([stays, stays.iloc[[4]]], ignore_index=True)  # a time logged twice
    with pytest.raises(
        InputTypeError,
        match=r"X\['patient'\]: expected numbers \(the merge averages every column other than "
        r"the id and time\), found 19 text .* such as '133064' \(row 0\); if 'patient' is the "
        r"id of several series stacked, pass id_col='patient'",
    ):
        merge_duplicate_times(stays, time_col="time")
    # a feature held as text beside whole-number ids: drop it (or convert it), name the id
    numbered = stays.assign(patient=np.repeat([1, 2, 3, 1], [6, 6, 6, 1]))
    texts = numbered.assign(hr=numbered["hr"].astype(str))
    with pytest.raises(
        InputTypeError,
        match=r"X\['hr'\]: .* or drop it before merging \(X looks .*id_col='patient'",
    ):
        merge_duplicate_times(texts, time_col="time")
    # whole-number ids: said to look like several series before merging them
    with pytest.warns(UserWarning, match=r"id_col: X looks like several .* id_col='patient'"):
        merge_duplicate_times(numbered, time_col="time")
    # numbers held as objects are still averaged; the ids named, the merge goes through
    held = stays.assign(hr=stays["hr"].astype(object))
    with pytest.warns(UserWarning, match="merged 2 rows into 1"):
        got = merge_duplicate_times(held, id_col="patient", time_col="time")
    assert got.merged == [{"series": "133064", "time": 4.0, "rows": [4, 18]}]
    assert got.X["hr"].dtype == np.float64


def test_gaussian_gp_per_feature_gives_each_feature_its_own_kernel() -> None:
    X, _ = _sines(12, 20)
    est = GPVAE(**FAST, likelihood="gaussian_gp_per_feature").fit(X)
    lik = est.model_.likelihood
    assert lik.per_feature_kernel
    assert lik.gp.latent_dim == 2
    assert np.isfinite(est.impute(X, num_samples=4).mean).all()


def test_lengthscale_also_starts_the_gp_noise_kernels() -> None:
    _X, _ = _sines(8, 12)
    est = GPVAE(**{**FAST, "epochs": 1}, likelihood="gaussian_gp_per_feature", lengthscale=24.0)
    model = est._build_model(2)
    for k in model.likelihood.gp.kernels:
        assert abs(float(k.lengthscale) - 24.0) < 1e-4
    default = GPVAE(**FAST, likelihood="gaussian_gp")._build_model(2)
    assert abs(float(default.likelihood.gp.kernels[0].lengthscale) - 3.0) < 1e-4


def test_lengthscale_per_latent_channel(tmp_path: Path) -> None:
    """One initial lengthscale per latent channel starts each channel's kernel at its own
    value (the channels packed as with one value), survives save/load, and starts the GP
    noise kernel at their median."""
    X, _ = _sines(8, 16)
    est = GPVAE(**{**FAST, "latent_dim": 3, "epochs": 1}, lengthscale=[2, 5, 11])
    assert est.lengthscale == (2.0, 5.0, 11.0)
    assert GPVAE(latent_dim=3, lengthscale=np.array([2, 5, 11])).lengthscale == est.lengthscale
    assert GPVAE(latent_dim=3, lengthscale=np.array(4.0)).lengthscale == 4.0  # a 0-d array
    model = est._build_model(2)
    assert model.prior.packed is not None
    got = [float(k.lengthscale.detach()) for k in model.prior.kernels]
    assert got == pytest.approx([2.0, 5.0, 11.0], rel=1e-6)
    est.fit(X)
    est.save(tmp_path / "m")
    back = GPVAE.load(tmp_path / "m")
    assert back.lengthscale == (2.0, 5.0, 11.0)
    assert est.get_config()["lengthscale"] == [2.0, 5.0, 11.0]  # JSON-able as saved
    learned = [float(k.lengthscale.detach()) for k in est.model_.prior.kernels]
    assert [float(k.lengthscale.detach()) for k in back.model_.prior.kernels] == learned
    noisy = GPVAE(**{**FAST, "latent_dim": 3}, likelihood="gaussian_gp", lengthscale=(2, 5, 11))
    noise = noisy._build_model(2).likelihood.gp.kernels[0]
    assert float(noise.lengthscale.detach()) == pytest.approx(5.0, rel=1e-6)


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [([2.0, 5.0], ValidationError, r"lengthscale: expected one number or 3 .*found 2"),
     ([2.0, -1.0, 3.0], ValidationError, "lengthscale: expected a finite number > 0"),
     ((2.0, float("inf"), 3.0), ValidationError, "lengthscale: expected a finite number"),
     ("3", InputTypeError, "lengthscale: expected a number"),
     ([2.0, "a", 3.0], InputTypeError, "lengthscale: expected a number"),
     ([[2.0], [5.0], [11.0]], ValidationError, r"expected one number or 3 .*shape \(3, 1\)")],
)  # fmt: skip
def test_lengthscale_list_errors_name_the_argument(
    value: object, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        GPVAE(latent_dim=3, lengthscale=value)


def test_spatial_fit_refuses_one_lengthscale_per_channel() -> None:
    from gpvae.estimator.spatial import SpatialSpec, build_spatial_model

    est = GPVAE(latent_dim=2, lengthscale=(2.0, 8.0))
    with pytest.raises(ValidationError, match="lengthscale: expected one number for a spatial"):
        build_spatial_model(est, cast(SpatialSpec, None), 2)


@pytest.mark.parametrize(
    "kwargs",
    [{"id": "stay", "time": "hours"}, {"features": ["HR"]}, {"time": "hours"}, {"inducing": 4}],
)
def test_spatial_only_arguments_without_coords_are_refused(kwargs: dict[str, object]) -> None:
    """fit(df, id=..., time=...) without coords used to ignore them: one series whose
    features were the id and time columns, silently."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"stay": np.repeat([1, 2], 10), "hours": np.tile(np.arange(10.0), 2),
         "HR": rng.normal(80, 5, 20)}
    )  # fmt: skip
    model = GPVAE(**FAST)
    with pytest.raises(ValidationError, match=rf"^{next(iter(kwargs))}\b.*coords"):
        model.fit(frame, **kwargs)
    assert model.num_features_ is None  # nothing was fitted


def test_long_frame_targets_are_matched_to_x_val_by_id() -> None:
    """X_val_target's series were matched to X_val's by the order their ids first appear:
    the same rows in another order were refused with a message about values, and a target
    of other ids was taken silently."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2, 12, 2)).cumsum(1)
    hidden = X.copy()
    hidden[:, 4:7, 0] = np.nan

    def long(A: np.ndarray, ids: list[str]) -> pd.DataFrame:
        rows = [(i, float(t), *r) for i, a in zip(ids, A) for t, r in enumerate(a)]
        return pd.DataFrame(rows, columns=["id", "time", "a", "b"])

    val = to_series_set(long(hidden, ["v1", "v2"]), id_col="id", time_col="time")
    target = long(X, ["v1", "v2"])
    in_order = hidden_targets(val, to_series_set(target, id_col="id", time_col="time"))
    swapped = pd.concat([target[target.id == "v2"], target[target.id == "v1"]])
    again = hidden_targets(val, to_series_set(swapped, id_col="id", time_col="time"))
    for a, b in zip(in_order.values, again.values):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(again.values[1][4:7, 0], X[1, 4:7, 0])
    other = to_series_set(long(X, ["w1", "w2"]), id_col="id", time_col="time")
    with pytest.raises(ValidationError, match=r"X_val_target: .*ids of X_val.*'v1', 'v2'"):
        hidden_targets(val, other)
    renamed = to_series_set(
        target.rename(columns={"a": "b", "b": "a"}), id_col="id", time_col="time"
    )
    with pytest.raises(ValidationError, match=r"X_val_target: expected the features"):
        hidden_targets(val, renamed)


def test_dates_on_a_grid_for_a_model_in_hours_warn() -> None:
    """A model fitted on daily dates counts in hours; given business-day dates (or months)
    it read them in hours without a word and forecast onto a Saturday. They are still read
    in hours, as the model was fitted, with a warning that says so."""

    def frame(index: pd.DatetimeIndex) -> pd.DataFrame:
        v = np.sin(np.arange(len(index)) / 4.0)
        return pd.DataFrame({"a": v, "b": 2 * v}, index=index)

    est = GPVAE(**FAST).fit(frame(pd.date_range("2020-01-01", periods=40, freq="D")))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # daily dates: no warning
        est.impute(frame(pd.date_range("2020-03-01", periods=20, freq="D")), num_samples=19)
    for freq in ("B", "MS"):
        new = frame(pd.date_range("2020-03-02", periods=12, freq=freq))
        with pytest.warns(UserWarning, match=rf"calendar grid \('{freq}'\) but the model") as w:
            est.impute(new, num_samples=19)
        said = [x for x in w if "calendar grid" in str(x.message)]
        assert [x.filename for x in said] == [__file__]


def test_semi_monthly_dates_warn_that_forecasts_leave_their_grid() -> None:
    """Semi-monthly dates (the 1st and 15th; the 15th and the month's end) are read in
    hours, and forecasts stepped by the median 15 days left the grid (2021-06-29, ...)
    without a word. They warn, and future_times on the grid forecast on it."""
    for freq, days in (("SMS", "the 1st and 15th"), ("SME", "the 15th and the month's last")):
        index = pd.date_range("2019-01-01", periods=40, freq=freq)
        v = np.sin(np.arange(40) / 3.0)
        frame = pd.DataFrame({"a": v, "b": np.cos(np.arange(40) / 4.0)}, index=index)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = GPVAE(**FAST).fit(frame)
        with pytest.warns(UserWarning, match=rf"^X: .*semi-monthly .*\('{freq}': {days}") as w:
            est.forecast(frame, horizon=2, num_samples=19)
        said = [x for x in w if "semi-monthly" in str(x.message)]
        assert [x.filename for x in said] == [__file__]
        on_grid = pd.date_range(index[-1], periods=3, freq=freq)[1:]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fc = est.forecast(frame, future_times=on_grid, num_samples=19)
        assert list(fc.frame.index) == list(on_grid)


def test_durations_or_dates_for_a_model_fitted_on_numbers_warn() -> None:
    """Audit (session 47) #2: a model fitted on numbers (positions 0..49) given durations
    of one minute per step read them as hours, 60 times closer than its steps, without a
    word, while the same times given as numbers (x / 60) warned of their spacing: the
    spacing check leaves times with a unit alone. Durations and dates now warn, naming the
    times' argument; numbers in the training data's unit do not."""
    X = np.random.default_rng(0).normal(size=(4, 50, 2)).cumsum(1)
    est = GPVAE(**{**FAST, "epochs": 1}).fit(X)
    minutes = pd.timedelta_range(0, periods=50, freq="min").to_numpy()
    days = np.datetime64("2021-01-01") + np.arange(50) * np.timedelta64(1, "D")
    for times, found in ((minutes, "durations: they are read as hours, "), (days, "datetimes")):
        with pytest.warns(UserWarning, match=r"^times: expected numbers like the training") as w:
            est.impute(X, times=times, num_samples=19)
        said = [x for x in w if "expected numbers like" in str(x.message)]
        assert [x.filename for x in said] == [__file__]
        assert found in str(said[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est.impute(X, times=np.arange(50.0), num_samples=19)


def test_no_times_for_a_model_fitted_on_hourly_dates_warn() -> None:
    """Audit (session 47, anomaly/forecast #2): an array without times given to a model of
    hourly dates was read as hours 0, 1, 2, ... from the training start without a word (a
    model of another step refuses it), and its forecast came back as plain numbers. It
    warns, saying how the steps are read; the frame, or its dates, do not."""
    import warnings

    index = pd.date_range("2013-03-01", periods=60, freq="h")
    frame = pd.DataFrame({"a": np.sin(np.arange(60) / 5.0)}, index=index)
    est = GPVAE(**{**FAST, "epochs": 1}).fit(frame)
    later = frame.iloc[30:]
    with pytest.warns(UserWarning, match=r"^times: expected the times of X .* found none") as w:
        est.forecast(later.to_numpy()[None], horizon=2, num_samples=19)
    said = [x for x in w if str(x.message).startswith("times: expected the times of X")]
    assert [x.filename for x in said] == [__file__]
    assert "read as 0, 1, 2, ... hours from the training data's first time" in str(said[0].message)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="times: expected the times")
        est.forecast(later, horizon=2, num_samples=19)
        est.forecast(later.to_numpy()[None], later.index.to_numpy(), horizon=2, num_samples=19)


def test_numbers_for_a_model_fitted_on_dates_warn() -> None:
    """Numeric times given to a model fitted on dates were read as hours (or calendar
    steps) without a word. Numbers are an accepted input there (sample takes hours, and the
    error on missing times offers them), so they are still read so, with a warning that
    names the times' argument and says how they are read."""
    index = pd.date_range("2020-01-01", periods=40, freq="D")
    v = np.sin(np.arange(40) / 4.0)
    daily = pd.DataFrame({"a": v, "b": 2 * v}, index=index)
    est = GPVAE(**FAST).fit(daily)
    hours = np.arange(20.0) * 24.0
    arr = daily.to_numpy()[None, :20]
    with pytest.warns(UserWarning, match="expected datetimes or durations") as caught:
        res = est.impute(arr, times=hours, num_samples=19)
    said = [w for w in caught if "expected datetimes" in str(w.message)]
    assert [w.filename for w in said] == [__file__]
    assert str(said[0].message).startswith("times: ")
    assert "found numbers: they are read as hours since the training data's first time" in str(
        said[0].message
    )
    assert np.isfinite(res.mean).all()
    # a PyPOTS dict's numbers: named X['times'] (it named `times`, an argument not given)
    with pytest.warns(UserWarning, match="expected datetimes or durations") as caught:
        est.impute({"X": arr, "times": hours[None]}, num_samples=19)
    said = [w for w in caught if "expected datetimes" in str(w.message)]
    assert [w.filename for w in said] == [__file__]
    assert str(said[0].message).startswith("X['times']: ")
    # a frame whose time column holds numbers: named by its column
    numeric = pd.DataFrame({"t": hours, "a": v[:20], "b": 2 * v[:20]})
    for call in (
        lambda: est.forecast(numeric.set_index("t"), horizon=2, num_samples=19),
        lambda: est.anomaly_scores(numeric.set_index("t")),
    ):
        with pytest.warns(UserWarning, match=r"^X\.index: expected datetimes or durations"):
            call()
    # dates: no warning; the default 0, 1, 2, ... of a model counting one step per unit is
    # read so and warns since session 47 (its own warning: times placed at the training
    # start put a yearly cycle's phase wherever that start was)
    monthly = pd.DataFrame(
        {"a": v, "b": 2 * v}, index=pd.date_range("2020-01-01", periods=40, freq="MS")
    )
    by_month = GPVAE(**FAST).fit(monthly)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("default", message="forecast_horizon: ")
        est.impute(daily.iloc[20:], num_samples=19)
    with pytest.warns(UserWarning, match=r"^times: expected the times of X .*calendar 'MS'"):
        by_month.impute(monthly.to_numpy()[None, :12], num_samples=19)
    with pytest.warns(UserWarning, match=r"read as steps of its calendar 'MS' since"):
        by_month.impute(monthly.to_numpy()[None, :12], times=np.arange(12.0), num_samples=19)


def test_a_dated_series_is_predicted_as_its_one_column_frame() -> None:
    """A pandas Series with dates (one series, one feature) fitted, imputed and forecast:
    the predictions read its dates as the frame's (they said "times: expected the times of X
    ..., found none" for a model fitted on dates with a step other than 1)."""
    days = pd.date_range("2021-01-01", periods=60, freq="2D")
    values = np.sin(np.arange(60) / 4.0)
    values[[5, 17, 30]] = np.nan
    s = pd.Series(values, index=days, name="temp")
    model = GPVAE(latent_dim=2, hidden=(8,), epochs=2, progress=False, calibrate=False).fit(s)
    res = model.impute(s)
    assert isinstance(res.mean, pd.DataFrame)
    assert list(res.mean.columns) == ["temp"]
    pd.testing.assert_index_equal(res.mean.index, days)
    observed = ~np.isnan(values)
    np.testing.assert_array_equal(res.mean["temp"].to_numpy()[observed], values[observed])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # uncalibrated intervals: not the point
        fc = model.forecast(s, horizon=3)
    step = pd.Timedelta(days=2)
    expected = pd.DatetimeIndex([days[-1] + k * step for k in (1, 2, 3)])
    assert list(pd.DatetimeIndex(np.asarray(fc.times)[0])) == list(expected)


def test_patience_below_one_says_none_never_stops_early() -> None:
    """GPVAE(patience=0) said "expected an integer >= 1": the way never to stop early (None)
    was not named."""
    with pytest.raises(ValidationError, match=r"patience: expected an integer >= 1, or None never"):
        GPVAE(patience=0)
    assert GPVAE(patience=None).patience is None


def test_masked_future_and_sample_times_are_refused() -> None:
    """Audit R #2: a masked array of future_times (or of sample's times) was read with its
    fill values (a forecast at time 500); masked X and times are read as missing since
    5054c95, so these are refused, naming the argument."""
    X = np.sin(np.arange(60) / 5.0)[None, :, None] + np.zeros((2, 60, 1))
    model = GPVAE(latent_dim=2, hidden=(8,), epochs=1, progress=False, calibrate=False).fit(X)
    future = np.ma.masked_array([60.0, 61.0, 500.0], mask=[False, False, True])
    with pytest.raises(InputTypeError, match=r"^future_times: expected times without masked"):
        model.forecast(X, future_times=future)
    with pytest.raises(InputTypeError, match=r"^future_times\[1\]: expected times without"):
        model.forecast(X, future_times=[np.array([60.0, 61.0, 62.0]), future])
    with pytest.raises(InputTypeError, match=r"^times: expected times without masked"):
        model.sample(future)
    unmasked = np.ma.masked_array([60.0, 61.0, 62.0], mask=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert np.asarray(model.forecast(X, future_times=unmasked).times).shape == (2, 3)


def test_fit_warns_of_a_feature_constant_in_training() -> None:
    """Every observed Temp 37.0 in training: imputed 35.9 (31.3 to 38.9) with 90% intervals
    about 9.6 wide, without a word (audit M #3). fit now says which feature is constant and
    why its imputations are unreliable; its scaling is unchanged (saved models keep theirs)."""
    X, _ = _sines(8, 20)
    temp = np.where(np.isnan(X[..., :1]), np.nan, 37.0)
    with_temp = np.concatenate([X, temp], axis=2)
    with pytest.warns(
        UserWarning,
        match=r"X: expected features that vary in the training data, found 1 constant "
        r"feature\(s\): 'feature_2' \(every observed entry 37\.0\); nothing about their "
        r"variation can be learned, so their imputations and intervals are unreliable",
    ):
        est = GPVAE(**FAST).fit(with_temp)
    assert est.scaler_.std_[2] == 37.0  # scaled by its own size, as before
    with warnings.catch_warnings():  # features that vary: no such warning
        warnings.filterwarnings("error", message=".*constant feature")
        GPVAE(**FAST).fit(X)


def test_only_process_0_of_a_distributed_fit_warns_of_a_constant_feature(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every process of a distributed fit that is not sharded reads the same data, and each
    warned of the same constant feature: process 0 says it once."""
    from gpvae.estimator import fitting

    X, _ = _sines(4, 20)
    X[..., 1] = np.where(np.isnan(X[..., 1]), np.nan, 37.0)
    monkeypatch.setattr(fitting, "is_main_process", lambda: False)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*constant feature")
        fitting.fit_data(X, None, None, None, binary=False)
    monkeypatch.setattr(fitting, "is_main_process", lambda: True)
    with pytest.warns(UserWarning, match=r"1 constant feature\(s\): 'feature_1'"):
        fitting.fit_data(X, None, None, None, binary=False)


def test_fit_does_not_call_a_bernoulli_pixel_that_is_always_0_constant() -> None:
    """The shipped HMNIST example (likelihood="bernoulli") warned that 156 border pixels,
    0 in every image, were constant features to drop: 0/1 data the model fits as it is. A
    Bernoulli fit does not warn of constant features; a Gaussian fit of the same data does."""
    X, _ = _sines(8, 20)
    pixels = (np.nan_to_num(X, nan=0.0) > 0).astype(np.float64)
    pixels[..., 1] = 0.0  # always 0, as an image's border
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*constant feature")
        GPVAE(likelihood="bernoulli", **FAST).fit(pixels)
    with pytest.warns(UserWarning, match=r"1 constant feature\(s\): 'feature_1'"):
        GPVAE(**FAST).fit(pixels)


def test_a_feature_observed_once_is_not_called_constant() -> None:
    """A feature observed in one entry of the training data was listed as a 'constant
    feature' with 'every observed entry 5.0'; it is said to be observed once. A sharded fit
    (each process its own series) ran no such check: process 0 says the same from the
    merged statistics."""
    from gpvae.estimator.fitting import _local_stats, warn_constant_features

    X, _ = _sines(6, 20)
    once = np.full((*X.shape[:2], 1), np.nan)
    once[2, 7, 0] = 5.0
    flat = np.where(np.isnan(X[..., :1]), np.nan, 37.0)
    data = to_series_set(np.concatenate([X, once, flat], axis=2))
    said = (
        "X: expected features that vary in the training data, found 1 constant feature(s): "
        "'feature_3' (every observed entry 37.0) and 1 feature(s) observed once: "
        "'feature_2' (5.0); nothing about their variation can be learned"
    )
    with pytest.warns(UserWarning, match=re.escape(said)):
        warn_constant_features(data, stacklevel=1)
    from gpvae.estimator.fitting import warn_constant_merged  # the sharded fit's

    names = list(data.feature_names)
    parts = [_local_stats(data.subset(idx)) for idx in ([0, 1, 2], [3, 4, 5])]
    with pytest.warns(UserWarning, match=re.escape(said)):
        warn_constant_merged(parts, names, stacklevel=1)
    flat[3:] += 1.0  # 37.0 in one process's series, 38.0 in the other's: it varies
    data = to_series_set(np.concatenate([X, once, flat], axis=2))
    parts = [_local_stats(data.subset(idx)) for idx in ([0, 1, 2], [3, 4, 5])]
    with pytest.warns(UserWarning, match="found 1 feature\\(s\\) observed once") as caught:
        warn_constant_merged(parts, names, stacklevel=1)
    assert "'feature_3'" not in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_constant_merged(parts, names, stacklevel=1, binary=True)
