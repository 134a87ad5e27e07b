"""GPVAE.kernel_summary: the learned kernels read back in the data's own units."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from gpvae import GPVAE
from gpvae.errors import NotFittedError
from gpvae.estimator.kernel_report import COLUMNS, format_summary

FAST = {"latent_dim": 2, "hidden": (16,), "epochs": 2, "batch_size": 8, "progress": False}


def _rows(table: pd.DataFrame, **where: object) -> pd.DataFrame:
    mask = np.ones(len(table), dtype=bool)
    for column, value in where.items():
        mask &= (table[column] == value).to_numpy()
    return table[mask]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_half_hourly_dates_read_in_hours_and_a_given_period_is_fixed() -> None:
    """The model counts half-hour steps: a Matern lengthscale of 3 steps is 1.5 hours, the
    period given as '24h' (48 steps) reads 24 hours and is not learned; the periodic
    kernel's own lengthscale (relative to the period) and variances have no unit."""
    rng = np.random.default_rng(0)
    index = pd.date_range("2021-01-01", periods=200, freq="30min")
    frame = pd.DataFrame(
        {"a": np.sin(np.arange(200) / 8), "b": rng.standard_normal(200)}, index=index
    )
    est = GPVAE(**FAST, kernel="matern32+periodic", period="24h").fit(frame)
    table = est.kernel_summary()
    assert list(table.columns) == list(COLUMNS)
    assert sorted(set(table["source"])) == ["latent 0", "latent 1"]
    for channel, kernel in enumerate(est.model_.prior.kernel_list):
        matern, periodic = kernel.terms
        source = f"latent {channel}"
        row = _rows(table, source=source, term="0", parameter="lengthscale")
        assert row["kernel"].item() == "Matern32"
        assert row["unit"].item() == "hours"
        assert row["value"].item() == pytest.approx(0.5 * float(matern.lengthscale), rel=1e-6)
        period = _rows(table, source=source, term="1", parameter="period")
        assert period["value"].item() == pytest.approx(24.0, rel=1e-6)
        assert period[["unit", "learned"]].values.tolist() == [["hours", False]]
        relative = _rows(table, source=source, term="1", parameter="lengthscale")
        assert relative["unit"].item() == ""
        assert relative["value"].item() == pytest.approx(float(periodic.lengthscale), rel=1e-6)
        variance = _rows(table, source=source, term="0", parameter="variance")
        assert variance["unit"].item() == ""
        assert bool(variance["learned"].item())
    lines = format_summary(table.to_dict("records"))
    assert len(lines) == 2
    assert lines[0].startswith("latent 0: Matern32 lengthscale ")
    assert "period 24 hours (fixed)" in lines[0]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_monthly_data_read_in_steps_of_the_grid_and_numbers_in_their_own_units() -> None:
    rng = np.random.default_rng(1)
    months = pd.date_range("2000-01-01", periods=60, freq="MS")
    monthly = pd.DataFrame({"a": rng.standard_normal(60)}, index=months)
    table = GPVAE(**FAST).fit(monthly).kernel_summary()
    assert set(_rows(table, parameter="lengthscale")["unit"]) == {"steps of MS"}

    times = np.arange(40) * 0.25  # a step of 0.25 time units
    est = GPVAE(**FAST).fit(rng.standard_normal((3, 40, 2)), times=np.tile(times, (3, 1)))
    table = est.kernel_summary()
    row = _rows(table, source="latent 0", parameter="lengthscale")
    assert row["unit"].item() == "time units"
    model_value = float(est.model_.prior.kernel_list[0].lengthscale)
    assert row["value"].item() == pytest.approx(0.25 * model_value, rel=1e-6)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_noise_kernels_of_gaussian_gp_are_listed_after_the_latent_channels() -> None:
    rng = np.random.default_rng(2)
    est = GPVAE(**FAST, likelihood="gaussian_gp").fit(rng.standard_normal((3, 30, 2)))
    table = est.kernel_summary()
    sources = list(dict.fromkeys(table["source"]))
    assert sources[:2] == ["latent 0", "latent 1"]
    assert len(sources) > 2
    assert all(s.startswith("noise of ") for s in sources[2:])
    noise = est.model_.likelihood.gp.kernel_list[0]
    row = _rows(table, source=sources[2], parameter="lengthscale")
    assert row["value"].item() == pytest.approx(float(noise.lengthscale), rel=1e-6)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("likelihood", ["gaussian_gp", "gaussian_gp_per_feature"])
def test_gaussian_gp_lists_each_features_noise_levels_in_its_units(likelihood: str) -> None:
    """Audit W #7: the noise rows were one kernel ("noise of all features", variance 1
    fixed) and no feature's own noise level. Each feature now has its amplitude a_d and
    white-noise sd sqrt(s2_d), times the feature's training standard deviation (features
    of scales 1 and 100: the second's levels are about 100 times larger)."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((3, 30, 2)) * np.array([1.0, 100.0])
    est = GPVAE(**FAST, likelihood=likelihood).fit(list(X))
    table = est.kernel_summary()
    names = list(est.feature_names_)
    assert len(names) == 2
    lik = est.model_.likelihood
    std = est.scaler_.std_
    amplitude = lik.amplitude().detach().numpy()
    white_sd = lik.feature_variance().detach().sqrt().numpy()
    for d, name in enumerate(names):
        rows = _rows(table, source=f"noise of {name}", term="scale")
        assert rows["parameter"].tolist() == ["amplitude", "white_sd"]
        assert set(rows["unit"]) == {"feature units"}
        assert set(rows["kernel"]) == {"GPNoiseGaussian"}
        assert rows["learned"].all()
        values = rows["value"].to_numpy()
        np.testing.assert_allclose(values, [amplitude[d] * std[d], white_sd[d] * std[d]], 1e-5)
    big = _rows(table, source=f"noise of {names[1]}", parameter="white_sd")["value"].item()
    small = _rows(table, source=f"noise of {names[0]}", parameter="white_sd")["value"].item()
    assert big > 20 * small
    kernels = table[table["term"] != "scale"]
    shared = likelihood == "gaussian_gp"
    noise_sources = {s for s in kernels["source"] if s.startswith("noise of ")}
    assert noise_sources == (
        {"noise of all features"} if shared else {f"noise of {n}" for n in names}
    )
    lines = format_summary(table.to_dict("records"))
    assert any(line.startswith(f"noise of {names[1]}: ") and "amplitude" in line for line in lines)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_initial_column_gives_the_start_of_every_learned_value(tmp_path: object) -> None:
    """Audit W #5: learned lengthscales stay near their start on short fits and nothing said
    where they started. ``initial`` is the start in the value's unit: lengthscale=12 steps
    of half an hour reads 6 hours; a fixed period its own value; a period learned from
    the spectrum NaN (its start came from the data); the same after save and load."""
    from pathlib import Path

    rng = np.random.default_rng(6)
    index = pd.date_range("2021-01-01", periods=200, freq="30min")
    frame = pd.DataFrame({"a": np.sin(np.arange(200) / 8), "b": rng.standard_normal(200)}, index)
    est = GPVAE(**FAST, kernel="matern32+periodic", period="24h", lengthscale=12.0).fit(frame)
    table = est.kernel_summary()
    assert list(table.columns) == list(COLUMNS)
    matern = _rows(table, source="latent 0", term="0", parameter="lengthscale")
    assert matern["initial"].item() == pytest.approx(6.0, rel=1e-6)
    assert matern["value"].item() != matern["initial"].item()  # it did move, a little
    period = _rows(table, source="latent 0", term="1", parameter="period")
    assert period["initial"].item() == period["value"].item()
    assert table["initial"].notna().all()
    path = Path(str(tmp_path)) / "m"
    est.save(path)
    pd.testing.assert_frame_equal(GPVAE.load(path).kernel_summary(), table)
    spectral = GPVAE(**FAST, kernel="matern32+periodic").fit(frame).kernel_summary()
    learned = _rows(spectral, source="latent 0", term="1", parameter="period")
    assert bool(learned["learned"].item())
    assert np.isnan(learned["initial"].item())


def test_initial_column_follows_starts_set_from_the_period() -> None:
    """Audit R2 #1: a quasi-periodic product's decay lengthscale starts at
    QUASI_PERIODIC_DECAY periods: with period="24h" on half-hourly data, 4 x 24 = 96 hours
    (the column read 4 placeholder steps, 2 hours); with the period found in the spectrum,
    the period and the decay are both NaN (their starts came from the data); a kernel
    instance's own period is its start (it read NaN)."""
    from gpvae import settings
    from gpvae.kernels import HarmonicPeriodic, Matern32

    rng = np.random.default_rng(6)
    index = pd.date_range("2021-01-01", periods=200, freq="30min")
    frame = pd.DataFrame({"a": np.sin(np.arange(200) / 8), "b": rng.standard_normal(200)}, index)
    given = GPVAE(**FAST, kernel="periodic*matern32", period="24h").fit(frame).kernel_summary()
    decay = _rows(given, source="latent 0", term="1", parameter="lengthscale")
    assert decay["initial"].item() == pytest.approx(settings.QUASI_PERIODIC_DECAY * 24.0)
    spectral = GPVAE(**FAST, kernel="periodic*matern32").fit(frame).kernel_summary()
    for term, name in (("0", "period"), ("1", "lengthscale")):
        row = _rows(spectral, source="latent 0", term=term, parameter=name)
        assert np.isnan(row["initial"].item())
    own = Matern32(lengthscale=5.0) + HarmonicPeriodic(period=12.0)
    table = GPVAE(**FAST, kernel=own).fit(frame).kernel_summary()
    period = _rows(table, source="latent 0", term="1", parameter="period")
    assert period["initial"].item() == pytest.approx(6.0)  # 12 steps of half an hour


def test_initial_column_of_a_trend_set_from_the_span_is_nan() -> None:
    """Audit (session 47) #1: a trend's lengthscale starts at a fraction of the training
    span (49.8 steps on 200 steps), but the column read the default start (3 steps): the
    two stand-in models had spans of 1 and 2 steps, too short to move it, so they agreed.
    It reads NaN, as documented (a start taken from the data); a Matern term beside it
    keeps its start."""
    from gpvae import settings

    X = np.random.default_rng(0).normal(size=(4, 200, 2))
    table = GPVAE(**FAST, kernel="matern32+trend").fit(X).kernel_summary()
    trend = _rows(table, source="latent 0", term="1", parameter="lengthscale")
    assert trend["kernel"].item() == "Trend"
    assert trend["value"].item() > 10 * settings.DEFAULT_LENGTHSCALE  # started from the span
    assert np.isnan(trend["initial"].item())
    matern = _rows(table, source="latent 0", term="0", parameter="lengthscale")
    assert matern["initial"].item() == pytest.approx(settings.DEFAULT_LENGTHSCALE)


def test_kernel_summary_needs_a_fitted_model() -> None:
    with pytest.raises(NotFittedError, match=r"^kernel_summary: "):
        GPVAE().kernel_summary()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_values_follow_the_model_after_save_and_load(tmp_path: object) -> None:
    from pathlib import Path

    rng = np.random.default_rng(3)
    index = pd.date_range("2021-01-01", periods=120, freq="2h")
    frame = pd.DataFrame({"a": rng.standard_normal(120)}, index=index)
    est = GPVAE(**FAST).fit(frame)
    path = Path(str(tmp_path)) / "m"
    est.save(path)
    loaded = GPVAE.load(path)
    pd.testing.assert_frame_equal(est.kernel_summary(), loaded.kernel_summary())
    with torch.no_grad():
        loaded.model_.prior.kernel_list[0].lengthscale = 5.0  # 5 steps of 2 hours
    row = _rows(loaded.kernel_summary(), source="latent 0", parameter="lengthscale")
    assert row["value"].item() == pytest.approx(10.0, rel=1e-6)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_an_ensemble_lists_every_member() -> None:
    from gpvae import GPVAEEnsemble

    rng = np.random.default_rng(4)
    ens = GPVAEEnsemble(members=2, **FAST).fit(rng.standard_normal((3, 30, 1)))
    table = ens.kernel_summary()
    assert list(table.columns) == ["member", *COLUMNS]
    for k, member in enumerate(ens.members_):
        pd.testing.assert_frame_equal(
            table[table.member == k].drop(columns="member").reset_index(drop=True),
            member.kernel_summary(),
        )
    with pytest.raises(NotFittedError, match=r"^kernel_summary: "):
        GPVAEEnsemble(members=2).kernel_summary()
