"""The application floor, above the estimator: what a user runs rather than imports.

- :mod:`gpvae.app.cli`: the ``gpvae`` command line (demo, fit, impute, forecast, detect,
  sample) over CSV and Parquet files;
- :mod:`gpvae.app.demo`: ``gpvae demo``, the whole job end to end on embedded real data;
- :mod:`gpvae.app.plots`: matplotlib figures of imputations, forecasts, anomaly scores,
  latents and kernels;
- :mod:`gpvae.app.baselines`: naive imputation baselines (mean, LOCF, linear) that the demo
  and the benchmarks compare against.

Nothing below this package imports it.
"""

from __future__ import annotations

__all__: list[str] = []
