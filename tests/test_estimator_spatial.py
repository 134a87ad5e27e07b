"""The estimator's spatial path on a small synthetic field (seeded, fast).

The field: 9 sites in a 40 x 40 km square, 432 hourly steps, 3 features that are noisy linear
maps of one latent space x time GP (Matern 3/2 in space, 12 km; Matern 3/2 in time, 10 h).
Checked: a held-out site is predicted from its neighbours better than by the mean of the
other sites at the same hour (by a margin) with sensible 90% intervals; imputation keeps the
observed values and fills gaps from neighbours; save / load keeps the coordinates' projection
and gives the same predictions; bad input gets errors naming the column.
"""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from gpvae import GPVAE
from gpvae.data.spatial import EARTH_RADIUS_KM, Projection
from gpvae.errors import NotFittedError, ValidationError
from gpvae.kernels import Matern32, SpaceTime

LAT0, LON0 = 39.9, 116.4
FEATURES = ["a", "b", "c"]


def _field(seed: int = 0, S: int = 9, T: int = 432) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-20.0, 20.0, (S, 2))  # km
    lat = LAT0 + np.degrees(xy[:, 1] / EARTH_RADIUS_KM)
    lon = LON0 + np.degrees(xy[:, 0] / (EARTH_RADIUS_KM * math.cos(math.radians(LAT0))))
    kernel = SpaceTime(Matern32(lengthscale=12.0), Matern32(lengthscale=10.0)).double()
    pts = np.concatenate(
        [np.repeat(xy[None], T, 0), np.repeat(np.arange(T)[:, None, None], S, 1)], -1
    ).reshape(-1, 3)
    with torch.no_grad():
        K = kernel(torch.as_tensor(pts)) + 1e-6 * torch.eye(len(pts), dtype=torch.float64)
        f = torch.linalg.cholesky(K) @ torch.randn(
            len(pts), 1, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)
        )
    f = f.numpy().reshape(T, S)
    values = np.stack([2.0 * f + 10.0, -f + 3.0, 0.5 * f * f], -1)
    values = values + 0.1 * rng.standard_normal(values.shape)
    values[rng.random(values.shape) < 0.05] = np.nan
    times = pd.date_range("2020-01-01", periods=T, freq="h")
    frames = []
    for s in range(S):
        df = pd.DataFrame(values[:, s], columns=FEATURES)
        df.insert(0, "site", f"s{s}")
        df.insert(1, "time", times)
        df.insert(2, "lat", lat[s])
        df.insert(3, "lon", lon[s])
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def fitted() -> tuple[GPVAE, pd.DataFrame]:
    df = _field()
    train = df[(df.site != "s0") & (df.time < df.time.iloc[360])]
    est = GPVAE(
        latent_dim=2,
        epochs=30,
        batch_size=4,
        hidden=(32, 32),
        lr=5e-3,
        progress=False,
        patience=8,
        val_fraction=0.2,
        seed=0,
    )
    est.fit(train, id="site", time="time", coords=["lat", "lon"], window=24)
    return est, df


def test_heldout_site_beats_the_mean_of_the_other_sites(fitted: tuple[GPVAE, pd.DataFrame]) -> None:
    est, df = fitted
    test = df[df.time >= df.time.iloc[360]]
    others, held = test[test.site != "s0"], test[test.site == "s0"]
    res = est.predict_sites(others, held[["site", "lat", "lon"]], num_samples=64)
    pred = res.mean.set_index("time")[FEATURES]
    truth = held.set_index("time")[FEATURES].loc[pred.index]
    std = est.scaler_.std_
    mae = np.nanmean(np.abs(pred.to_numpy() - truth.to_numpy()) / std)
    naive = others.groupby("time")[FEATURES].mean().loc[pred.index]
    mae_naive = np.nanmean(np.abs(naive.to_numpy() - truth.to_numpy()) / std)
    assert mae < 0.8 * mae_naive, (mae, mae_naive)
    lo = res.lower.set_index("time")[FEATURES].to_numpy()
    hi = res.upper.set_index("time")[FEATURES].to_numpy()
    t = truth.to_numpy()
    inside = ((t >= lo) & (t <= hi))[~np.isnan(t)]
    assert 0.7 <= inside.mean() <= 1.0, inside.mean()
    assert list(res.mean.columns) == ["site", "time", *FEATURES]


def test_imputation_keeps_observed_values_and_uses_neighbours(
    fitted: tuple[GPVAE, pd.DataFrame],
) -> None:
    est, df = fitted
    test = df[(df.time >= df.time.iloc[360]) & (df.site != "s0")].reset_index(drop=True)
    rng = np.random.default_rng(1)
    hide = rng.random(test[FEATURES].shape) < 0.2
    gappy = test.copy()
    gappy[FEATURES] = test[FEATURES].mask(hide)
    res = est.impute(gappy, num_samples=32)
    out = (
        res.mean.set_index(["site", "time"])
        .loc[gappy.set_index(["site", "time"]).index, FEATURES]
        .to_numpy()
    )
    given = gappy[FEATURES].to_numpy()
    observed = ~np.isnan(given)
    assert np.array_equal(out[observed], given[observed])  # bit for bit
    target = test[FEATURES].to_numpy()
    scored = hide & ~np.isnan(target)
    mae = np.mean(
        np.abs(out - target)[scored] / np.broadcast_to(est.scaler_.std_, out.shape)[scored]
    )
    site_mean = gappy.groupby("site")[FEATURES].transform("mean").to_numpy()
    mae_mean = np.mean(
        np.abs(site_mean - target)[scored] / np.broadcast_to(est.scaler_.std_, out.shape)[scored]
    )
    assert mae < 0.5 * mae_mean, (mae, mae_mean)


def test_save_and_load_keep_the_projection_and_predictions(
    fitted: tuple[GPVAE, pd.DataFrame], tmp_path: object
) -> None:
    est, df = fitted
    test = df[df.time >= df.time.iloc[408]]
    others, held = test[test.site != "s0"], test[test.site == "s0"]
    est.save(tmp_path)  # type: ignore[arg-type]
    again = GPVAE.load(tmp_path)  # type: ignore[arg-type]
    assert again.spatial_ is not None
    assert est.spatial_ is not None
    assert again.spatial_.projection == est.spatial_.projection
    a = est.predict_sites(others, held[["site", "lat", "lon"]], num_samples=8)
    b = again.predict_sites(others, held[["site", "lat", "lon"]], num_samples=8)
    pd.testing.assert_frame_equal(a.mean, b.mean)
    # one draw is no interval (lower == upper, the mean outside it): refused as impute does
    with pytest.raises(ValidationError, match="num_samples: expected at least 2 draws"):
        est.predict_sites(others, held[["site", "lat", "lon"]], num_samples=1)
    with pytest.raises(ValidationError, match="num_samples: expected at least 2 draws"):
        est.impute(others, num_samples=1)
    # the configuration is the constructor's arguments (what the fit learned is not one)
    config = again.get_config()
    assert "spatial" not in config
    assert config == {**est.get_config(), "device": "cpu"}  # load's device
    assert GPVAE(**config).get_config() == config


def test_spatial_fit_uses_interp_skip_and_training_masks(tmp_path: object) -> None:
    """The imputation settings reach the spatial model (they were once dropped silently),
    and a saved spatial model with them imputes the same after loading."""
    df = _field(seed=2, S=4, T=96)
    est = GPVAE(
        latent_dim=2,
        epochs=2,
        batch_size=4,
        hidden=(16,),
        progress=False,
        interp_skip=True,
        mask_rate=0.2,
        mask_pattern="blocks",
        block_lengths=(3, 6),
        val_fraction=0.25,  # one validation window: the fusion's spatial weight is picked
        seed=0,
    )
    est.fit(df, id="site", time="time", coords=["lat", "lon"], window=24)
    model = est.model_
    assert model.interp_skip
    assert model.mask_rate == 0.2
    assert model.mask_pattern == "blocks"
    assert model.mask_lengths == (3, 6)
    gappy = df.copy()
    gappy.loc[gappy.index[::7], FEATURES[0]] = np.nan
    a = est.impute(gappy, num_samples=8)
    est.save(tmp_path)  # type: ignore[arg-type]
    b = GPVAE.load(tmp_path).impute(gappy, num_samples=8)  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(a.mean, b.mean)
    out = a.mean.set_index(["site", "time"]).loc[gappy.set_index(["site", "time"]).index]
    given = gappy[FEATURES].to_numpy()
    seen = ~np.isnan(given)
    assert np.array_equal(out[FEATURES].to_numpy()[seen], given[seen])
    # the prediction is fused with each site's interpolation in time and IDW over the other
    # sites (2 epochs from the fusion's start, their blend, weighted on validation): close to
    # linear interpolation's error, far below the undertrained decoder alone
    hid = gappy[FEATURES[0]].isna().to_numpy() & df[FEATURES[0]].notna().to_numpy()
    lin = gappy.groupby("site")[FEATURES[0]].transform(
        lambda v: v.interpolate(limit_direction="both")
    )
    truth = df[FEATURES[0]].to_numpy()
    mae = np.abs(out[FEATURES[0]].to_numpy() - truth)[hid].mean()
    mae_lin = np.abs(lin.to_numpy() - truth)[hid].mean()
    mae_mean = np.abs(np.nanmean(given[:, 0]) - truth)[hid].mean()
    assert mae < 1.5 * mae_lin < mae_mean, (mae, mae_lin, mae_mean)


def test_untrained_field_fusion_predicts_idw_at_a_new_site() -> None:
    """With interp_skip on a field and no training masks, the fusion net never gets a
    gradient (it only acts on entries hidden from the encoder) and stays at its start: at a
    new site, where nothing is observed, the prediction is exactly inverse distance
    weighting of the other sites at the same hour (with the power the fit picked per
    feature), whatever the decoder does."""
    from gpvae.data.spatial import Projection

    df = _field(seed=3, S=5, T=72)
    held = df[df.site == "s0"]
    others = df[df.site != "s0"]
    est = GPVAE(
        latent_dim=2, epochs=1, batch_size=4, hidden=(8,), progress=False, seed=0, interp_skip=True
    )
    est.fit(others, id="site", time="time", coords=["lat", "lon"], window=24)
    res = est.predict_sites(others, held[["site", "lat", "lon"]], num_samples=4)
    coords = df.groupby("site")[["lat", "lon"]].first()
    proj = Projection.infer(["lat", "lon"], coords.to_numpy())
    xy = proj.to_km(coords.to_numpy())
    power = est.model_.interp_fusion.space_power.numpy()  # type: ignore[union-attr]
    r = np.sqrt(((xy[1:] - xy[0]) ** 2).sum(-1))
    w = r[None, :, None] ** -power[None, None, :]  # (1, S - 1, D)
    cube = np.stack([others[others.site == f"s{k}"][FEATURES].to_numpy() for k in range(1, 5)], 1)
    seen = ~np.isnan(cube)
    idw = (np.where(seen, cube, 0) * w).sum(1) / (seen * w).sum(1)
    pred = res.mean.sort_values("time")[FEATURES].to_numpy()
    np.testing.assert_allclose(pred, idw, rtol=1e-4, atol=1e-4 * np.abs(idw).max())


def test_pick_space_power_matches_a_loop_and_finds_the_field_s_power() -> None:
    """The power of each feature's inverse distance weights is the candidate with the
    smallest leave-one-site-out MAE on the field (checked against a plain loop), and it
    follows the field: a feature shared by all sites (plus site noise) takes the plain mean
    (power 0), a feature that only nearby sites share takes a high power."""
    from gpvae.estimator.spatial_validation import SPACE_POWERS, pick_space_power

    rng = np.random.default_rng(7)
    T, S = 60, 8
    xy = rng.uniform(0, 50, size=(S, 2))
    common = rng.normal(size=(T, 1)) + 0.5 * rng.normal(size=(T, S))
    # feature 1: each site copies its nearest "source" among 4 scattered sources
    src = rng.uniform(0, 50, size=(4, 2))
    nearest = np.argmin(((xy[:, None] - src[None]) ** 2).sum(-1), axis=1)
    local = rng.normal(size=(T, 4))[:, nearest] + 0.05 * rng.normal(size=(T, S))
    values = np.stack([common, local, rng.normal(size=(T, S))], -1)
    values[rng.random(values.shape) < 0.2] = np.nan
    values[:, 1:, 2] = np.nan  # feature 2: one site only, nothing to predict -> 2
    got = pick_space_power(values, xy)
    r = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))
    for d in range(2):
        mae = []
        for p in SPACE_POWERS:
            errs = []
            for t in range(T):
                for k in range(S):
                    nb = [j for j in range(S) if j != k and not np.isnan(values[t, j, d])]
                    if np.isnan(values[t, k, d]) or not nb:
                        continue
                    w = r[k, nb] ** -p
                    errs.append(abs(w @ values[t, nb, d] / w.sum() - values[t, k, d]))
            mae.append(np.mean(errs))
        assert got[d] == SPACE_POWERS[int(np.argmin(mae))]
    assert got[0] == 0.0, got
    assert got[1] >= 3.0, got
    assert got[2] == 2.0, got


def test_spatial_validation_hides_blocks_with_val_pattern_blocks() -> None:
    """Validation windows hide one site whole and, with val_pattern="blocks", runs of one
    feature at one site (at least the shortest length) instead of single points."""
    from gpvae.estimator.spatial_validation import SiteValidation

    values = np.zeros((96, 6, 3))
    pts = SiteValidation.make(values, [0, 24, 48, 72], 24, 0)
    blk = SiteValidation.make(values, [0, 24, 48, 72], 24, 0, "blocks", (5, 8))
    for val in (pts, blk):
        assert val.starts == [0, 24, 48, 72]
        for k in range(4):
            assert val.hidden[k, :, k % 6].all()  # the whole site
            assert val.whole[k, :, k % 6].all()
            assert val.whole[k].sum() == 24 * 3
    runs = []
    for k in range(4):
        for s in range(6):
            if s == k % 6:
                continue
            for d in range(3):
                col = blk.hidden[k, :, s, d].astype(int)
                edges = np.diff(np.concatenate([[0], col, [0]]))
                runs += list(np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1))
    assert runs
    assert min(runs) >= 5
    rest = ~blk.whole
    assert 0.05 < blk.hidden[rest].mean() < 0.15
    single = pts.hidden.astype(int)  # points: mostly isolated entries
    assert (single[:, 1:] & single[:, :-1])[rest[:, 1:] & rest[:, :-1]].mean() < 0.03


def test_spatial_validation_hides_whole_steps_of_a_site_with_val_pattern_steps() -> None:
    """With val_pattern="steps", a site's hidden entries are runs of steps with every
    feature hidden (they were single points: "steps" fell through to points)."""
    from gpvae.estimator.spatial_validation import SiteValidation

    values = np.zeros((96, 6, 3))
    val = SiteValidation.make(values, [0, 24, 48, 72], 24, 0, "steps", (5, 8))
    rest = val.hidden & ~val.whole
    assert rest.any()
    assert (rest.all(axis=-1) == rest.any(axis=-1)).all()  # every feature of a step
    runs = []
    for k in range(4):
        for s in range(6):
            col = rest[k, :, s, 0].astype(int)
            edges = np.diff(np.concatenate([[0], col, [0]]))
            runs += list(np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1))
    assert min(runs) >= 5


def test_spatial_validation_hides_every_site_whole_in_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """For the new-site calibration, with room for more copies than windows, each window is
    copied with a different site hidden whole, every site in rotation; the batch hides
    exactly the hidden entries and the targets are the field's values."""
    from gpvae import settings
    from gpvae.estimator.spatial_validation import SiteValidation, site_copies

    monkeypatch.setattr(settings, "SPATIAL_VAL_SITE_WINDOWS", 15)
    assert site_copies(3, 5) == 5
    assert site_copies(3, 4) == 4
    assert site_copies(20, 5) == 1
    rng = np.random.default_rng(0)
    values = rng.normal(size=(80, 5, 2))
    values[rng.random(values.shape) < 0.2] = np.nan
    val = SiteValidation.make(values, [8, 32, 60], 24, 0, copies=site_copies(3, 5))
    assert val.starts == [8] * 5 + [32] * 5 + [60] * 5
    whole_sites = [set(np.flatnonzero(val.whole[b].any((0, 2)))) for b in range(15)]
    assert [s for (s,) in whole_sites] == [b % 5 for b in range(15)]
    for b, a in enumerate(val.starts):
        n = min(a + 24, 80) - a
        np.testing.assert_array_equal(val.target[b, :n], values[a : a + n])
        assert np.isnan(val.target[b, n:]).all()
        assert not val.hidden[b, n:].any()
        assert (val.whole[b] <= val.hidden[b]).all()
        assert not (val.hidden[b] & np.isnan(val.target[b])).any()
    batch = val.batch(np.zeros((5, 2)), np.arange(80.0))
    obs = batch.observed.numpy().reshape(15, 24, 5, 2)
    np.testing.assert_array_equal(obs, ~np.isnan(val.target) & ~val.hidden)
    y = batch.y.numpy().reshape(15, 24, 5, 2)
    np.testing.assert_allclose(y[obs], val.target[obs], rtol=1e-6)


def test_spatial_interp_skip_refuses_windows_too_large_for_the_fusion(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gpvae import settings

    monkeypatch.setattr(settings, "FIELD_FUSION_MAX_POINTS", 24 * 4 - 1)
    df = _field(seed=2, S=4, T=48)
    est = GPVAE(latent_dim=1, epochs=1, progress=False, interp_skip=True)
    with pytest.raises(ValidationError, match=r"interp_skip.*24 x 4"):
        est.fit(df, id="site", time="time", coords=["lat", "lon"], window=24)


def test_the_fusions_spatial_weight_is_picked_on_validation() -> None:
    """After training, each feature's spatial weight is the candidate with the smallest MAE
    on the hidden validation entries: never worse than the trained weight, which is one of
    the candidates."""
    from gpvae.estimator.spatial_validation import (
        SiteValidation,
        pick_space_weight,
        predict_hidden,
    )

    df = _field(seed=4, S=5, T=96)
    est = GPVAE(
        latent_dim=2, epochs=1, batch_size=4, hidden=(8,), progress=False, seed=0,
        interp_skip=True, mask_rate=0.2, val_pattern="blocks", block_lengths=(3, 6),
    )  # fmt: skip
    est.fit(df, id="site", time="time", coords=["lat", "lon"], window=24)
    model = est.model_
    picked = model.interp_fusion.log_space_weight.detach().clone()
    rng = np.random.default_rng(0)
    values = rng.normal(size=(48, 5, 3)).cumsum(0) * 0.3 + rng.normal(size=(1, 5, 1))
    val = SiteValidation.make(values, [0, 24], 24, 0, "blocks", (3, 6))
    batch = val.batch(est.spatial_.train_xy, np.arange(48.0))

    def per_feature() -> np.ndarray:
        with torch.no_grad():
            mean, _ = predict_hidden(model, batch, 4, torch.Generator().manual_seed(0))
        err = np.abs(val.split(mean) - val.target)
        return np.array([err[..., j][val.hidden[..., j]].mean() for j in range(3)])

    with torch.no_grad():
        model.interp_fusion.log_space_weight.zero_()
    before = per_feature()
    pick_space_weight(model, batch, val, 0)
    after = per_feature()
    assert (after <= before + 1e-6).all(), (before, after)
    logs = model.interp_fusion.log_space_weight.detach().numpy()
    assert np.allclose(np.exp(logs) * 16, np.round(np.exp(logs) * 16), atol=1e-4)  # on the grid
    assert picked.shape == (3,)


def test_sites_mask_needs_spatial_data() -> None:
    est = GPVAE(latent_dim=1, epochs=1, progress=False, mask_rate=0.2, mask_pattern="sites")
    with pytest.raises(ValidationError, match="mask_pattern"):
        est.fit(np.zeros((2, 5, 1)))


def test_predict_sites_intervals_use_the_whole_site_calibration(
    fitted: tuple[GPVAE, pd.DataFrame], tmp_path: object
) -> None:
    """predict_sites' intervals are scaled by factors calibrated on the validation windows'
    whole hidden sites (kept by save/load), not by imputation's factors."""
    from dataclasses import replace

    est, df = fitted
    spec = est.spatial_
    assert spec is not None
    assert spec.site_interval_scale is not None
    assert len(spec.site_interval_scale) == len(FEATURES)
    est.save(tmp_path)  # type: ignore[arg-type]
    assert GPVAE.load(tmp_path).spatial_.site_interval_scale == spec.site_interval_scale  # type: ignore[arg-type, union-attr]
    test = df[df.time >= df.time.iloc[408]]
    others, held = test[test.site != "s0"], test[test.site == "s0"]
    a = est.predict_sites(others, held[["site", "lat", "lon"]], num_samples=8)
    try:
        est.spatial_ = replace(
            spec, site_interval_scale=tuple(2 * v for v in spec.site_interval_scale)
        )
        b = est.predict_sites(others, held[["site", "lat", "lon"]], num_samples=8)
    finally:
        est.spatial_ = spec
    wa = (a.upper[FEATURES] - a.mean[FEATURES]).to_numpy()
    wb = (b.upper[FEATURES] - b.mean[FEATURES]).to_numpy()
    np.testing.assert_allclose(wb, 2 * wa, rtol=1e-6, atol=1e-9)


def test_spatial_intervals_read_the_draws_at_predictive_positions(
    fitted: tuple[GPVAE, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    """predict_sites and impute read their intervals at the predictive positions
    p (S + 1) - 1 (a 90% interval covers a new draw 90% of the time whatever S), as the
    site calibration does: every quantile call of the spatial path asks for them."""
    import gpvae.estimator.spatial as spatial_mod
    import gpvae.model as model_mod

    asked: list[str] = []

    def spy(samples: torch.Tensor, probs: object, positions: str = "linear") -> object:
        asked.append(positions)
        return model_mod.sorted_quantiles(samples, probs, positions)  # type: ignore[arg-type]

    monkeypatch.setattr(spatial_mod, "sorted_quantiles", spy)
    est, df = fitted
    test = df[df.time >= df.time.iloc[408]]
    others, held = test[test.site != "s0"], test[test.site == "s0"]
    est.predict_sites(others, held[["site", "lat", "lon"]], num_samples=8)
    gappy = others.copy()
    gappy.loc[gappy.index[::5], FEATURES[0]] = np.nan
    est.impute(gappy, num_samples=8)
    assert asked
    assert set(asked) == {"predictive"}, asked


def test_far_sites_warn_naming_the_columns(fitted: tuple[GPVAE, pd.DataFrame]) -> None:
    est, df = fitted
    test = df[(df.time >= df.time.iloc[408]) & (df.site != "s0")]
    far = pd.DataFrame({"site": ["far"], "lat": [LAT0 + 2.0], "lon": [LON0]})
    # it said "predictions there are close to the prior", also with interp_skip, whose
    # predictions there follow the neighbours' average with intervals that do not widen
    assert est.model_.interp_fusion is None
    with pytest.warns(UserWarning, match=r"coords: .*'far'.*\['lat', 'lon'\]") as caught:
        est.predict_sites(test, far, num_samples=4)
    text = " ".join(str(w.message) for w in caught)
    assert "tend to the model's prior" in text
    assert "interp_skip" not in text
    near = pd.DataFrame({"site": ["near"], "lat": [LAT0], "lon": [LON0]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est.predict_sites(test, near, num_samples=19)


def test_predict_sites_checks_the_sites_it_is_given(fitted: tuple[GPVAE, pd.DataFrame]) -> None:
    """predict_sites took swapped or out-of-range coordinates (fit refuses them), a new site
    on an observed one (the distance weights then skipped that site), a new site listed at
    two places (the first row won) or under an observed site's id, and gave too narrow
    intervals from few draws without the warning impute gives."""
    est, df = fitted
    test = df[(df.time >= df.time.iloc[408]) & (df.site != "s0")]
    near = pd.DataFrame({"site": ["near"], "lat": [LAT0], "lon": [LON0]})
    swapped = test.rename(columns={"lat": "lon", "lon": "lat"})
    with pytest.raises(ValidationError, match=r"coords: expected latitudes .* 'lat', found 116"):
        est.predict_sites(swapped, near, num_samples=19)
    with pytest.raises(ValidationError, match=r"coords: expected latitudes .* found 95"):
        est.predict_sites(test, near.assign(lat=95.0), num_samples=19)
    on_s1 = test[test.site == "s1"].iloc[[0]][["lat", "lon"]].assign(site="new")
    with pytest.raises(ValidationError, match=r"sites: new site 'new' lies on observed site 's1'"):
        est.predict_sites(test, on_s1, num_samples=19)
    with pytest.raises(ValidationError, match=r"sites: expected new site ids, found \['s2'\]"):
        est.predict_sites(test, near.assign(site="s2"), num_samples=19)
    twice = pd.concat([near, near.assign(lat=LAT0 + 0.01)])
    with pytest.raises(ValidationError, match=r"coords: expected fixed coordinates per site"):
        est.predict_sites(test, twice, num_samples=19)
    with pytest.raises(ValidationError, match=r"id: expected columns .*\['site'\] missing"):
        est.predict_sites(test, near.drop(columns="site"), num_samples=19)
    with pytest.warns(UserWarning, match=r"num_samples: 5 draws are too few"):
        est.predict_sites(test, near, num_samples=5)


def test_time_series_methods_refuse_a_spatial_model(fitted: tuple[GPVAE, pd.DataFrame]) -> None:
    """They failed with errors about the id column or SpaceTime's input shape."""
    est, df = fitted
    part = df[df.site == "s1"].iloc[:48]
    calls = {
        "anomaly_scores": lambda: est.anomaly_scores(part),
        "fit_threshold": lambda: est.fit_threshold(part),
        "sample": lambda: est.sample(np.arange(5.0)),
        "forecast": lambda: est.forecast(part, horizon=2),
    }
    for name, call in calls.items():
        with pytest.raises(ValidationError, match=rf"^{name}: .*fitted on sites"):
            call()


def test_a_refit_on_the_other_kind_of_data_keeps_nothing_of_the_first(tmp_path: object) -> None:
    """A time-series refit after a spatial fit kept ``spatial_``: impute asked for a long
    frame and save wrote a folder that load refused; a spatial refit after a calibrated
    time-series fit kept its forecast calibration."""
    df = _field(S=4, T=48)
    small = {"latent_dim": 2, "hidden": (16,), "epochs": 1, "batch_size": 2, "progress": False}
    est = GPVAE(**small, forecast_horizon=3)
    X = np.random.default_rng(0).normal(size=(4, 40, 2))
    est.fit(X)
    assert est.forecast_scale_ is not None
    est.forecast_horizon = None  # a spatial fit refuses it
    est.fit(df, id="site", time="time", coords=["lat", "lon"], window=24)
    assert est.spatial_ is not None
    assert est.forecast_scale_ is None
    assert est.forecast_blend_ is None
    est.fit(X)
    assert est.spatial_ is None
    assert est.impute(X).mean.shape == X.shape
    est.save(tmp_path / "m")  # type: ignore[operator]
    again = GPVAE.load(tmp_path / "m")  # type: ignore[operator]
    assert again.spatial_ is None
    np.testing.assert_array_equal(again.impute(X).mean, est.impute(X).mean)


def test_projection_is_local_equirectangular() -> None:
    coords = np.array([[LAT0, LON0], [LAT0 + 0.1, LON0], [LAT0, LON0 + 0.1]])
    proj = Projection.infer(["lat", "lon"], coords)
    km = proj.to_km(coords) - proj.to_km(coords[:1])
    # one tenth of a degree of latitude is 11.12 km; of longitude, times cos(lat)
    assert km[1] == pytest.approx([0.0, 11.1195], abs=1e-3)
    assert km[2] == pytest.approx([11.1195 * math.cos(math.radians(LAT0 + 0.0)), 0.0], rel=1e-3)
    swapped = Projection.infer(["lon", "lat"], coords[:, ::-1])
    assert np.allclose(swapped.to_km(coords[:, ::-1]), proj.to_km(coords))
    assert Projection.infer(["x", "y"], coords).kind == "xy"


def _bad(df: pd.DataFrame, how: str) -> pd.DataFrame:
    df = df.copy()
    if how == "missing":
        df.loc[5, "lat"] = np.nan
    elif how == "inf":
        df.loc[5, "lon"] = np.inf
    elif how == "moving":
        df.loc[df.index[df.site == "s1"][3], "lon"] += 0.01
    elif how == "same-place":
        s2 = df.site == "s2"
        df.loc[s2, ["lat", "lon"]] = df.loc[df.site == "s1", ["lat", "lon"]].iloc[0].to_numpy()
    elif how == "one-site":
        df = df[df.site == "s1"]
    elif how == "twice":
        df = pd.concat([df, df.iloc[[7]]], ignore_index=True)
    return df


@pytest.mark.parametrize(
    ("how", "match"),
    [
        ("missing", r"coords: .*finite.*'lat'"),
        ("inf", r"coords: .*finite.*'lon'"),
        ("moving", r"coords: .*fixed coordinates.*'lon'.*'s1'"),
        ("same-place", r"coords: .*distinct.*'s1'.*'s2'"),
        ("one-site", r"id: .*at least 2 sites.*'site'"),
        ("twice", r"time: .*one row per site and time"),
    ],
)
def test_bad_spatial_input_is_refused_naming_the_column(how: str, match: str) -> None:
    df = _field(S=3, T=30)
    est = GPVAE(latent_dim=1, epochs=1, progress=False)
    with pytest.raises(ValidationError, match=match):
        est.fit(_bad(df, how), id="site", time="time", coords=["lat", "lon"], window=10)
    assert not est.is_fitted


def test_spatial_methods_need_a_spatial_fit() -> None:
    with pytest.raises(NotFittedError, match="predict_sites"):
        GPVAE().predict_sites(pd.DataFrame(), pd.DataFrame())


def test_a_spatial_fit_under_torchrun_stops_before_any_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every process of a torchrun job (RANK and WORLD_SIZE set) refuses a spatial fit with
    the reason, instead of each one training alone (tests/app/test_cli_torchrun.py runs the
    CLI under torchrun)."""
    df = _field(S=3, T=30)
    for rank in ("0", "1"):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", rank)
        est = GPVAE(latent_dim=1, epochs=1, progress=False)
        with pytest.raises(ValidationError, match=r"coords: expected one process: .*torchrun"):
            est.fit(df, id="site", time="time", coords=["lat", "lon"], window=10)
        assert not est.is_fitted


def test_field_fusion_gates_the_residual_only_without_an_own_site_neighbour() -> None:
    """``new_site_residual`` switches the net's residual off per feature only for entries
    with no observed neighbour in time at their own site (new sites); elsewhere the
    residual stays."""
    from gpvae.nets import FieldFusion

    fuse = FieldFusion(2, scale=5.0)
    last = [m for m in fuse.net.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.bias.copy_(torch.tensor([1.0, 1.0]))  # a residual of 1 everywhere
        fuse.new_site_residual.copy_(torch.tensor([0.0, 1.0]))
    decoded = torch.zeros(1, 2, 2)
    t_value = torch.full((1, 2, 2), 3.0)
    t_gap = torch.tensor([[[2.0, 2.0], [math.inf, math.inf]]])  # entry 1: no own neighbour
    s_value = torch.full((1, 2, 2), 3.0)
    s_dist = torch.full((1, 2, 2), 4.0)
    seen = torch.zeros(1, 2, 2, dtype=torch.bool)
    out = fuse(decoded, t_value, t_gap, s_value, s_dist, seen).detach()
    assert torch.allclose(out[0, 0], torch.tensor([4.0, 4.0]))  # base 3 + residual 1
    assert torch.allclose(out[0, 1], torch.tensor([3.0, 4.0]))  # feature 0 gated off


def test_pick_new_site_residual_turns_off_a_harmful_residual() -> None:
    """At held-out sites, a residual that adds 50 to feature 0 is switched off for that
    feature; features where the residual is zero (a tie) keep it."""
    from gpvae.estimator.spatial_validation import pick_new_site_residual

    df = _field(seed=5, S=6, T=72)
    est = GPVAE(
        latent_dim=2, epochs=1, batch_size=4, hidden=(8,), progress=False, seed=0, interp_skip=True
    )
    est.fit(df, id="site", time="time", coords=["lat", "lon"], window=24)
    fusion = est.model_.interp_fusion
    last = [m for m in fusion.net.modules() if isinstance(m, torch.nn.Linear)][-1]  # type: ignore[union-attr]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([50.0, 0.0, 0.0]))
    cube = np.stack([df[df.site == f"s{k}"][FEATURES].to_numpy() for k in range(6)], 1)
    values = (cube - np.nanmean(cube, (0, 1))) / np.nanstd(cube, (0, 1))
    coords = df.groupby("site")[["lat", "lon"]].first()
    xy = Projection.infer(["lat", "lon"], coords.to_numpy()).to_km(coords.to_numpy())
    gate = pick_new_site_residual(
        est.model_, values, np.array([0, 3]), xy, np.arange(72.0), 24, seed=0
    )
    np.testing.assert_array_equal(gate, [0.0, 1.0, 1.0])


def test_spatial_fit_never_trains_on_the_gate_sites(monkeypatch: pytest.MonkeyPatch) -> None:
    """With interp_skip on a field of at least SPATIAL_GATE_MIN_SITES sites, the sites that
    gate the residual are never observed in a training batch; the gate the
    fit stores is 0/1 per feature."""
    import gpvae.estimator.spatial as spatial_mod
    from gpvae import settings
    from gpvae.estimator.spatial_validation import gate_sites

    S = max(settings.SPATIAL_GATE_MIN_SITES, 7)
    held = gate_sites(S, 0)
    assert len(held) == max(1, round(settings.SPATIAL_GATE_SITE_SHARE * S))
    assert len(gate_sites(settings.SPATIAL_GATE_MIN_SITES - 1, 0)) == 0
    seen_sites: list[np.ndarray] = []
    real = spatial_mod.field_batch

    def spy(values: np.ndarray, *args: object, **kwargs: object) -> object:
        seen_sites.append(~np.isnan(values).all(axis=(0, 2)))
        return real(values, *args, **kwargs)

    monkeypatch.setattr(spatial_mod, "field_batch", spy)
    df = _field(seed=6, S=S, T=96)
    est = GPVAE(
        latent_dim=2, epochs=2, batch_size=4, hidden=(8,), progress=False, seed=0, interp_skip=True
    )
    est.fit(df, id="site", time="time", coords=["lat", "lon"], window=24)
    assert seen_sites  # training batches went through field_batch
    for sites in seen_sites:
        assert not sites[held].any()
        assert sites[np.setdiff1d(np.arange(S), held)].all()
    gate = est.model_.interp_fusion.new_site_residual.numpy()  # type: ignore[union-attr]
    assert set(gate.tolist()) <= {0.0, 1.0}


def test_projection_keeps_sites_across_the_180th_meridian_together() -> None:
    """Sites on both sides of the 180th meridian (Fiji) were centred at longitude 0 and put
    about 38,000 km apart; new sites across it too."""
    lat = np.array([-17.80, -17.75, -17.85, -17.78, -17.82, -17.76])
    lon = np.array([179.85, 179.92, 179.97, -179.96, -179.90, -179.84])
    proj = Projection.infer(["lat", "lon"], np.c_[lat, lon])
    assert abs(abs(proj.lon0) - 180.0) < 0.1, proj.lon0
    km = proj.to_km(np.c_[lat, lon])

    def great_circle(i: int, j: int) -> float:
        la1, lo1, la2, lo2 = map(math.radians, (lat[i], lon[i], lat[j], lon[j]))
        h = math.sin((la2 - la1) / 2) ** 2
        h += math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
        return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))

    for i, j in ((2, 3), (0, 5), (1, 4)):
        assert np.linalg.norm(km[i] - km[j]) == pytest.approx(great_circle(i, j), rel=1e-3)
    new = proj.to_km(np.array([[-17.8, 179.99], [-17.8, -179.99]]))
    assert np.linalg.norm(new[0] - new[1]) == pytest.approx(2.12, abs=0.01)
    # sites away from the meridian keep the middle of their range, bit for bit
    coords = np.array([[LAT0, 116.1], [LAT0 + 0.2, 116.7], [LAT0, 116.35]])
    assert Projection.infer(["lat", "lon"], coords).lon0 == 0.5 * (116.1 + 116.7)
    both = Projection.infer(["lat", "lon"], np.array([[0.0, -170.0], [0.0, 170.0], [0.0, 0.0]]))
    assert both.lon0 in (95.0, -95.0, 85.0, -85.0)  # the middle of a 190-degree arc


def test_projection_error_is_what_the_docs_measure() -> None:
    """The docs claimed 0.1% over a city and 1% over 500 km; the measured worst pairwise
    errors against great-circle distances are those gpvae.data.spatial now states."""
    from gpvae.data import spatial
    from gpvae.datasets.beijing_air import BEIJING_STATION_COORDINATES

    def worst(ll: np.ndarray) -> float:
        km = Projection.infer(["lat", "lon"], ll).to_km(ll)
        r = np.radians(ll)
        errs = []
        for i in range(len(ll)):
            for j in range(i + 1, len(ll)):
                h = (
                    np.sin((r[j, 0] - r[i, 0]) / 2) ** 2
                    + np.cos(r[i, 0]) * np.cos(r[j, 0]) * np.sin((r[j, 1] - r[i, 1]) / 2) ** 2
                )
                arc = 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(h))
                errs.append(abs(np.linalg.norm(km[i] - km[j]) / arc - 1))
        return 100 * max(errs)

    def square(lat: float, side: float) -> np.ndarray:
        dlat = side / 111.2
        dlon = dlat / math.cos(math.radians(lat))
        lats, lons = (lat - dlat / 2, lat + dlat / 2), (0.0, dlon)
        return np.array([[a, b] for a in lats for b in lons])

    doc = spatial.__doc__ or ""
    assert worst(np.array(list(BEIJING_STATION_COORDINATES.values()))) == pytest.approx(
        0.31, abs=0.005
    )
    assert "0.31% over the 12 BeijingAir stations" in doc
    assert round(worst(square(40.0, 500.0)), 1) == 3.5
    assert "3.5% (500 km)" in doc
    assert round(worst(square(60.0, 500.0)), 1) == 7.5
    assert worst(square(0.0, 500.0)) < 0.1


def _no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    from gpvae.estimator import spatial

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained before refusing")

    monkeypatch.setattr(spatial, "train", refuse)


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"posterior": "banded"}, r"^posterior: expected 'structured' .*found 'banded'"),
        ({"posterior": "diagonal"}, r"^posterior: expected 'structured' .*found 'diagonal'"),
        ({"window": 12}, r"^window: .*\(10\).*found GPVAE\(window=12\)"),
        ({"interp_blend": True}, r"^interp_blend: .*expected False, found True"),
        ({"forecast_horizon": 4}, r"^forecast_horizon: .*expected None, found 4"),
        ({"checkpoint_dir": "ck"}, r"^checkpoint_dir: .*expected None, found 'ck'"),
        (
            {"kernel": "matern32+periodic", "period": 24},
            r"^kernel: expected a name without periodic factors .*'matern32\+periodic'",
        ),
        (
            {"kernel": ["matern32", "rbf"], "latent_dim": 2},
            r"^kernel: expected one kernel name or Kernel instance .*a list of 2",
        ),
    ],
)
def test_spatial_fit_refuses_settings_it_cannot_honour_before_training(
    settings: dict[str, object],
    match: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: object,
) -> None:
    """They were accepted and ignored (window, interp_blend, forecast_horizon,
    checkpoint_dir), trained and then failed in predict_sites with an AttributeError
    (posterior), or failed saying the period was None (periodic kernels, lists)."""
    _no_training(monkeypatch)
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
    df = _field(S=3, T=30)
    est = GPVAE(**{"latent_dim": 1, "epochs": 1, "progress": False, **settings})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=match):
        est.fit(df, id="site", time="time", coords=["lat", "lon"], window=10)
    assert not est.is_fitted


@pytest.mark.parametrize(
    ("fit_args", "match"),
    [
        ({"resume": True}, r"^resume: expected their defaults with coords"),
        ({"sharded": True}, r"^sharded: expected their defaults with coords"),
        ({"X_val": "df", "times": [0.0]}, r"^times, X_val: expected their defaults"),
    ],
)
def test_spatial_fit_refuses_time_series_fit_arguments(
    fit_args: dict[str, object], match: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """resume, sharded, times and the validation data were ignored by a spatial fit."""
    _no_training(monkeypatch)
    df = _field(S=3, T=30)
    args = {k: (df if v == "df" else v) for k, v in fit_args.items()}
    est = GPVAE(latent_dim=1, epochs=1, progress=False)
    with pytest.raises(ValidationError, match=match):
        est.fit(df, id="site", time="time", coords=["lat", "lon"], window=10, **args)  # type: ignore[arg-type]
    assert not est.is_fitted


def test_spatial_fit_honours_kernel_lr_and_the_estimator_s_window() -> None:
    """kernel_lr was not passed to the spatial training: 1e-6 and 0.5 gave the same kernel."""
    df = _field(S=3, T=40)

    def spatial_lengthscale(**kw: object) -> np.ndarray:
        est = GPVAE(latent_dim=1, epochs=2, hidden=(8,), lr=1e-3, progress=False, **kw)  # type: ignore[arg-type]
        est.fit(df, id="site", time="time", coords=["lat", "lon"], window=10)
        assert est.spatial_ is not None
        assert est.spatial_.window == 10
        kernel = est.model_.prior.kernels[0]
        return kernel.spatial.lengthscale.detach().numpy().copy()  # type: ignore[union-attr]

    slow = spatial_lengthscale(kernel_lr=1e-6)
    fast = spatial_lengthscale(kernel_lr=0.5)
    default = spatial_lengthscale()  # None: lr (the benchmark's setting), as before
    same_lr = spatial_lengthscale(kernel_lr=1e-3)
    assert np.abs(fast - slow).max() > 1e-2, (fast, slow)
    assert np.array_equal(default, same_lr)
    assert np.array_equal(spatial_lengthscale(window=10), default)  # the same window is fine


def test_spatial_fit_honours_noise_lr() -> None:
    """noise_lr reaches the spatial training: the likelihood's noise learns at its rate
    (None: lr, the same fit as before)."""
    df = _field(S=3, T=40)

    def raw_noise(**kw: object) -> np.ndarray:
        est = GPVAE(latent_dim=1, epochs=2, hidden=(8,), lr=1e-3, progress=False, **kw)  # type: ignore[arg-type]
        est.fit(df, id="site", time="time", coords=["lat", "lon"], window=10)
        return est.model_.likelihood.raw_variance.detach().numpy().copy()

    default = raw_noise()
    assert np.array_equal(raw_noise(noise_lr=1e-3), default)  # its own group, the same rate
    assert np.abs(raw_noise(noise_lr=0.5) - default).max() > 0.1


def test_spatial_impute_returns_the_input_s_rows_columns_and_dtypes(
    fitted: tuple[GPVAE, pd.DataFrame],
) -> None:
    """Spatial impute added the absent (site, time) rows, sorted them by site, reset the index,
    dropped the coordinate and other columns, turned int64 ids into objects, and ignored
    times; predict_sites turned int64 ids into objects too."""
    est, df = fitted
    test = df[(df.time >= df.time.iloc[384]) & (df.site != "s0")].copy()
    test["site"] = test.site.str[1:].astype(np.int64)
    test["note"] = "x"
    gappy = test.sample(frac=1.0, random_state=1).drop(index=test.index[[3, 40, 41]])
    gappy.index = gappy.index * 10 + 7
    gappy.loc[gappy.index[:30], "a"] = np.nan
    res = est.impute(gappy, num_samples=8)
    for part in (res.mean, res.lower, res.upper):
        assert part.index.equals(gappy.index)
        assert list(part.columns) == list(gappy.columns)
        assert part.site.dtype == np.int64
        pd.testing.assert_frame_equal(
            part.drop(columns=FEATURES), gappy.drop(columns=FEATURES), check_dtype=True
        )
        assert not part[FEATURES].isna().any().any()
    given = gappy[FEATURES].to_numpy()
    observed = ~np.isnan(given)
    assert np.array_equal(res.mean[FEATURES].to_numpy()[observed], given[observed])
    lo, hi = res.lower.a.to_numpy()[:30], res.upper.a.to_numpy()[:30]
    assert (lo < hi).all()
    with pytest.raises(ValidationError, match=r"^times: expected None .*'time'"):
        est.impute(gappy, times=np.arange(3), num_samples=8)
    new = pd.DataFrame({"site": np.array([100], dtype=np.int64), "lat": [LAT0], "lon": [LON0]})
    pred = est.predict_sites(gappy, new, num_samples=19)
    assert pred.mean.site.dtype == np.int64
    assert (pred.mean.site == 100).all()


def test_spatial_impute_result_keeps_the_time_series_contract(
    fitted: tuple[GPVAE, pd.DataFrame],
) -> None:
    """Spatial impute returned mean, lower and upper frames only: no ``observed``,
    ``quantiles`` or ``to_frame()``, and ``return_samples=True`` was refused although the
    intervals come from draws. Now the time series' ImputationResult of a DataFrame input;
    observed values are never altered (mean, bounds, every draw), a float32 column too."""
    from gpvae.errors import InputTypeError
    from gpvae.estimator.results import ImputationResult
    from gpvae.model import sorted_quantiles

    est, df = fitted
    test = df[(df.time >= df.time.iloc[384]) & (df.site != "s0")].copy()
    test["b"] = test["b"].astype(np.float32)
    test["note"] = "x"
    gappy = test.sample(frac=1.0, random_state=2)
    gappy.loc[gappy.index[:40], "a"] = np.nan
    gappy.loc[gappy.index[20:60], "b"] = np.nan
    given = gappy[FEATURES].to_numpy(dtype=np.float64)
    seen = ~np.isnan(given)
    res = est.impute(gappy, num_samples=39, quantiles=(0.1, 0.8), return_samples=True)
    assert isinstance(res, ImputationResult)
    assert res.quantiles == (0.1, 0.8)
    # observed: a copy of the input with bool feature columns
    assert list(res.observed.columns) == list(gappy.columns)
    assert res.observed.index.equals(gappy.index)
    assert all(pd.api.types.is_bool_dtype(t) for t in res.observed[FEATURES].dtypes)
    assert np.array_equal(res.observed[FEATURES].to_numpy(), seen)
    pd.testing.assert_frame_equal(res.observed.drop(columns=FEATURES), gappy.drop(columns=FEATURES))
    # nothing observed is altered: mean, bounds and every draw hold the value read
    for part in (res.mean, res.lower, res.upper):
        assert np.array_equal(part[FEATURES].to_numpy()[seen], given[seen])
    samples = res.samples
    assert samples.shape == (39, len(gappy), len(FEATURES))
    assert (samples[:, seen] == given[seen]).all()
    missing = samples[:, ~seen]  # (S, number missing)
    assert np.isfinite(missing).all()
    assert (missing.std(0) > 0).all()
    # the draws are those of the interval: its quantiles at the predictive positions
    lo, hi = sorted_quantiles(torch.as_tensor(missing), (0.1, 0.8), "predictive")
    scale = np.broadcast_to(est.scaler_.std_, given.shape)[~seen]
    for bound, q in ((res.lower, lo), (res.upper, hi)):
        np.testing.assert_allclose(
            bound[FEATURES].to_numpy()[~seen] / scale, q.numpy() / scale, rtol=0, atol=1e-5
        )
    # to_frame: the mean frame, then <feature>_lower and <feature>_upper after the columns
    whole = res.to_frame()
    ends = [f"{f}_{end}" for end in ("lower", "upper") for f in FEATURES]
    assert list(whole.columns) == [*gappy.columns, *ends]
    assert whole.index.equals(gappy.index)
    pd.testing.assert_frame_equal(whole[list(gappy.columns)], res.mean)
    for f in FEATURES:
        assert np.array_equal(whole[f"{f}_lower"].to_numpy(), res.lower[f].to_numpy())
        assert np.array_equal(whole[f"{f}_upper"].to_numpy(), res.upper[f].to_numpy())
    # the draws are returned on request only, and asking for them changes nothing else
    plain = est.impute(gappy, num_samples=39, quantiles=(0.1, 0.8))
    assert plain.samples is None
    for a, b in ((plain.mean, res.mean), (plain.lower, res.lower), (plain.upper, res.upper)):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    with pytest.raises(InputTypeError, match=r"^return_samples: expected True or False"):
        est.impute(gappy, num_samples=8, return_samples="yes")  # type: ignore[arg-type]


def test_far_site_warning_with_interp_skip_says_intervals_do_not_widen() -> None:
    """With interp_skip the warning claimed predictions far out were close to the prior;
    they are the fusion's inverse distance average of the observed sites, with intervals as
    wide as inside the network."""
    from gpvae.estimator.spatial import FAR_FUSED

    df = _field(S=6, T=48)
    est = GPVAE(latent_dim=1, epochs=1, hidden=(8,), progress=False, interp_skip=True)
    est.fit(df, id="site", time="time", coords=["lat", "lon"], window=12)
    near = pd.DataFrame({"site": ["near"], "lat": [LAT0], "lon": [LON0]})
    far = pd.DataFrame({"site": ["far"], "lat": [LAT0 + 20.0], "lon": [LON0]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = est.predict_sites(df, near, num_samples=19)
    with pytest.warns(UserWarning, match=r"'far'") as caught:
        b = est.predict_sites(df, far, num_samples=19)
    assert any(FAR_FUSED in str(w.message) for w in caught)
    assert "do not widen with distance" in FAR_FUSED
    width = [float((r.upper.a - r.lower.a).mean()) for r in (a, b)]
    assert width[1] < 1.2 * width[0], width  # what the warning says


def test_unobserved_neighbours_and_training_sites_warn() -> None:
    """predict_sites with no observed value at any neighbour, and a fit with a site never
    observed, were silent (the time-series path warns)."""
    df = _field(S=5, T=48)
    blank = df.copy()
    blank.loc[blank.site == "s3", FEATURES] = np.nan
    est = GPVAE(latent_dim=1, epochs=1, hidden=(8,), progress=False)
    with pytest.warns(UserWarning, match=r"X: 1 sites with no observed value .*\['s3'\]"):
        est.fit(blank, id="site", time="time", coords=["lat", "lon"], window=12)
    new = pd.DataFrame({"site": ["new"], "lat": [LAT0], "lon": [LON0]})
    blind = df[df.site != "s0"].copy()
    blind.loc[blind.time < blind.time.iloc[24], FEATURES] = np.nan  # the first 2 windows
    blind["c"] = np.nan
    with pytest.warns(UserWarning, match=r"^X: ") as caught:
        est.predict_sites(blind, new, num_samples=19)
    text = [str(w.message) for w in caught]
    assert any(re.search(r"X: 2 of 4 windows of 12 steps have no observed value", t) for t in text)
    assert any("no value of features ['c']" in t for t in text), text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est.predict_sites(df[df.site != "s0"], new, num_samples=19)


def test_a_repeated_site_and_date_is_named_as_written() -> None:
    """The duplicate row's date was shown as a Python repr, Timestamp('2020-01-01 07:00:00')."""
    df = _field(S=3, T=30)  # hourly dates
    twice = pd.concat([df, df.iloc[[7]]], ignore_index=True)
    est = GPVAE(latent_dim=1, epochs=1, progress=False)
    with pytest.raises(ValidationError) as err:
        est.fit(twice, id="site", time="time", coords=["lat", "lon"], window=10)
    stamp = str(df["time"].iloc[7])
    assert f"twice at {stamp} in column 'time'" in str(err.value)
    assert "Timestamp(" not in str(err.value)


def test_spatial_impute_warns_about_sites_far_outside_the_training_area() -> None:
    """impute on a model fitted on sites filled the gaps of a site hundreds of km from
    every training site without a word (predict_sites warns about such observed sites)."""
    df = _field(S=6, T=48)
    est = GPVAE(latent_dim=1, epochs=1, hidden=(8,), progress=False)
    est.fit(df, id="site", time="time", coords=["lat", "lon"], window=12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est.impute(df, num_samples=19)  # the training sites: no warning
    moved = df.copy()
    moved.loc[moved.site == "s2", "lat"] = LAT0 + 2.0  # about 220 km north
    with pytest.warns(UserWarning, match=r"coords: sites 's2' \(.* km\) in columns") as caught:
        est.impute(moved, num_samples=19)
    said = [w for w in caught if "far outside the training area" in str(w.message)]
    assert len(said) == 1
    assert "'s1'" not in str(said[0].message)
    assert said[0].filename == __file__  # it points at the caller's line
    # predict_sites' warning points there too (it pointed into spatial_methods.py)
    new = pd.DataFrame({"site": ["new"], "lat": [LAT0], "lon": [LON0]})
    with pytest.warns(UserWarning, match="far outside the training area") as caught:
        est.predict_sites(moved[moved.site != "s0"], new, num_samples=19)
    assert [w.filename for w in caught if "training area" in str(w.message)] == [__file__]


def test_spatial_impute_and_predict_sites_warn_about_far_times() -> None:
    """impute and predict_sites of a model fitted on sites never looked at the times (the
    README says times far outside the training range warn): data 10 years after the
    training days were read in its steps without a word. Data that continue right after
    the training days stay silent."""
    df = _field(S=6, T=48)
    train = df[df.time < df.time.iloc[24]]
    est = GPVAE(latent_dim=1, epochs=1, hidden=(8,), progress=False)
    est.fit(train, id="site", time="time", coords=["lat", "lon"], window=12)
    after = df[df.time >= df.time.iloc[24]]
    new = pd.DataFrame({"site": ["new"], "lat": [LAT0], "lon": [LON0]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est.impute(after, num_samples=19)
        est.predict_sites(after, new, num_samples=19)
    later = after.assign(time=after["time"] + pd.Timedelta(days=3650))
    for call in (
        lambda: est.impute(later, num_samples=19),
        lambda: est.predict_sites(later, new, num_samples=19),
    ):
        with pytest.warns(UserWarning, match=r"^X\['time'\] .*: 6 series start far outside") as w:
            call()
        said = [x for x in w if "start far outside" in str(x.message)]
        assert "series 's0'" in str(said[0].message)
        assert [x.filename for x in said] == [__file__]  # it points at the caller's line


def test_kernel_summary_reads_space_in_km_and_time_in_hours(
    fitted: tuple[GPVAE, pd.DataFrame],
) -> None:
    """A spatial fit's index points are (east km, north km, hourly steps): the spatial
    lengthscale reads in km, the temporal one in hours (one step is an hour here)."""
    est, _ = fitted
    table = est.kernel_summary()
    kernel = est.model_.prior.kernel_list[0]
    assert isinstance(kernel, SpaceTime)
    space = table[(table.source == "latent 0") & table.term.str.startswith("space")]
    time = table[(table.source == "latent 0") & table.term.str.startswith("time")]
    lengthscales = space[space.parameter.str.startswith("lengthscale")]
    assert set(lengthscales.unit) == {"km"}
    assert np.allclose(
        lengthscales.value.to_numpy(), kernel.spatial.lengthscale.detach().reshape(-1).numpy()
    )
    row = time[time.parameter == "lengthscale"]
    assert row.unit.tolist() == ["hours"]
    assert row.value.item() == pytest.approx(float(kernel.temporal.lengthscale), rel=1e-6)
