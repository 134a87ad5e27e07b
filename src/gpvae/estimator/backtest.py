"""Rolling-origin backtests of a configuration, and the forecast scores they report.

The last ``num_origins`` origins of every series are ``T - H - k * step`` (k = 0, 1, ...).
A copy of the estimator with the same configuration is fitted on the data before the
earliest origin (``refit="once"``, so no origin's future was seen in training), or afresh on
the data before each origin (``refit="each"``); at every origin it forecasts the next H
steps from the whole history before it.

Scores, per feature and per step ahead, averaged over origins (and series):

- MAE, and MASE: the MAE divided by the in-sample MAE of the seasonal naive forecast
  ``y[t - m]`` on the history before the earliest origin (``season`` m; 1 gives the naive
  forecast), as in the M4 competition;
- CRPS, approximated by twice the mean pinball loss over the quantiles 0.1, ..., 0.9 of the
  draws, and scaled like MASE (a scaled quantile loss);
- coverage of the central 90% interval (its ends the 0.05 and 0.95 quantiles of the draws).
"""

from __future__ import annotations

import contextlib
import copy
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from types import FrameType
from typing import Any, Protocol

import numpy as np

from gpvae.arguments import check_name, int_arg, member_draws_arg
from gpvae.data import SeriesSet, to_series_set
from gpvae.errors import ValidationError
from gpvae.estimator.forecasting import check_forecasting_posterior
from gpvae.estimator.results import times_out
from gpvae.kernels import kernel_from_spec


class Estimator(Protocol):
    """What a backtest needs of an estimator (:class:`gpvae.GPVAE`): its configuration, a
    fit and forecasts with samples (a protocol, so this module does not import the class)."""

    history_: list[dict[str, float]]

    def get_config(self) -> dict[str, Any]: ...

    def fit(self, X: Any, times: Any = None) -> Any: ...

    @property
    def forecast(self) -> Any: ...  # (X, future_times=..., num_samples=..., ...) -> result


__all__ = [
    "QUANTILES",
    "BacktestResult",
    "backtest",
    "best_epoch",
    "forecast_scores",
    "pinball",
    "seasonal_naive_scale",
]

#: Quantile levels of the CRPS approximation (and of the fan charts).
QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@contextlib.contextmanager
def shown_warnings(caller: dict[str, Any]) -> Iterator[list[warnings.WarningMessage]]:
    """Collect, instead of showing them, the warnings that the filters let through inside
    the block, to be said again (once each) at the user's line.

    ``warnings.catch_warnings`` would reset every module's once-per-location registry on
    entry and exit, so under the default filters the same warning was shown again at every
    call (every forecast of an ensemble, every backtest). This leaves the filters and the
    other modules' registries alone: only the registry of ``caller`` (the ``globals()`` of
    the gpvae module whose lines call inside the block, where the warnings of those calls
    are attributed) is emptied first, so that they reach the user's line, whose registry
    then shows each once, as it would a direct call's. A warning the filters ignore is not
    collected, and one they turn into an error raises.
    """
    caller.get("__warningregistry__", {}).clear()
    caught: list[warnings.WarningMessage] = []
    show = warnings.showwarning

    def keep(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        caught.append(warnings.WarningMessage(message, category, filename, lineno, file, line))

    warnings.showwarning = keep
    try:
        yield caught
    finally:
        warnings.showwarning = show


def _nanmean(values: np.ndarray, axis: Any) -> np.ndarray:
    """``np.nanmean`` (the same sums and counts) without its warning for an all-NaN slice,
    which is NaN here, and without ``catch_warnings`` (see :func:`shown_warnings`)."""
    count = np.sum(~np.isnan(values), axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.nansum(values, axis=axis) / count)


def seasonal_naive_scale(history: np.ndarray, season: int) -> np.ndarray:
    """In-sample MAE (D,) of the seasonal naive forecast ``y[t - season]`` on (T, D) values
    with NaN (pairs with a missing value left out). NaN for a feature without any pair or
    whose seasonal naive forecast is exact (a constant feature: 0 would make every scaled
    score of the feature infinite, and the means over features with it)."""
    h = np.asarray(history, dtype=np.float64)
    diff = np.abs(h[season:] - h[:-season])  # (T - m, D)
    with np.errstate(invalid="ignore"):
        mae = _nanmean(np.where(np.isfinite(diff), diff, np.nan), axis=0)  # NaN: no pair
    return np.where(mae > 0, mae, np.nan)


def pinball(y: np.ndarray, q_pred: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Pinball losses (K, ...) of quantile forecasts ``q_pred`` (K, ...) for truth ``y`` (...)."""
    lv = np.asarray(levels, dtype=np.float64).reshape(-1, *([1] * np.ndim(y)))
    diff = y[None] - q_pred
    return np.maximum(lv * diff, (lv - 1.0) * diff)


def forecast_scores(
    truth: np.ndarray,
    mean: np.ndarray,
    q_pred: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    scale: np.ndarray,
) -> dict[str, np.ndarray]:
    """Per-entry scores of forecasts (NaN where the truth is missing).

    Args:
        truth, mean, lower, upper: (..., H, D) values, forecast means and 90% interval ends.
        q_pred: (K, ..., H, D) forecasts at :data:`QUANTILES`.
        scale: (..., 1, D) or (D,) MASE scales (seasonal naive in-sample MAE).

    Returns:
        ``abs_error``, ``scaled_error`` (MASE terms), ``crps`` (scaled, 2 x mean pinball) and
        ``covered`` (1.0 or 0.0), each (..., H, D).
    """
    missing = np.isnan(truth)
    err = np.abs(truth - mean)
    crps = 2.0 * pinball(truth, q_pred, QUANTILES).mean(axis=0)
    covered = ((truth >= lower) & (truth <= upper)).astype(np.float64)
    out = {
        "abs_error": err,
        "scaled_error": err / scale,
        "crps": crps / scale,
        "covered": covered,
    }
    return {k: np.where(missing, np.nan, v) for k, v in out.items()}


@dataclass
class BacktestResult:
    """Rolling-origin forecasts and their scores.

    Attributes:
        origins: (n, n_origins) positions of the origins (the first future step) in each
            series.
        times: (n, n_origins, H) future times (the input's time type).
        truth, mean, lower, upper: (n, n_origins, H, D) in the data's units.
        quantiles: (K, n, n_origins, H, D) forecasts at :data:`QUANTILES`.
        history: per series, the (T_i, D) values (for plots).
        history_times: per series, the (T_i,) times.
        scale: (n, D) MASE scales.
        scores: per-entry scores (see :func:`forecast_scores`), (n, n_origins, H, D) each.
        feature_names: the D names.
        epochs: training epochs run, per fit.
        best_epochs: per fit, the epoch with the best validation score (the weights kept;
            equal to ``epochs`` when the epoch cap, not patience, ended the fit).
    """

    origins: np.ndarray
    times: np.ndarray
    truth: np.ndarray
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    quantiles: np.ndarray
    history: list[np.ndarray]
    history_times: list[np.ndarray]
    scale: np.ndarray
    scores: dict[str, np.ndarray]
    feature_names: list[str]
    epochs: list[int] = field(default_factory=list)
    best_epochs: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """MAE (original units, averaged over features), MASE, scaled CRPS and 90% coverage."""
        s = self.scores
        return {
            "mae": float(np.nanmean(s["abs_error"])),
            "mase": float(np.nanmean(s["scaled_error"])),
            "crps": float(np.nanmean(s["crps"])),
            "coverage90": float(np.nanmean(s["covered"])),
        }

    def by_horizon(self) -> dict[str, list[float]]:
        """The scores of :meth:`summary` per step ahead (H values each)."""
        axes = (0, 1, 3)
        return {
            "mae": np.nanmean(self.scores["abs_error"], axis=axes).tolist(),
            "mase": np.nanmean(self.scores["scaled_error"], axis=axes).tolist(),
            "crps": np.nanmean(self.scores["crps"], axis=axes).tolist(),
            "coverage90": np.nanmean(self.scores["covered"], axis=axes).tolist(),
        }

    def by_feature(self) -> dict[str, dict[str, float]]:
        """MASE, CRPS and coverage per feature (NaN for a feature without a MASE scale)."""
        axes = (0, 1, 2)
        s = self.scores
        mase = _nanmean(s["scaled_error"], axis=axes)  # NaN: a feature without a scale
        crps = _nanmean(s["crps"], axis=axes)
        cover = np.nanmean(s["covered"], axis=axes)
        return {
            name: {
                "mase": float(mase[j]),
                "crps": float(crps[j]),
                "coverage90": float(cover[j]),
            }
            for j, name in enumerate(self.feature_names)
        }


def backtest(
    estimator: Estimator,
    X: Any,
    times: Any = None,
    *,
    horizon: int,
    num_origins: int = 5,
    step: int | None = None,
    season: int = 1,
    refit: str = "once",
    num_samples: int = 100,
) -> BacktestResult:
    """Rolling-origin backtest of ``estimator``'s configuration (see the module docstring).

    Args:
        estimator: a GPVAE; only its configuration is used (it is not changed).
        X, times: the series, in any form :meth:`GPVAE.fit` takes.
        horizon: H, steps ahead.
        num_origins: origins per series.
        step: steps between consecutive origins (None: ``horizon``).
        season: m of the MASE scale's seasonal naive forecast (1: naive).
        refit: ``"once"`` (fit before the earliest origin) or ``"each"`` origin.
        num_samples: draws per forecast.

    Returns:
        :class:`BacktestResult`.

    Raises:
        ValidationError: naming ``horizon``/``num_origins`` (and ``season`` when it is the
            cause) when a series is too short for the origins (each needs at least 2
            horizons, and ``season`` + 2 steps, of history before the earliest), naming
            ``num_samples`` for fewer than 2 draws (2 per member of an ensemble); all before
            any fit.
    """
    H = int_arg("horizon", horizon)
    n_org = int_arg("num_origins", num_origins)
    step = H if step is None else int_arg("step", step)
    m = int_arg("season", season)
    refit = check_name("refit", refit, ("once", "each"))
    _check_forecasts(estimator, num_samples)  # before any fit
    ss = to_series_set(X, times)
    first = [len(t) - H - (n_org - 1) * step for t in ss.times]
    if min(first) < max(2 * H, m + 2):
        short = int(np.argmin(first))  # the shortest series
        names, why = "horizon, num_origins", "2 horizons"
        if m + 2 > 2 * H:  # the season's naive forecast needs more history than 2 horizons
            names += ", season"
            why += f", and season + 2 for the MASE scale of the season-{m} naive forecast"
        raise ValidationError(
            f"{names}: expected series long enough for {n_org} origins {step} steps apart "
            f"with a horizon of {H} and at least {max(2 * H, m + 2)} steps of history before "
            f"the earliest ({why}), found {ss.series_label(short)} of {len(ss.times[short])} "
            "steps"
        )
    up = _api_frames()  # GPVAE.backtest or GPVAEEnsemble.backtest between it and the user
    config = estimator.get_config() if _json_able(estimator) else None
    fitted: Estimator | None = None
    epochs: list[int] = []
    best: list[int] = []
    n, D = ss.num_series, ss.num_features
    shape = (n, n_org, H, D)
    truth, mean, lower, upper = (np.full(shape, np.nan) for _ in range(4))
    quant = np.full((len(QUANTILES), *shape), np.nan)
    t_out: list[list[np.ndarray]] = [[] for _ in range(n)]
    said: list[tuple[type[Warning], str]] = []
    scale = np.stack([seasonal_naive_scale(v[:f], m) for v, f in zip(ss.values, first)])
    _warn_unscaled(scale, ss, m, stacklevel=3 + up)
    for k in range(n_org):
        cuts = [f + k * step for f in first]
        hist, future = _cut(ss, cuts, H)
        if fitted is None or refit == "each":
            fitted = _fresh(estimator, config)
            with shown_warnings(globals()) as caught:  # every refit's, said once below
                fitted.fit(hist)
            said.extend((w.category, str(w.message)) for w in caught)
            epochs.append(len(fitted.history_))
            best.append(best_epoch(fitted.history_))
        with shown_warnings(globals()) as caught:
            fc = fitted.forecast(
                hist,
                future_times=future,
                num_samples=num_samples,
                quantiles=(0.05, 0.95),
                return_samples=True,
            )
        said.extend((w.category, str(w.message)) for w in caught)
        draws = np.asarray(fc.samples, dtype=np.float64)  # (S, n, H, D)
        quant[:, :, k] = np.quantile(draws, QUANTILES, axis=0)
        mean[:, k], lower[:, k], upper[:, k] = fc.mean, fc.lower, fc.upper
        for i in range(n):
            truth[i, k] = ss.values[i][cuts[i] : cuts[i] + H]
            t_out[i].append(np.asarray(fc.times[i]))
    for category, text in dict.fromkeys(said):  # the fits' and forecasts' warnings once each
        warnings.warn(text, category, stacklevel=2 + up)  # the user's line
    scores = forecast_scores(truth, mean, quant, lower, upper, scale[:, None, None, :])
    return BacktestResult(
        origins=np.asarray([[f + k * step for k in range(n_org)] for f in first]),
        times=np.asarray(t_out),
        truth=truth,
        mean=mean,
        lower=lower,
        upper=upper,
        quantiles=quant,
        history=[np.asarray(v) for v in ss.values],
        history_times=_input_times(ss),
        scale=scale,
        scores=scores,
        feature_names=list(ss.feature_names),
        epochs=epochs,
        best_epochs=best,
    )


def _api_frames() -> int:
    """How many frames of the estimator layer stand between :func:`backtest` (the caller of
    this function) and the user's line: 0 when the user calls :func:`backtest`, 1 through
    :meth:`gpvae.GPVAE.backtest` or :meth:`gpvae.GPVAEEnsemble.backtest`, so that the
    warnings it says point at the user's line either way."""
    frame: FrameType | None = sys._getframe(2)  # the caller of backtest
    count = 0
    while frame is not None and frame.f_globals.get("__name__", "").startswith("gpvae.estimator."):
        count += 1
        frame = frame.f_back
    return count


def _check_forecasts(estimator: Estimator, num_samples: int) -> None:
    """Raise at once, before any fit, for what the forecasts at the origins would refuse:
    ``num_samples`` below 2 (two per member of an ensemble), a posterior that cannot
    forecast."""
    members = getattr(estimator, "members", 1)
    member_draws_arg(num_samples, (0.05, 0.95), members if isinstance(members, int) else 1)
    check_forecasting_posterior(getattr(estimator, "posterior", "structured"))


def best_epoch(history: Sequence[dict[str, float]]) -> int:
    """The 1-based epoch of the lowest finite validation score in a fit's history (0 when
    there is none)."""
    scores = np.asarray([h.get("val_score", np.nan) for h in history], dtype=float)
    ok = np.isfinite(scores)
    return int(np.argmin(np.where(ok, scores, np.inf))) + 1 if ok.any() else 0


def _warn_unscaled(scale: np.ndarray, ss: SeriesSet, season: int, stacklevel: int) -> None:
    """Warn naming the features of series without a MASE scale (left out of the means of
    the scaled scores); ``stacklevel`` points at the user's line."""
    bad = np.argwhere(np.isnan(scale))
    if not len(bad):
        return
    names = ss.feature_names
    first = ", ".join(f"{names[j]!r} in {ss.series_label(i)}" for i, j in bad[:3])
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    warnings.warn(
        f"season: no MASE scale for {first}{more} (the season-{season} naive forecast has no "
        "error there before the earliest origin: the feature is constant or unobserved); "
        "their MASE and CRPS are left out of the means",
        UserWarning,
        stacklevel=stacklevel,
    )


def _cut(ss: SeriesSet, cuts: list[int], H: int) -> tuple[SeriesSet, Any]:
    """The series before ``cuts`` (same units, calendar and feature names), and the H future
    times after each cut in the input's time type (dates stay dates)."""
    lay = ss.layout
    head = replace(
        ss,
        values=tuple(v[:c] for v, c in zip(ss.values, cuts)),
        times=tuple(t[:c] for t, c in zip(ss.times, cuts)),
        layout=replace(
            lay,
            kind="ragged" if lay.output_kind != "array" else "array",
            inner_kind=None,
            order=tuple(np.arange(c) for c in cuts),
            frame=None,
            rows=None,
            time_col=None,
            id_col=None,
            series_ids=None,
        ),
    )
    future = np.stack([t[c : c + H] for t, c in zip(ss.times, cuts)])  # (n, H) float
    return head, list(times_out(ss, future))


def _input_times(ss: SeriesSet) -> list[np.ndarray]:
    """Per series, the sorted times in the input's time type (dates for dated inputs)."""
    return [np.asarray(times_out(ss, np.asarray(t)[None])[0]) for t in ss.times]


def _json_able(estimator: Estimator) -> bool:
    try:
        estimator.get_config()
    except ValidationError:
        return False
    return True


def _fresh(estimator: Estimator, config: dict[str, Any] | None) -> Estimator:
    """An estimator of the same configuration for a new fit (a shallow copy when the
    configuration has modules JSON cannot describe: fit replaces everything it learns, and
    deep-copies the modules it trains)."""
    # the backtest's fits checkpoint nowhere: the user's own fit's checkpoints stay theirs
    if config is None:
        fresh = copy.copy(estimator)
        if getattr(fresh, "checkpoint_dir", None) is not None:
            fresh.checkpoint_dir = None  # type: ignore[attr-defined]
        return fresh
    args = {**config, "kernel": kernel_from_spec(config["kernel"]), "checkpoint_dir": None}
    args["hidden"] = tuple(args["hidden"])
    return type(estimator)(**args)
