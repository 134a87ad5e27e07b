"""The data layer: user inputs -> validated series -> scaled, padded batches -> user outputs.

- :func:`to_series_set` validates and normalises numpy arrays (n, T, D), ragged lists of
  (T_i, D) arrays, long or wide DataFrames and PyPOTS-style dicts into a :class:`SeriesSet`
  (values with NaN for missing, strictly increasing float times).
- :class:`Scaler` standardises features with statistics of observed training entries and
  records the median time step.
- :func:`make_batches` / :meth:`SeriesSet.to_batch` build padded
  :class:`~gpvae.batch.Batch` objects.
- :func:`from_padded` gives per-point results back in the user's form and order.

Typical use::

    train = to_series_set(X, times)
    scaler = Scaler().fit(train)
    for batch in make_batches(scaler.transform(train), 32, shuffle=True, seed=0):
        ...
    mean = from_padded(train, scaler.inverse_transform(padded_mean))  # (n, N_max, D) in
"""

from __future__ import annotations

from gpvae.data.batching import batch_indices, make_batches
from gpvae.data.convert import to_series_set
from gpvae.data.duplicates import MergedTimes, merge_duplicate_times
from gpvae.data.output import from_padded, unpad
from gpvae.data.scaler import Scaler
from gpvae.data.series import InputKind, Layout, SeriesSet

__all__ = [
    "InputKind",
    "Layout",
    "MergedTimes",
    "Scaler",
    "SeriesSet",
    "batch_indices",
    "from_padded",
    "make_batches",
    "merge_duplicate_times",
    "to_series_set",
    "unpad",
]
