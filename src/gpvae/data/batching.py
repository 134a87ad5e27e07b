"""Mini-batches of series as padded :class:`~gpvae.batch.Batch` objects, and their shares
among the processes of a distributed fit.

Two ways to split the series among ``world_size`` processes (see :mod:`gpvae.training.distributed`):

- every process holds every series (:func:`sharded_batch_indices`): the batches are the
  one-process batches of :func:`batch_indices` (same seed, same order), and process ``r``
  takes rows ``r, r + world_size, ...`` of each, as ``torch.utils.data.DistributedSampler``
  followed by a loader of ``batch_size / world_size`` series would; the batches of all
  processes together are exactly the one-process batches;
- every process holds only its own series (:func:`shard_bounds` says which, e.g. for a
  Parquet dataset read in parts; then :func:`local_batch_indices`): each process shuffles its
  own series every epoch and takes its share of every batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gpvae.batch import Batch
from gpvae.data.series import SeriesSet, check_time_transform
from gpvae.errors import InputTypeError, ValidationError

__all__ = [
    "ShardBatch",
    "batch_indices",
    "local_batch_indices",
    "local_num_steps",
    "local_share",
    "make_batches",
    "shard_bounds",
    "sharded_batch_indices",
]


def batch_indices(
    num_series: int,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    drop_last: bool = False,
    lengths: Sequence[int] | np.ndarray | None = None,
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
        lengths: (n,) the series' lengths, for predictions over ragged series: the series
            go from the longest to the shortest (equal lengths in their order) before the
            split, so that a batch holds series of about one length: less padding, and one
            dense posterior factorisation per length of a batch instead of up to one per
            series (the longest first: a batch too large for memory fails at once). Not
            with ``shuffle``.

    Returns:
        An iterator over (B,) int64 arrays of series numbers.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise InputTypeError(f"batch_size: expected a positive int, found {batch_size!r}")
    if batch_size < 1:
        raise ValidationError(f"batch_size: expected a positive int, found {batch_size}")
    if generator is not None and seed is not None:
        raise ValidationError("seed: expected None when a generator is given, found both")
    if lengths is not None:
        if shuffle:
            raise ValidationError("lengths: expected None when shuffle is on, found both")
        order = _longest_first(lengths, num_series)
    elif shuffle:
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
    shift_rows: bool = False,
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
        shift_rows: also move each row by its own whole steps (see
            :meth:`SeriesSet.to_batch`).

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
            idx,
            dtype=dtype,
            device=device,
            time_shift=time_shift,
            time_scale=time_scale,
            shift_rows=shift_rows,
        )
        for idx in indices
    )


def _longest_first(lengths: Sequence[int] | np.ndarray, num_series: int) -> np.ndarray:
    """(n,) int64 series numbers from the longest series to the shortest, equal lengths in
    their order; ``lengths`` is checked to hold n non-negative whole numbers."""
    arr = np.asarray(lengths)
    if arr.shape != (num_series,) or (arr.size and arr.dtype.kind not in "iu"):
        raise ValidationError(
            f"lengths: expected ({num_series},) integer series lengths, found shape "
            f"{arr.shape} of {arr.dtype}"
        )
    if arr.size and arr.min() < 0:
        raise ValidationError(
            f"lengths: expected non-negative series lengths, found {int(arr.min())}"
        )
    return np.argsort(-arr.astype(np.int64), kind="stable").astype(np.int64)


@dataclass(frozen=True)
class ShardBatch:
    """One process's part of one global batch.

    Attributes:
        indices: (b,) int64 series numbers (into the process's series) of its part; may be
            empty when the global batch has fewer series than there are processes.
        rows: (b,) the part's rows in the global batch (every process holding every series),
            or None (each process holding its own series).
        whole: the global batch's series (every process holding every series), or None.
    """

    indices: np.ndarray
    rows: np.ndarray | None = None
    whole: np.ndarray | None = None

    @property
    def size(self) -> int | None:
        """Series in the global batch, or None when only the local part is known."""
        return None if self.whole is None else len(self.whole)


def _check_world(rank: int, world_size: int) -> None:
    if not (isinstance(world_size, (int, np.integer)) and world_size >= 1):
        raise ValidationError(f"world_size: expected an int >= 1, found {world_size!r}")
    if not (isinstance(rank, (int, np.integer)) and 0 <= rank < world_size):
        raise ValidationError(f"rank: expected an int in [0, {world_size}), found {rank!r}")


def shard_bounds(num_series: int, rank: int, world_size: int) -> tuple[int, int]:
    """The contiguous block ``[start, stop)`` of series 0..n-1 that process ``rank`` holds.

    The blocks of processes 0..world_size-1 are disjoint, cover every series, keep the
    order, and differ in size by at most one (the first ``n % world_size`` get one more).
    """
    _check_world(rank, world_size)
    base, extra = divmod(int(num_series), int(world_size))
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def sharded_batch_indices(
    num_series: int,
    batch_size: int,
    rank: int,
    world_size: int,
    *,
    shuffle: bool = False,
    seed: int | None = None,
) -> list[ShardBatch]:
    """Process ``rank``'s parts of the batches of :func:`batch_indices` (every process
    holding every series).

    Process r takes rows r, r + world_size, ... of every batch; a batch with fewer series
    than processes leaves the last processes an empty part (they still take part in the
    step, contributing nothing).

    Returns:
        One :class:`ShardBatch` per global batch, with ``rows`` and ``whole``.
    """
    local_share(batch_size, rank, world_size)  # raises when batch_size < world_size
    out = []
    for idx in batch_indices(num_series, batch_size, shuffle=shuffle, seed=seed):
        rows = np.arange(rank, len(idx), world_size, dtype=np.int64)
        out.append(ShardBatch(indices=idx[rows], rows=rows, whole=idx))
    return out


def local_batch_indices(
    num_local: int,
    batch_size: int,
    rank: int,
    world_size: int,
    num_steps: int,
    *,
    seed: int,
) -> list[ShardBatch]:
    """Process ``rank``'s parts of ``num_steps`` batches when it holds only its own series.

    The process shuffles its ``num_local`` series (seeded by ``seed``) and takes
    ``batch_size // world_size`` of them per step (one more for the first
    ``batch_size % world_size`` processes), so that the parts of all processes make batches
    of ``batch_size`` series; once its series run out its parts are empty. Use
    :func:`local_num_steps` for a ``num_steps`` every process agrees on.

    Returns:
        ``num_steps`` :class:`ShardBatch` without ``rows``.
    """
    _check_world(rank, world_size)
    share = local_share(batch_size, rank, world_size)
    order = torch.randperm(num_local, generator=torch.Generator().manual_seed(int(seed)))
    order_np = order.numpy().astype(np.int64)
    return [ShardBatch(indices=order_np[k * share : (k + 1) * share]) for k in range(num_steps)]


def local_share(batch_size: int, rank: int, world_size: int) -> int:
    """Series of every batch that process ``rank`` contributes (they add up to batch_size).

    Raises:
        ValidationError: naming batch_size when it is smaller than ``world_size``.
    """
    _check_world(rank, world_size)
    if batch_size < world_size:
        raise ValidationError(
            f"batch_size: expected at least the number of processes ({world_size}), found "
            f"{batch_size}"
        )
    base, extra = divmod(int(batch_size), int(world_size))
    return base + (1 if rank < extra else 0)


def local_num_steps(num_local: int, batch_size: int, rank: int, world_size: int) -> int:
    """Steps process ``rank`` needs to go through its ``num_local`` series once; the
    processes of a fit run the largest of these numbers."""
    share = local_share(batch_size, rank, world_size)
    return -(-int(num_local) // share)
