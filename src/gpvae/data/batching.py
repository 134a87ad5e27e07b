"""Mini-batches of series as padded :class:`~gpvae.batch.Batch` objects."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from gpvae.batch import Batch
from gpvae.data.series import SeriesSet, check_time_transform
from gpvae.errors import InputTypeError, ValidationError

__all__ = ["batch_indices", "make_batches"]


def batch_indices(
    num_series: int,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    drop_last: bool = False,
) -> Iterator[np.ndarray]:
    """Split series numbers 0..n-1 into batches.

    Args:
        num_series: n.
        batch_size: series per batch (the last batch may be smaller unless ``drop_last``).
        shuffle: permute the series first (with ``generator``, or a generator seeded with
            ``seed``, or torch's global generator when both are None).
        generator: explicit random generator; not together with ``seed``.
        seed: seed for a fresh generator; not together with ``generator``.
        drop_last: skip a last batch smaller than ``batch_size``.

    Returns:
        An iterator over (B,) int64 arrays of series numbers.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise InputTypeError(f"batch_size: expected a positive int, found {batch_size!r}")
    if batch_size < 1:
        raise ValidationError(f"batch_size: expected a positive int, found {batch_size}")
    if generator is not None and seed is not None:
        raise ValidationError("seed: expected None when a generator is given, found both")
    if shuffle:
        if seed is not None:
            generator = torch.Generator().manual_seed(int(seed))
        order = torch.randperm(num_series, generator=generator).numpy().astype(np.int64)
    else:
        order = np.arange(num_series, dtype=np.int64)
    size = int(batch_size)
    stop = num_series - num_series % size if drop_last else num_series
    # A list (not a generator function), so that bad arguments raise at the call.
    return iter([order[start : start + size] for start in range(0, stop, size)])


def make_batches(
    series_set: SeriesSet,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    drop_last: bool = False,
    time_shift: float = 0.0,
    time_scale: float = 1.0,
) -> Iterator[Batch]:
    """Iterate over padded batches of a :class:`SeriesSet`.

    Each batch is padded to its own longest series (see :meth:`SeriesSet.to_batch`). To know
    which series a batch holds, iterate :func:`batch_indices` with the same arguments and
    call ``series_set.to_batch(idx)``.

    Args:
        series_set: the (usually scaled) series.
        batch_size: series per batch.
        shuffle: permute the series (see :func:`batch_indices` for ``generator``/``seed``).
        generator: explicit random generator for the permutation.
        seed: seed for a fresh generator.
        dtype: floating dtype of ``x`` and ``y``.
        device: device of the tensors.
        drop_last: skip a last, smaller batch.
        time_shift: subtracted from the times, ``x = (t - time_shift) / time_scale``.
        time_scale: positive divisor of the shifted times.

    Returns:
        An iterator of Batch with x (B, N, 1), y (B, N, D), observed (B, N, D), valid (B, N).
    """
    if not isinstance(series_set, SeriesSet):
        raise InputTypeError(
            f"series_set: expected a SeriesSet (see to_series_set), found "
            f"{type(series_set).__name__}"
        )
    indices = batch_indices(
        series_set.num_series,
        batch_size,
        shuffle=shuffle,
        generator=generator,
        seed=seed,
        drop_last=drop_last,
    )
    check_time_transform(time_shift, time_scale)  # raise at the call, not at the first batch
    return (
        series_set.to_batch(
            idx, dtype=dtype, device=device, time_shift=time_shift, time_scale=time_scale
        )
        for idx in indices
    )
