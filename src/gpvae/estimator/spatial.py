"""The estimator's spatio-temporal path: fit on a field, predict at new sites, impute.

A field (S sites x T times x D features, :mod:`gpvae.data.spatial`) is cut into time windows
of ``window`` steps; each window over every site is one series of the GP-VAE, with index
points (east km, north km, step). The prior of every latent channel is
``SpaceTime(k_s, k_t)``, conditioned by the ``spacetime`` backend (exact Kalman over time,
the sites as the state's spatial block) or, with ``inducing`` sites, the ``sparse`` one.

- :func:`fit_field` trains on the windows (a random offset per epoch) and early-stops on the
  validation windows (the last ``val_fraction`` of the record): for each, one site is hidden
  whole and predicted from the others (the task of :func:`predict_sites`), and a tenth of the
  other entries is hidden as random points or, with ``val_pattern="blocks"``, as runs of
  ``block_lengths`` steps of one feature at one site (the task of :func:`impute_field`); the
  score is the MAE of the hidden entries in standardised units
  (:mod:`gpvae.estimator.spatial_validation`). The interval half-widths are then scaled per
  feature so that 90% of those hidden entries fall inside the (5%, 95%) interval; for
  :func:`predict_sites`, so that 90% of the entries of whole hidden sites do, on copies of the
  validation windows that hide every site in turn.
- :func:`predict_sites` conditions each window's latent GP on the observed sites and draws
  it at the new sites (kriging in latent space), then decodes: mean and quantiles of y.
- :func:`impute_field` fills the missing entries of the observed sites; every latent is
  conditioned on all sites of the window, so neighbours inform a gap. Observed values are
  returned unchanged; the result is the time series' ImputationResult of a DataFrame input
  (``observed``, ``quantiles``, ``to_frame()``, draws on request).

Shapes: S sites, T steps, D features, W window steps, L latent channels.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import torch

from gpvae import settings
from gpvae.arguments import check_memory
from gpvae.data.scaler import Scaler
from gpvae.data.series import Layout, SeriesSet
from gpvae.data.spatial import (
    Field,
    Projection,
    TimeAxis,
    field_batch,
    field_from_frame,
    site_table,
    warn_far_sites,
)
from gpvae.errors import ValidationError
from gpvae.estimator.assembly import ModelSpec, build_model
from gpvae.estimator.results import ImputationResult
from gpvae.estimator.spatial_validation import (
    SiteValidation,
    calibrate,
    gate_sites,
    pick_new_site_residual,
    pick_space_power,
    pick_space_weight,
    predict_hidden,
    site_copies,
)
from gpvae.gp.prior import GPPrior
from gpvae.kernels import Kernel, SpaceTime, build_kernel, get_kernel
from gpvae.model import GPVAEModel, sorted_quantiles
from gpvae.nets.interp import FieldFusion
from gpvae.training.loop import TrainConfig, TrainState, train

__all__ = [
    "SpatialResult",
    "SpatialSpec",
    "build_spatial_model",
    "fit_field",
    "impute_field",
    "predict_sites",
]


@dataclass(frozen=True)
class SpatialSpec:
    """What a spatial model needs besides its weights (saved in config.json).

    Attributes:
        id, time: the site id and time columns.
        projection: coordinates -> planar km (its columns are the coordinate columns).
        time_axis: times -> steps.
        features: the D feature columns.
        window: W, steps per series.
        inducing: M inducing sites (the sparse backend), or None (exact spacetime backend).
        spatial_lengthscale: initial spatial lengthscale, km.
        train_xy: (S, 2) km of the training sites (for the far-site warning).
        site_interval_scale: (D,) factors on :func:`predict_sites`' interval half-widths,
            calibrated on the validation windows' whole hidden sites (None: the estimator's
            ``interval_scale_``, as folders saved before them).
    """

    id: str
    time: str
    projection: Projection
    time_axis: TimeAxis
    features: tuple[str, ...]
    window: int
    inducing: int | None
    spatial_lengthscale: float
    train_xy: np.ndarray = field(repr=False)
    site_interval_scale: tuple[float, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": self.time,
            "projection": self.projection.to_json(),
            "time_axis": self.time_axis.to_json(),
            "features": list(self.features),
            "window": self.window,
            "inducing": self.inducing,
            "spatial_lengthscale": self.spatial_lengthscale,
            "train_xy": np.asarray(self.train_xy, dtype=np.float64).tolist(),
            "site_interval_scale": None
            if self.site_interval_scale is None
            else list(self.site_interval_scale),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SpatialSpec:
        return cls(
            id=str(data["id"]),
            time=str(data["time"]),
            projection=Projection.from_json(data["projection"]),
            time_axis=TimeAxis.from_json(data["time_axis"]),
            features=tuple(str(f) for f in data["features"]),
            window=int(data["window"]),
            inducing=None if data["inducing"] is None else int(data["inducing"]),
            spatial_lengthscale=float(data["spatial_lengthscale"]),
            train_xy=np.asarray(data["train_xy"], dtype=np.float64).reshape(-1, 2),
            site_interval_scale=None
            if data.get("site_interval_scale") is None
            else tuple(float(v) for v in data["site_interval_scale"]),
        )


@dataclass(frozen=True)
class SpatialResult:
    """Predictions of :func:`predict_sites` as long DataFrames, in the original units:
    (id, time, features) rows, site-major, ids in the dtype of the sites' id column
    (:func:`impute_field` returns an :class:`~gpvae.estimator.results.ImputationResult`).

    Attributes:
        mean: predictive mean.
        lower, upper: the quantiles of the predictive draws, scaled about the mean by the
            site calibration.
        samples: None (predict_sites returns no draws).
    """

    mean: pd.DataFrame
    lower: pd.DataFrame
    upper: pd.DataFrame
    samples: np.ndarray | None = None


# ----------------------------------------------------------------------------------------
# model


def build_spatial_model(est: Any, spec: SpatialSpec, num_features: int) -> GPVAEModel:
    """The GP-VAE of the estimator's settings with a SpaceTime prior (seeded by est.seed)."""
    if isinstance(est.lengthscale, tuple):
        raise ValidationError(
            "lengthscale: expected one number for a spatial fit (one SpaceTime kernel is "
            f"shared by the latent channels), found {len(est.lengthscale)}"
        )
    temporal = (
        est.kernel if isinstance(est.kernel, Kernel) else build_kernel(est.kernel, est.lengthscale)
    )
    name = "matern32" if isinstance(est.kernel, Kernel) else est.kernel
    spatial = get_kernel(name, lengthscale=[spec.spatial_lengthscale] * 2)
    kernel = SpaceTime(spatial, temporal)
    backend = "sparse" if spec.inducing is not None else est.backend
    model_spec = ModelSpec(
        latent_dim=est.latent_dim,
        kernel=kernel,
        posterior=est.posterior,
        backend="dense" if backend == "sparse" else backend,
        likelihood=est.likelihood,
        encoder=est.encoder,
        decoder=est.decoder,
        hidden=est.hidden,
        beta=est.beta,
        lengthscale=None,
        mask_rate=est.mask_rate,
        mask_pattern=est.mask_pattern,
        block_lengths=est.block_lengths,
        interp_skip=est.interp_skip,
        interp_space=spec.spatial_lengthscale / 2 if est.interp_skip else None,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(est.seed)
        model = build_model(model_spec, num_features)
        if spec.inducing is not None:
            z = _initial_inducing(spec.train_xy, spec.inducing, est.seed)
            model.prior = GPPrior(kernel, est.latent_dim, backend="sparse", inducing=z)
    return model


def _initial_inducing(xy: np.ndarray, num: int, seed: int) -> torch.Tensor:
    """M inducing sites: the training sites when M >= S, else k-means++ seeds among them."""
    rng = np.random.default_rng(seed)
    if num >= len(xy):
        extra = xy[rng.integers(len(xy), size=num - len(xy))] + rng.normal(
            0, 1.0, (num - len(xy), 2)
        )
        return torch.as_tensor(np.concatenate([xy, extra]), dtype=torch.float32)
    chosen = [int(rng.integers(len(xy)))]
    d2 = ((xy - xy[chosen[0]]) ** 2).sum(-1)
    for _ in range(num - 1):
        nxt = (
            int(rng.choice(len(xy), p=d2 / d2.sum()))
            if d2.sum() > 0
            else int(rng.integers(len(xy)))
        )
        chosen.append(nxt)
        d2 = np.minimum(d2, ((xy - xy[nxt]) ** 2).sum(-1))
    return torch.as_tensor(xy[chosen], dtype=torch.float32)


# ----------------------------------------------------------------------------------------
# fit


def _standardise(values: np.ndarray, scaler: Scaler) -> np.ndarray:
    mean, std = scaler.mean_, scaler.std_
    assert mean is not None
    assert std is not None
    return (values - mean) / std


def _field_scaler(field_: Field) -> Scaler:
    """Per-feature mean and std of the observed training entries."""
    D = len(field_.feature_names)
    flat = field_.values.reshape(-1, D)
    mean, std = np.zeros(D), np.ones(D)
    for j in range(D):
        col = flat[:, j][~np.isnan(flat[:, j])]
        if col.size == 0:
            raise ValidationError(
                f"X: expected every feature to be observed at least once, found "
                f"{field_.feature_names[j]!r} never observed"
            )
        mean[j] = col.mean()
        std[j] = col.std() if col.std() > 0 else 1.0
    scaler = Scaler()
    scaler.mean_, scaler.std_ = mean, std
    scaler.feature_names_ = tuple(field_.feature_names)
    scaler.names_given_ = True
    return scaler


def fit_field(
    est: Any,
    frame: pd.DataFrame,
    id_col: Hashable,
    time_col: Hashable,
    coords: Sequence[Hashable],
    features: Sequence[Hashable] | None,
    projection: str,
    window: int,
    inducing: int | None,
) -> tuple[GPVAEModel, Scaler, SpatialSpec, np.ndarray, TrainState]:
    """Train the spatial GP-VAE; returns model, scaler, spec, interval scales, train state."""
    field_, proj, axis = field_from_frame(frame, id_col, time_col, coords, features, projection)
    empty = np.isnan(field_.values).all(axis=(0, 2))  # (S,) sites never observed
    if empty.any():
        names = [field_.site_ids[i] for i in np.flatnonzero(empty)]
        warnings.warn(
            f"X: {len(names)} sites with no observed value in column {id_col!r}: "
            f"{names[:10]!r}: nothing is learned from them (they stay in the field, "
            f"unobserved; impute fills them from their neighbours as at a new site)",
            UserWarning,
            stacklevel=4,  # the caller of GPVAE.fit (via _fit_spatial)
        )
    scaler = _field_scaler(field_)
    # the training range for the far-times warning, in the field's time steps from the
    # first training time (the scaler's time_origin_ 0 and time_step_ 1)
    scaler.time_end_ = float(field_.times[-1])
    values = _standardise(field_.values, scaler)
    S = field_.num_sites
    T = len(field_.times)
    if window < 2 or window > T:
        raise ValidationError(
            f"window: expected 2 <= window <= {T} (the number of times), found {window}"
        )
    if getattr(est, "interp_cross", False):
        raise ValidationError(
            "interp_cross: expected False for spatial data (its fusion reads the other sites "
            "at the same time already), found True"
        )
    if est.interp_skip and window * S > settings.FIELD_FUSION_MAX_POINTS:
        raise ValidationError(
            f"interp_skip: on spatial data the fusion compares every pair of a window's "
            f"points, expected window x sites <= {settings.FIELD_FUSION_MAX_POINTS}, found "
            f"{window} x {S} = {window * S}; use a shorter window or interp_skip=False"
        )
    dist = np.sqrt(((field_.xy[:, None] - field_.xy[None]) ** 2).sum(-1))
    nearest = np.where(np.eye(S, dtype=bool), np.inf, dist).min(1)
    spec = SpatialSpec(
        id=str(id_col),
        time=str(time_col),
        projection=proj,
        time_axis=axis,
        features=field_.feature_names,
        window=int(window),
        inducing=inducing,
        spatial_lengthscale=float(max(np.median(nearest) * 2.0, 1e-3)),
        train_xy=field_.xy,
    )
    model = build_spatial_model(est, spec, len(field_.feature_names))

    # chronological split: the last val_fraction of the windows validate
    n_windows = T // window
    n_val = round(est.val_fraction * n_windows) if est.val_fraction > 0 and n_windows > 1 else 0
    n_val = min(n_val, n_windows - 1)
    train_steps = (n_windows - n_val) * window
    # sites held out of training to gate the fusion's residual at new sites
    held = gate_sites(S, est.seed) if est.interp_skip else np.zeros(0, dtype=int)
    fit_values = values.copy() if len(held) else values
    fit_values[:, held] = np.nan
    make_val = partial(
        SiteValidation.make,
        fit_values,
        [train_steps + k * window for k in range(n_val)],
        window,
        est.seed,
        est.val_pattern,
        est.block_lengths,
    )
    val = make_val()
    val_batch = val.batch(field_.xy, field_.times) if n_val else None
    train_values = fit_values[:train_steps]
    train_times = field_.times[:train_steps]
    if isinstance(model.interp_fusion, FieldFusion):  # model-free: every site's values
        power = pick_space_power(values[:train_steps], field_.xy)
        model.interp_fusion.space_power.copy_(torch.as_tensor(power))

    def batches(epoch: int) -> Any:
        r = np.random.default_rng((est.seed, epoch))
        offset = int(r.integers(window))
        starts = np.arange(offset, max(train_steps - window, 0) + 1, window)
        if len(starts) == 0:
            starts = np.array([0])
        starts = r.permutation(starts)
        for i in range(0, len(starts), est.batch_size):
            yield field_batch(
                train_values,
                field_.xy,
                train_times,
                starts[i : i + est.batch_size].tolist(),
                window,
            )

    def val_score() -> float:
        assert val_batch is not None
        with torch.no_grad():
            mean, _ = predict_hidden(model, val_batch, 4, torch.Generator().manual_seed(est.seed))
        return val.mae(mean)

    base = est._session_config().train
    config = TrainConfig(
        epochs=base.epochs,
        lr=base.lr,
        kernel_lr=est.kernel_lr,  # None: lr, as spatial fits had (the benchmark's setting)
        noise_lr=base.noise_lr,
        optimizer=base.optimizer,
        patience=base.patience,
        num_samples=base.num_samples,
        progress=base.progress,
    )
    steps = max(1, -(-max(train_steps // window, 1) // est.batch_size))
    state, _ = train(
        model,
        batches,
        config,
        val_score=val_score if val_batch is not None else None,
        generator=torch.Generator().manual_seed(est.seed),
        steps_per_epoch=steps,
    )
    if val_batch is not None:
        pick_space_weight(model, val_batch, val, est.seed)
    if isinstance(model.interp_fusion, FieldFusion) and len(held):
        gate = pick_new_site_residual(
            model, values, held, field_.xy, field_.times, window, est.seed
        )
        model.interp_fusion.new_site_residual.copy_(torch.as_tensor(gate))
    scale = np.ones(values.shape[-1])
    if val_batch is not None and est.calibrate:
        scale = calibrate(model, val_batch, val, est.seed)
        copies = make_val(copies=site_copies(n_val, S))
        copies_batch = copies.batch(field_.xy, field_.times)
        sites = calibrate(model, copies_batch, copies, est.seed, only_whole=True)
        spec = replace(spec, site_interval_scale=tuple(float(v) for v in sites))
    return model, scaler, spec, scale, state


# ----------------------------------------------------------------------------------------
# prediction

#: What :func:`predict_sites` gives at a new site far outside the training area, with
#: ``interp_skip`` (the fusion's inverse distance weighting does not fade with distance).
FAR_FUSED = (
    "with interp_skip, predictions there are the inverse distance weighted average of the "
    "observed sites (nearly their plain average that far out) plus the fusion's residual, "
    "and their intervals are as wide as inside the training area: they do not widen with "
    "distance, so they do not measure the uncertainty of extrapolating that far"
)

#: The same without ``interp_skip``: kriging in latent space.
FAR_LATENT = (
    "the latent GP there is informed by the observed sites only as far as its learned "
    "spatial lengthscale reaches, so predictions tend to the model's prior (its mean and "
    "intervals without the neighbours' values) as the distance grows"
)

#: For observed sites (the neighbours) far outside the training area.
FAR_NEIGHBOURS = (
    "the model was not trained there: its spatial correlations are extrapolated to them"
)


def _long_frame(
    field_: Field, spec: SpatialSpec, values: np.ndarray, ids: Sequence[Hashable], id_dtype: Any
) -> pd.DataFrame:
    """(T, S', D) values -> a long frame (id, time, features), site-major rows; the ids in
    ``id_dtype`` (that of the sites' id column)."""
    T, S = values.shape[:2]
    site_ids = pd.Series(list(ids), dtype=id_dtype)
    data = {
        spec.id: site_ids.iloc[np.repeat(np.arange(S), T)].reset_index(drop=True),
        spec.time: np.tile(field_.raw_times, S),
    }
    flat = values.transpose(1, 0, 2).reshape(S * T, -1)
    for j, name in enumerate(spec.features):
        data[name] = flat[:, j]
    return pd.DataFrame(data)


def _interval(
    mean: np.ndarray, lo: np.ndarray, hi: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    return mean - scale * (mean - lo), mean + scale * (hi - mean)


def _observed_field(frame: Any, spec: SpatialSpec) -> Field:
    """The field of the observed sites in ``frame``, read with the fitted columns,
    projection and time axis."""
    field_, _, _ = field_from_frame(
        frame,
        spec.id,
        spec.time,
        list(spec.projection.columns),
        list(spec.features),
        spec.projection,
        spec.time_axis,
        min_sites=1,
    )
    return field_


def _check_new_sites(
    new_ids: Sequence[Hashable], new_xy: np.ndarray, field_: Field, id_col: Hashable
) -> None:
    """Raise naming ``sites`` for a new site that has an observed site's id or lies on an
    observed site (its values are that site's: :meth:`gpvae.GPVAE.impute` fills them)."""
    observed = set(field_.site_ids)
    reused = [k for k in new_ids if k in observed]
    if reused:
        raise ValidationError(
            f"sites: expected new site ids, found {reused[:3]!r} in column {id_col!r}, which "
            "X observes (impute fills the gaps of observed sites)"
        )
    dist = np.sqrt(((new_xy[:, None, :] - field_.xy[None, :, :]) ** 2).sum(-1))  # (P, S)
    new_i, old_i = np.nonzero(dist < 1e-6)  # within a millimetre
    if len(new_i):
        raise ValidationError(
            f"sites: new site {new_ids[new_i[0]]!r} lies on observed site "
            f"{field_.site_ids[old_i[0]]!r} (the same coordinates): its values are that "
            "site's; impute fills its gaps"
        )


def _warn_far_times(field_: Field, scaler: Scaler, spec: SpatialSpec, stacklevel: int) -> None:
    """:meth:`~gpvae.data.scaler.Scaler.warn_far_times` for the sites of ``field_`` (each a
    series of the times at which it has a value, named by its id), in the time steps of the
    training data from its first time, as the fit kept the training range (models saved
    before it was kept never warn). ``stacklevel`` as in ``warnings.warn`` from the caller
    of this function."""
    seen = ~np.isnan(field_.values).all(axis=2)  # (T, S)
    picks = [np.flatnonzero(seen[:, s]) for s in range(field_.num_sites)]
    times = tuple(field_.times[k] for k in picks)
    layout = Layout(
        kind="dataframe_long",
        dtype=np.dtype(np.float64),
        order=tuple(np.arange(len(k)) for k in picks),
        feature_labels=tuple(spec.features),
        id_col=spec.id,
        time_col=spec.time,
        series_ids=tuple(field_.site_ids),
    )
    sites = SeriesSet(
        tuple(field_.values[k, s] for s, k in enumerate(picks)), times, spec.features, layout
    )
    name = f"X[{spec.time!r}] (in time steps of the training data from its first time)"
    scaler.warn_far_times(sites, name=name, stacklevel=stacklevel + 1)


def _warn_unobserved(field_: Field, window: int, spec: SpatialSpec) -> None:
    """Warn about the features the observed sites never observe in X, and about the time
    windows in which no site observes anything: predictions there have no neighbour's value
    to condition on (the latent GP's prior, or the decoder's output without a fusion's
    interpolation)."""
    seen = ~np.isnan(field_.values)  # (T, S, D)
    never = [spec.features[j] for j in np.flatnonzero(~seen.any(axis=(0, 1)))]
    if never:
        warnings.warn(
            f"X: the observed sites have no value of features {never!r}: predictions of them "
            f"at the new sites are not informed by any neighbour (they come from the model's "
            f"prior, through the other features at most)",
            UserWarning,
            stacklevel=4,
        )
    T = len(field_.times)
    blind = [a for a in range(0, T, window) if not seen[a : a + window].any()]
    if blind:
        first = field_.raw_times[blind[0]]
        warnings.warn(
            f"X: {len(blind)} of {-(-T // window)} windows of {window} steps have no observed "
            f"value at any site (the first from {first!r} in column {spec.time!r}): "
            f"predictions there come from the model's prior alone, not from neighbours",
            UserWarning,
            stacklevel=4,
        )


def predict_sites(
    model: GPVAEModel,
    scaler: Scaler,
    spec: SpatialSpec,
    interval_scale: np.ndarray,
    frame: pd.DataFrame,
    sites: pd.DataFrame,
    num_samples: int,
    quantiles: Sequence[float],
    seed: int,
    batch_size: int,
) -> SpatialResult:
    """Every feature at new sites, for every time of ``frame`` (the observed sites)."""
    cols = list(spec.projection.columns)
    field_ = _observed_field(frame, spec)
    new_ids, new_coords = site_table(sites, spec.id, cols, min_sites=1)
    new_xy = spec.projection.to_km(new_coords)
    _check_new_sites(new_ids, new_xy, field_, spec.id)
    fused = isinstance(model.interp_fusion, FieldFusion)
    # 4: the caller of GPVAE.predict_sites (3 pointed into spatial_methods.py)
    warn_far_sites(field_.xy, spec.train_xy, field_.site_ids, cols, FAR_NEIGHBOURS, 4)
    far_note = FAR_FUSED if fused else FAR_LATENT
    warn_far_sites(new_xy, spec.train_xy, new_ids, cols, far_note, 4)
    _warn_far_times(field_, scaler, spec, 3)
    values = _standardise(field_.values, scaler)
    T, W, P = len(field_.times), spec.window, len(new_ids)
    starts = list(range(0, T, W))
    _warn_unobserved(field_, W, spec)
    gen = torch.Generator().manual_seed(seed)
    means, los, his = (np.zeros((T, P, len(spec.features))) for _ in range(3))
    model.eval()
    for i in range(0, len(starts), batch_size):
        chunk = starts[i : i + batch_size]
        batch = field_batch(values, field_.xy, field_.times, chunk, W)
        x_new = torch.zeros(len(chunk), W * P, 3)
        for b, a in enumerate(chunk):
            stop = min(a + W, T)
            tt = torch.as_tensor(field_.times[a:stop] - field_.times[a], dtype=torch.float32)
            pts = torch.cat(
                [
                    torch.as_tensor(new_xy, dtype=torch.float32)[None].expand(stop - a, P, 2),
                    tt[:, None, None].expand(stop - a, P, 1),
                ],
                -1,
            ).reshape(-1, 3)
            x_new[b, : len(pts)] = pts
            x_new[b, len(pts) :] = pts[-1]
        with torch.no_grad():
            q = model.encode(batch)
            z = q.gp.sample_at(x_new, num_samples, gen)  # type: ignore[attr-defined]
            # with interp_skip: fused with the observed sites' values at the same times
            params = model.decode_at(z, batch, x_new)
            draws = model.likelihood.sample(params, gen)  # (S, B, W P, D)
            mean = model.likelihood.mean(params).mean(0)
            lo, hi = sorted_quantiles(draws, quantiles, "predictive")
        for b, a in enumerate(chunk):
            n = min(a + W, T) - a
            for arr, src in ((means, mean), (los, lo), (his, hi)):
                arr[a : a + n] = src[b].reshape(W, P, -1)[:n].cpu().numpy()
    lo_s, hi_s = _interval(means, los, his, interval_scale)
    out = [scaler.mean_ + v * scaler.std_ for v in (means, lo_s, hi_s)]  # type: ignore[operator]
    id_dtype = sites[spec.id].dtype
    return SpatialResult(*(_long_frame(field_, spec, v, new_ids, id_dtype) for v in out))


def impute_field(
    model: GPVAEModel,
    scaler: Scaler,
    spec: SpatialSpec,
    interval_scale: np.ndarray,
    frame: pd.DataFrame,
    num_samples: int,
    quantiles: Sequence[float],
    seed: int,
    batch_size: int,
    return_samples: bool = False,
) -> ImputationResult:
    """Fill the missing entries of the observed sites (neighbours included in every
    conditioning); observed values come back unchanged, bit for bit as read, in ``mean``,
    ``lower``, ``upper`` and every sample.

    Returns:
        :class:`~gpvae.estimator.results.ImputationResult` in the form of a DataFrame input:
        ``mean``, ``lower`` and ``upper`` are copies of ``frame`` (its rows, order, index,
        columns and id dtype) with the feature columns filled (the interval's bounds there);
        ``observed`` the same copy with bool feature columns; ``samples`` (S, R, D) draws of
        y for the R rows of ``frame`` when ``return_samples`` (the draws about the mean
        scaled by ``interval_scale``, as the interval's half-widths are); ``to_frame()`` the
        mean frame with ``<feature>_lower`` / ``<feature>_upper`` columns after the input's.
        A (site, time) without a row stays without one.

    Warns (``UserWarning`` naming the coordinate columns) about sites of ``frame`` far
    outside the training area, as :func:`predict_sites` does about its observed sites: the
    gaps there are filled with spatial correlations extrapolated beyond the training sites;
    and (naming the time column) about sites whose times look like a unit or origin mistake
    (:meth:`~gpvae.data.scaler.Scaler.warn_far_times`), as predict_sites does too.
    """
    field_ = _observed_field(frame, spec)
    cols = list(spec.projection.columns)
    # 5: the caller of GPVAE.impute (through _impute_spatial)
    warn_far_sites(field_.xy, spec.train_xy, field_.site_ids, cols, FAR_NEIGHBOURS, 5)
    _warn_far_times(field_, scaler, spec, 4)
    values = _standardise(field_.values, scaler)
    T, S, D = values.shape
    W = spec.window
    if return_samples:  # before any work: (S, R, D) float64 draws and their (S, T, S', D) field
        check_memory(
            "num_samples, return_samples",
            8.0 * num_samples * (len(frame) + T * S) * D,
            f"{num_samples} draws of {len(frame)} rows and {D} features",
        )
    starts = list(range(0, T, W))
    gen = torch.Generator().manual_seed(seed)
    means, los, his = (np.zeros((T, S, D)) for _ in range(3))
    ys = np.zeros((num_samples, T, S, D)) if return_samples else None
    model.eval()
    for i in range(0, len(starts), batch_size):
        chunk = starts[i : i + batch_size]
        batch = field_batch(values, field_.xy, field_.times, chunk, W)
        with torch.no_grad():
            mean, draws = predict_hidden(model, batch, num_samples, gen)
            lo, hi = sorted_quantiles(draws, quantiles, "predictive")
        for b, a in enumerate(chunk):
            n = min(a + W, T) - a
            for arr, src in ((means, mean), (los, lo), (his, hi)):
                arr[a : a + n] = src[b].reshape(W, S, D)[:n].cpu().numpy()
            if ys is not None:
                ys[:, a : a + n] = draws[:, b].reshape(-1, W, S, D)[:, :n].double().cpu().numpy()
    lo_s, hi_s = _interval(means, los, his, interval_scale)
    observed = ~np.isnan(field_.values)
    # each row of the frame -> its (time, site) of the field, in the frame's order
    t_raw, _ = TimeAxis.raw(frame[spec.time], spec.time)
    rows_t = np.searchsorted(np.unique(t_raw), t_raw)
    rows_s = pd.factorize(frame[spec.id], sort=False)[0]
    features = list(spec.features)
    out = []
    for v in (means, lo_s, hi_s):
        back = scaler.mean_ + v * scaler.std_  # type: ignore[operator]
        filled = frame.copy()
        filled[features] = np.where(observed, field_.values, back)[rows_t, rows_s]
        out.append(filled)
    seen = frame.copy()
    seen[features] = observed[rows_t, rows_s]
    samples = None
    if ys is not None:
        spread = ys - means  # about the mean, scaled as the interval's half-widths are
        ys = scaler.mean_ + (means + interval_scale * spread) * scaler.std_  # type: ignore[operator]
        samples = np.where(observed, field_.values, ys)[:, rows_t, rows_s]  # (S, R, D)
    ends = {
        f"{name}_{end}": part[name].to_numpy()
        for end, part in (("lower", out[1]), ("upper", out[2]))
        for name in features
    }
    whole = pd.concat([out[0], pd.DataFrame(ends, index=out[0].index)], axis=1)
    return ImputationResult(
        mean=out[0],
        lower=out[1],
        upper=out[2],
        samples=samples,
        observed=seen,
        quantiles=(float(quantiles[0]), float(quantiles[1])),
        frame=whole,
    )
