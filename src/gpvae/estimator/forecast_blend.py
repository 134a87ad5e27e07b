"""Forecasts anchored on simple ones: the model's mean blended with a simple base forecast.

A GP-VAE decodes standardised values, so a series that leaves its training range (a
recovery to new highs) or a model that has not learned the season yet forecasts worse than
the last value or the value one season before. After fit, the rolling origins of
:mod:`gpvae.estimator.forecast_calibration` (inside the training period; never the data a
backtest scores) also give the simple forecasts from the same histories, and for every
feature and horizon band the estimator picks a base and a weight ``w`` that make

    mean = w * model mean + (1 - w) * base

closest to the truth there (mean absolute error; ``w`` from
:data:`gpvae.settings.FORECAST_BLEND_WEIGHTS`, with 0 and 1). A blend replaces the model's
mean only where it beats it by more than :data:`gpvae.settings.FORECAST_BLEND_SE` standard
errors of the per-origin differences in error (the origins are few, and the model has seen
their futures in training: a plain minimum followed the noise of a few origins and made
Seattle weather and the demo worse). ``w = 0`` with each base is a candidate. The draws
keep their spread and move with the mean (the spread factors are then fitted around the
blended mean).

Bases (:func:`base_names`), from each series' history in steps after its last time:

- ``"last"``: the last observed value of each feature (persistence);
- ``"season:m"``: the value ``m`` steps before each future step (seasonal naive; ``m`` the
  period of each periodic kernel, in steps, rounded);
- ``"drift"``: the last value plus the mean step of the last ``H`` steps (a random walk
  with drift, H the calibration horizon);
- ``"anchored"``: the last value plus the model's forecast change from the first future
  step (``last + m_h - m_1``): the model's shape of the future at the series' own level, for
  a series whose level leaves the range the decoder was trained on.

A base the history cannot give (a feature never observed, a history shorter than the
season) is replaced by the model's mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from gpvae import settings
from gpvae.errors import ModelFileError

__all__ = ["ForecastBlend", "base_names", "blend_mean", "fit_blend", "simple_forecasts"]


def base_names(model: nn.Module) -> tuple[str, ...]:
    """The base forecasts for a model: the seasonal ones of its periodic kernels' periods
    (in steps, the index's units; any module with a ``raw_period`` parameter)."""
    periods = [
        float(torch.as_tensor(m.period).detach())
        for m in model.modules()
        if hasattr(m, "raw_period")
    ]
    lags = sorted({round(p) for p in periods if round(p) >= 2})
    return ("last", *(f"season:{m}" for m in lags), "drift", "anchored")


def _ffill(v: np.ndarray) -> np.ndarray:
    """(T, D) values with each gap filled by the last observed value (NaN before any)."""
    T = len(v)
    idx = np.where(~np.isnan(v), np.arange(T)[:, None], 0)
    np.maximum.accumulate(idx, axis=0, out=idx)
    out = v[idx, np.arange(v.shape[1])]
    seen = np.maximum.accumulate(~np.isnan(v), axis=0)
    return np.where(seen, out, np.nan)


def simple_forecasts(
    history: np.ndarray,
    steps: int,
    names: Sequence[str],
    horizon: int,
    model_mean: np.ndarray | None = None,
    ahead: np.ndarray | None = None,
    anchor: np.ndarray | None = None,
) -> np.ndarray:
    """(K, steps, D) base forecasts (NaN where the history cannot give one) from a (T, D)
    history, for the future steps 1..``steps`` after its end, or for the ``steps`` future
    times ``ahead`` (steps,) steps after it (ints >= 1: 2, 4, 6 for every second step).
    ``"anchored"`` needs the model's forecast mean (steps, D) at those times and its mean
    (D,) one step ahead, ``anchor`` (by default the mean's row one step ahead; NaN without
    either)."""
    T, D = history.shape
    out = np.full((len(names), steps, D), np.nan)
    if T == 0:
        return out
    filled = _ffill(history)
    last = filled[-1]
    h = np.arange(steps) if ahead is None else np.asarray(ahead, dtype=np.int64) - 1
    if anchor is None and model_mean is not None:
        first = np.flatnonzero(h == 0)
        anchor = model_mean[first[0]] if len(first) else None
    for k, name in enumerate(names):
        if name == "last":
            out[k] = last
        elif name == "anchored":
            if model_mean is not None and anchor is not None:
                out[k] = last + model_mean - anchor
        elif name == "drift":
            back = min(horizon, T - 1)
            if back >= 1:
                slope = (last - filled[-1 - back]) / back
                out[k] = last + (h[:, None] + 1) * slope
        elif name.startswith("season:"):
            m = int(name.split(":")[1])
            if m <= T:
                out[k] = filled[T - m + (h % m)]
        else:
            raise ValueError(f"names: unknown base forecast {name!r}")
    return out


@dataclass(frozen=True)
class ForecastBlend:
    """The chosen base and the model's weight per horizon band and feature.

    Attributes:
        names: the base forecasts (:func:`base_names`).
        base: (bands, D) index into ``names``.
        weight: (bands, D) the model's weight in [0, 1] (1: the model's mean alone).
        horizon: the horizon the bands split (a drift's window).
    """

    names: tuple[str, ...]
    base: np.ndarray
    weight: np.ndarray
    horizon: int

    def to_json(self) -> dict[str, object]:
        return {
            "names": list(self.names),
            "base": self.base.astype(int).tolist(),
            "weight": self.weight.astype(float).tolist(),
            "horizon": int(self.horizon),
        }

    @classmethod
    def from_json(cls, value: object, D: int) -> ForecastBlend:
        """Read :meth:`to_json`'s dict for D features (raises ModelFileError)."""
        error = ModelFileError(
            f"config.json: expected forecast_blend to hold names, base and weight rows "
            f"of {D} features and a horizon, found {value!r}"
        )
        if not isinstance(value, dict):
            raise error
        try:
            names = tuple(str(n) for n in value["names"])
            base = np.asarray(value["base"], dtype=np.int64)
            weight = np.asarray(value["weight"], dtype=np.float64)
            horizon = int(value["horizon"])
            simple_forecasts(np.zeros((1, 1)), 1, names, 1)  # known names
        except (KeyError, TypeError, ValueError):
            raise error from None
        ok = base.ndim == 2 and base.shape[1] == D and base.shape[0] >= 1
        ok = ok and weight.shape == base.shape and horizon >= 1
        ok = ok and bool(((base >= 0) & (base < len(names))).all())
        ok = ok and bool(((weight >= 0) & (weight <= 1)).all())
        if not ok:  # an explicit check, not assert: python -O must not skip it
            raise error
        return cls(names, base, weight, horizon)


def fit_blend(
    model_mean: np.ndarray,
    bases: np.ndarray,
    truth: np.ndarray,
    feature: np.ndarray,
    band: np.ndarray,
    origin: np.ndarray,
    num_features: int,
    num_bands: int,
    names: tuple[str, ...],
    horizon: int,
) -> ForecastBlend:
    """The base and weight per (band, feature) with the least mean absolute error, among the
    blends that beat the model's mean by more than :data:`gpvae.settings.FORECAST_BLEND_SE`
    standard errors of the per-origin differences (else the model's mean alone).

    Args:
        model_mean: (M,) the model's forecast mean of each entry.
        bases: (M, K) the base forecasts of each entry (NaN: none; the model's mean then).
        truth: (M,) what followed.
        feature, band: (M,) each entry's feature and horizon band.
        origin: (M,) each entry's forecast origin (any labels; the units of the errors).
        num_features, num_bands: D and the bands.
        names: the K bases' names.
        horizon: the calibration horizon.
    """
    weights = sorted(set(settings.FORECAST_BLEND_WEIGHTS) - {1.0} | {0.0})
    base_out = np.zeros((num_bands, num_features), dtype=np.int64)
    weight_out = np.ones((num_bands, num_features))
    ok = np.isfinite(model_mean) & np.isfinite(truth)
    filled = np.where(np.isnan(bases), model_mean[:, None], bases)
    for b in range(num_bands):
        for d in range(num_features):
            sel = ok & (band == b) & (feature == d)
            labels, unit = np.unique(origin[sel], return_inverse=True)
            n = len(labels)
            if n < 2:
                continue  # no spread of the differences to judge by
            count = np.bincount(unit, None, n)
            m, y, base = model_mean[sel], truth[sel], filled[sel]
            e_model = np.bincount(unit, np.abs(m - y), n) / count  # per origin
            best = e_model.mean()
            for k in range(base.shape[1]):
                for w in weights:
                    e = np.bincount(unit, np.abs(w * m + (1 - w) * base[:, k] - y), n) / count
                    diff = e_model - e  # > 0: the blend is better at that origin
                    margin = settings.FORECAST_BLEND_SE * diff.std(ddof=1) / np.sqrt(n)
                    if diff.mean() > margin and e.mean() < best - 1e-12:
                        best, base_out[b, d], weight_out[b, d] = e.mean(), k, w
    return ForecastBlend(names, base_out, weight_out, horizon)


def blend_mean(
    blend: ForecastBlend,
    mean: Tensor,
    histories: Sequence[np.ndarray],
    bands: np.ndarray,
    ahead: np.ndarray | None = None,
    anchor: np.ndarray | None = None,
) -> Tensor:
    """The blended mean (B, H, D) of the model's ``mean`` (B, H, D) for series with these
    (T_i, D) standardised ``histories``; ``bands`` (H,) or (B, H) the band of each future
    time, ``ahead`` (B, H) how many steps ahead it is (None: 1..H) and ``anchor`` (B, D) the
    model's mean one step ahead when ``mean`` has no time there (:func:`simple_forecasts`)."""
    H, D = mean.shape[1:]
    bands = np.broadcast_to(bands, (len(histories), H))
    m = mean.double().cpu().numpy()
    out = np.empty_like(m)
    cols = np.arange(D)[None, :]
    rows = np.arange(H)[:, None]
    for i, hist in enumerate(histories):
        base_idx = blend.base[bands[i]]  # (H, D)
        w = blend.weight[bands[i]]  # (H, D)
        k = None if ahead is None else ahead[i]
        a = None if anchor is None else anchor[i]
        cand = simple_forecasts(hist, H, blend.names, blend.horizon, m[i], k, a)  # (K, H, D)
        base = cand[base_idx, rows, cols]  # (H, D)
        base = np.where(np.isnan(base), m[i], base)
        out[i] = w * m[i] + (1 - w) * base
    return torch.as_tensor(out, dtype=mean.dtype, device=mean.device)
