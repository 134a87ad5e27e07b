"""``gpvae demo``: the whole job, end to end, on real data that ships with a dependency.

The data are four years (2012-2015, 1461 days) of daily Seattle weather from the
``vega_datasets`` package (MIT licence, no network needed): precipitation (mm), temp_max and
temp_min (°C) and wind (m/s). The demo

1. holds out the last 28 days (the forecast test);
2. hides, in the remaining 1433 days, three 30-day gaps of one feature each and then 20% of
   the other observed entries at random (the imputation test; the model never sees them);
3. fits a GP-VAE on overlapping windows of the masked history (times in days);
4. imputes the whole history with 90% intervals, forecasts the held-out 28 days, and scores
   anomalies on the full, unmasked record;
5. prints the MAE on the hidden entries of the GP-VAE and of mean, LOCF and linear
   interpolation, and the coverage of the 90% intervals;
6. writes ``imputed.csv``, ``forecast.csv``, ``anomalies.csv``, ``metrics.json`` and PNG
   plots into the output folder.

The parts: :mod:`~gpvae.app.demo.data` (the record, the masks, model units),
:mod:`~gpvae.app.demo.model` (settings, fit, imputation, scores, and :func:`tune`, which
chose the settings on a validation mask: ``python -m gpvae.app.demo`` reruns it) and
:mod:`~gpvae.app.demo.run` (the steps of :func:`run_demo`).
"""

from __future__ import annotations

from gpvae.app.demo.data import (
    FEATURES,
    DemoData,
    from_model_units,
    load_weather,
    make_demo_data,
    to_model_units,
    windows,
)
from gpvae.app.demo.model import (
    FULL,
    QUICK,
    DemoSettings,
    evaluate,
    fit_model,
    impute_history,
    tune,
)
from gpvae.app.demo.run import run_demo

__all__ = [
    "FEATURES",
    "FULL",
    "QUICK",
    "DemoData",
    "DemoSettings",
    "evaluate",
    "fit_model",
    "from_model_units",
    "impute_history",
    "load_weather",
    "make_demo_data",
    "run_demo",
    "to_model_units",
    "tune",
    "windows",
]
