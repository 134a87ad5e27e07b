"""``gpvae demo``, step by step: data, fit, imputation, forecast and anomaly scores, output
tables, plots, metrics and the printed report (:func:`run_demo` runs them in order)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gpvae.app.baselines import impute_locf
from gpvae.app.demo.data import (
    FEATURES,
    GAP_DAYS,
    NUM_GAPS,
    POINT_RATE,
    DemoData,
    from_model_units,
    load_weather,
    make_demo_data,
    to_model_units,
)
from gpvae.app.demo.model import (
    FULL,
    QUICK,
    DemoSettings,
    baseline_imputations,
    evaluate,
    fit_model,
    impute_history,
)

if TYPE_CHECKING:
    from gpvae.estimator import GPVAE

__all__ = [
    "Anomalies",
    "Forecast",
    "Imputation",
    "check_plotting",
    "demo_settings",
    "draw_plots",
    "forecast_and_score",
    "impute_and_score",
    "report",
    "run_demo",
    "score_anomalies",
    "write_tables",
]


@dataclass
class Imputation:
    """The imputed history and its scores.

    Attributes:
        mean, lower, upper: (T, D) imputation and 90% interval in original units.
        metrics: method -> MAE row (see :func:`evaluate`) on the hidden entries.
        coverage: share of the hidden entries inside the 90% interval ("all", "points",
            "gaps").
    """

    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    metrics: dict[str, dict[str, float]]
    coverage: dict[str, float]


@dataclass
class Forecast:
    """The forecast of the held-out days (H of them) and its scores.

    Attributes:
        mean, lower, upper: (H, D) forecast and 90% interval in original units.
        lower50, upper50: (H, D) the 50% interval.
        mae: MAE in standardised units of "gpvae", "persistence", "seasonal_naive" (the
            same days a year before) and "mean".
        coverage: share of the held-out entries inside the 90% interval.
    """

    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    lower50: np.ndarray
    upper50: np.ndarray
    mae: dict[str, float]
    coverage: float


@dataclass
class Anomalies:
    """Anomaly scores of the full record (T + H days).

    Attributes:
        step: (T + H,) score per day.
        entry: (T + H, D) score per entry.
        threshold: the 99% quantile of ``step``.
        flagged: (T + H,) bool, days above ``threshold``.
    """

    step: np.ndarray
    entry: np.ndarray
    threshold: float
    flagged: np.ndarray


def demo_settings(quick: bool = False, epochs: int | None = None) -> DemoSettings:
    """:data:`QUICK` or :data:`FULL`, with ``epochs`` in place of theirs when given."""
    settings = QUICK if quick else FULL
    return settings if epochs is None else replace(settings, epochs=epochs)


def impute_and_score(model: GPVAE, data: DemoData, num_samples: int) -> Imputation:
    """Impute the masked history; score it and the baselines on the hidden entries."""
    mean, lower, upper = impute_history(model, data, num_samples)  # (T, D) each
    metrics = evaluate(data, {"gpvae": mean, **baseline_imputations(data)}, data.hidden)
    truth = data.truth[: data.history.shape[0]]
    inside = (truth >= lower) & (truth <= upper)
    coverage = {
        "all": float(inside[data.hidden].mean()),
        "points": float(inside[data.points].mean()),
        "gaps": float(inside[data.gaps].mean()),
    }
    return Imputation(mean, lower, upper, metrics, coverage)


def forecast_and_score(model: GPVAE, data: DemoData, num_samples: int) -> Forecast:
    """Forecast the held-out days from the masked history; score it against persistence
    (the last observed value) and the mean of the history."""
    T = data.history.shape[0]
    future = np.arange(T, T + data.horizon, dtype=np.float64)[None]
    history = to_model_units(data.history)[None]
    days = data.days[None]
    fc90 = model.forecast(history, days, future_times=future, num_samples=num_samples)
    fc50 = model.forecast(
        history, days, future_times=future, num_samples=num_samples, quantiles=(0.25, 0.75)
    )
    mean, lower, upper = (from_model_units(a[0]) for a in (fc90.mean, fc90.lower, fc90.upper))
    lower50, upper50 = (from_model_units(a[0]) for a in (fc50.lower, fc50.upper))
    truth = data.truth[T:]
    scale = np.nanstd(data.history, axis=0)
    filled = impute_locf(data.history[None])[0]  # (T, D)
    last = filled[-1]
    season = filled[T - 365 + np.arange(data.horizon) % 365]  # the same days a year before
    clim = np.nanmean(data.history, axis=0)
    mae = {
        "gpvae": float((np.abs(mean - truth) / scale).mean()),
        "persistence": float((np.abs(last - truth) / scale).mean()),
        "seasonal_naive": float((np.abs(season - truth) / scale).mean()),
        "mean": float((np.abs(clim - truth) / scale).mean()),
    }
    coverage = float(((truth >= lower) & (truth <= upper)).mean())
    return Forecast(mean, lower, upper, lower50, upper50, mae, coverage)


def score_anomalies(model: GPVAE, data: DemoData) -> Anomalies:
    """Anomaly scores of the full, unmasked record; flag the days above the 99% quantile."""
    all_days = np.arange(len(data.dates), dtype=np.float64)
    res = model.anomaly_scores(to_model_units(data.truth)[None], all_days[None], num_samples=50)
    step = np.asarray(res.step[0], dtype=np.float64)  # (T + H,)
    entry = np.asarray(res.entry[0], dtype=np.float64)  # (T + H, D)
    threshold = float(np.nanquantile(step, 0.99))
    return Anomalies(step, entry, threshold, step > threshold)


def write_tables(
    out_dir: Path, data: DemoData, imp: Imputation, fc: Forecast, anom: Anomalies
) -> None:
    """Write ``imputed.csv``, ``forecast.csv`` and ``anomalies.csv`` into ``out_dir``."""
    T = data.history.shape[0]
    truth_hist, truth_future = data.truth[:T], data.truth[T:]
    imputed = pd.DataFrame({"date": data.dates[:T]})
    for j, f in enumerate(FEATURES):
        imputed[f] = imp.mean[:, j]
        imputed[f"{f}_lower"] = imp.lower[:, j]
        imputed[f"{f}_upper"] = imp.upper[:, j]
        imputed[f"{f}_hidden"] = data.hidden[:, j]
        imputed[f"{f}_true"] = truth_hist[:, j]
    imputed.to_csv(out_dir / "imputed.csv", index=False)
    forecast = pd.DataFrame({"date": data.dates[T:]})
    for j, f in enumerate(FEATURES):
        forecast[f] = fc.mean[:, j]
        forecast[f"{f}_lower"] = fc.lower[:, j]
        forecast[f"{f}_upper"] = fc.upper[:, j]
        forecast[f"{f}_true"] = truth_future[:, j]
    forecast.to_csv(out_dir / "forecast.csv", index=False)
    scores = pd.DataFrame({"date": data.dates})
    for j, f in enumerate(FEATURES):
        scores[f] = data.truth[:, j]
    scores["score"] = anom.step
    for j, f in enumerate(FEATURES):
        scores[f"{f}_score"] = anom.entry[:, j]
    scores["anomaly"] = anom.flagged
    scores.to_csv(out_dir / "anomalies.csv", index=False)


def draw_plots(
    out_dir: Path, model: GPVAE, data: DemoData, imp: Imputation, fc: Forecast, anom: Anomalies
) -> None:
    """Write the 7 PNG plots into ``out_dir``: training, imputation (a stretch with a gap,
    and the whole history), forecast, anomalies, latents and kernels."""
    from gpvae.app import plots

    T = data.history.shape[0]
    dates_hist, dates_future = data.dates[:T], data.dates[T:]
    truth_hist = data.truth[:T]
    plots.plot_history(model.history_, save=out_dir / "training.png")
    zoom = _zoom_window(data)
    plots.plot_imputation(
        dates_hist[zoom],
        data.history[zoom],
        imp.mean[zoom],
        imp.lower[zoom],
        imp.upper[zoom],
        truth=np.where(data.hidden, truth_hist, np.nan)[zoom],
        feature_names=FEATURES,
        title="Imputation with 90% intervals (a stretch with a 30-day gap)",
        time_label="date",
        save=out_dir / "imputation.png",
    )
    plots.plot_imputation(
        dates_hist,
        data.history,
        imp.mean,
        imp.lower,
        imp.upper,
        feature_names=FEATURES,
        title="Imputation of the whole history",
        time_label="date",
        save=out_dir / "imputation_full.png",
    )
    ctx = slice(max(0, T - 90), T)
    plots.plot_forecast(
        dates_hist[ctx],
        data.history[ctx],
        dates_future,
        fc.mean,
        np.stack([fc.lower, fc.lower50]),
        np.stack([fc.upper, fc.upper50]),
        levels=[0.9, 0.5],
        truth=data.truth[T:],
        feature_names=FEATURES,
        title=f"Forecast of the held-out last {data.horizon} days",
        time_label="date",
        save=out_dir / "forecast.png",
    )
    plots.plot_anomalies(
        data.dates,
        anom.step,
        anom.threshold,
        values=data.truth,
        feature_names=FEATURES,
        title="Anomaly scores of the full record (99% quantile threshold)",
        time_label="date",
        save=out_dir / "anomalies.png",
    )
    year = slice(max(0, T - 365), T)
    lat_mean, lat_var = model.latent(to_model_units(data.history)[None], data.days[None])
    plots.plot_latents(
        dates_hist[year],
        np.asarray(lat_mean)[0][year],
        np.asarray(lat_var)[0][year],
        title="Latent paths over the last year of history (posterior mean ± 2 sd)",
        time_label="date",
        save=out_dir / "latents.png",
    )
    plots.plot_kernels(
        list(model.model_.prior.kernels),
        max_lag=None,  # one that shows the longest period (365 days) and lengthscale
        title="Learned kernels of the latent channels",
        lag_label="lag τ (days)",
        save=out_dir / "kernels.png",
    )


def _data_line(data: DemoData) -> str:
    return (
        f"Seattle weather, {len(data.dates)} days x {len(FEATURES)} features; hidden for the "
        f"test: {int(data.points.sum())} random entries ({POINT_RATE:.0%}) + "
        f"{int(data.gaps.sum())} in {NUM_GAPS} gaps of {GAP_DAYS} days; last {data.horizon} "
        "days held out for the forecast"
    )


def _table(metrics: dict[str, dict[str, float]]) -> str:
    cols = [*FEATURES, "all", "points", "gaps"]
    head = f"{'method':<8}" + "".join(f"{c:>15}" for c in cols)
    units = f"{'':<8}" + "".join(
        f"{u:>15}" for u in ("(mm)", "(°C)", "(°C)", "(m/s)", *["(std units)"] * 3)
    )
    lines = [head, units]
    for name, row in metrics.items():
        lines.append(f"{name:<8}" + "".join(f"{row[c]:>15.3f}" for c in cols))
    return "\n".join(lines)


def report(
    result: dict[str, Any], data: DemoData, out_dir: Path, echo: Callable[[str], None] = print
) -> None:
    """Print the results of :func:`run_demo` (its metrics) as a table and a summary."""
    cov = result["interval_coverage_90"]
    fc = result["forecast_mae_std_units"]
    echo("")
    echo(f"MAE on the {int(data.hidden.sum())} hidden entries (lower is better):")
    echo(_table(result["imputation_mae"]))
    echo(
        f"90% interval coverage of gpvae on the hidden entries: {cov['all']:.1%} "
        f"(random points {cov['points']:.1%}, gaps {cov['gaps']:.1%})"
    )
    echo(
        f"forecast of the last {data.horizon} days, MAE (std units): gpvae "
        f"{fc['gpvae']:.3f}, persistence {fc['persistence']:.3f}, seasonal naive (a year "
        f"before) {fc['seasonal_naive']:.3f}, mean {fc['mean']:.3f}; 90% coverage "
        f"{result['forecast_coverage_90']:.1%}"
    )
    echo(
        f"anomalies: {result['anomalies_flagged']} days above the 99% quantile of the step "
        f"scores ({result['anomaly_threshold']:.2f})"
    )
    echo(
        f"fit {result['fit_seconds']:.0f} s ({result['epochs_run']} epochs), total "
        f"{result['total_seconds']:.0f} s (CPU {result['cpu_seconds']:.0f} s); "
        f"wrote imputed.csv, forecast.csv, anomalies.csv, metrics.json and 7 plots to {out_dir}"
    )


def run_demo(
    out: str | Path = "gpvae-demo",
    *,
    epochs: int | None = None,
    quick: bool = False,
    seed: int = 0,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the demo and write its files.

    Args:
        out: output folder (created if needed).
        epochs: override the number of training epochs.
        quick: use :data:`QUICK` (about 20-45 s) instead of :data:`FULL`.
        seed: seed of the masks and the fit.
        progress: show the training progress bar.
        echo: where to print the report.

    Returns:
        The metrics written to ``metrics.json``.
    """
    start = time.perf_counter()
    cpu_start = time.process_time()
    check_plotting()  # before the data and the fit: the plots come last
    settings = demo_settings(quick, epochs)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = make_demo_data(load_weather(), seed=seed, days=settings.days)
    echo(_data_line(data))

    fit_start = time.perf_counter()
    model = fit_model(data, settings, seed=seed, progress=progress)
    fit_seconds = time.perf_counter() - fit_start
    imp = impute_and_score(model, data, settings.num_samples)
    fc = forecast_and_score(model, data, settings.num_samples)
    anom = score_anomalies(model, data)

    write_tables(out_dir, data, imp, fc, anom)
    result: dict[str, Any] = {
        "data": "vega_datasets seattle-weather.csv (daily, 2012-2015)",
        "settings": asdict(settings),
        "seed": seed,
        "hidden": {
            "points": int(data.points.sum()),
            "gaps": int(data.gaps.sum()),
            "observed_left": int((~np.isnan(data.history)).sum()),
        },
        "imputation_mae": imp.metrics,
        "interval_coverage_90": imp.coverage,
        "forecast_mae_std_units": fc.mae,
        "forecast_coverage_90": fc.coverage,
        "anomaly_threshold": anom.threshold,
        "anomalies_flagged": int(anom.flagged.sum()),
        "epochs_run": len(model.history_),
        "fit_seconds": fit_seconds,
        "total_seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu_start,
    }
    metrics = out_dir / "metrics.json"
    metrics.write_text(json.dumps(result, indent=2, default=_json) + "\n")  # before the plots
    draw_plots(out_dir, model, data, imp, fc, anom)
    result["total_seconds"] = time.perf_counter() - start  # the plots included
    result["cpu_seconds"] = time.process_time() - cpu_start
    metrics.write_text(json.dumps(result, indent=2, default=_json) + "\n")
    report(result, data, out_dir, echo)
    return result


def check_plotting() -> None:
    """Check that matplotlib imports, which :func:`draw_plots` needs, before any work.

    Raises:
        ImportError: matplotlib is missing or broken (the demo would otherwise fail after
            its fit).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError as err:
        raise ImportError(
            f"the demo draws its plots with matplotlib, which does not import ({err}): "
            "install matplotlib (pip install matplotlib)"
        ) from err


def _zoom_window(data: DemoData, width: int = 150) -> slice:
    """A stretch of ``width`` days centred on the first long gap."""
    T = data.history.shape[0]
    rows = np.flatnonzero(data.gaps.any(axis=1))
    centre = int(rows[0]) + GAP_DAYS // 2 if rows.size else T // 2
    lo = min(max(0, centre - width // 2), max(0, T - width))
    return slice(lo, min(T, lo + width))


def _json(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
