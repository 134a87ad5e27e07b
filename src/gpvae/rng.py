"""Seeds and random draws whose randomness belongs to one series, not to its batch.

``q.rsample(S, generator)`` draws one block of noise for a whole padded batch, so a series'
draws would change with the other series in its batch and with the padding. Prediction
(imputation, anomaly scores, calibration) instead gives every series its own generator,
seeded by :func:`series_seed` from the estimator's seed and the series' values and times,
and draws that series' noise from it alone (:func:`per_series_normal`); padding gets zeros.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "batch_normal",
    "batch_rand",
    "batch_randint",
    "batch_rows",
    "gaussian_draws",
    "per_series_normal",
    "seed_for",
    "series_generators",
    "series_seed",
]


def seed_for(*parts: int) -> int:
    """A 63-bit seed derived from integers (e.g. the estimator's seed and an epoch)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0]) >> 1


def series_seed(seed: int, salt: int, values: np.ndarray, times: np.ndarray) -> int:
    """A 63-bit seed from the estimator seed, a per-method salt and the series' content.

    The content is hashed exactly as given: the estimator passes a series' values in the
    input's own units (not standardised) and its times as read (numbers as given; dates as
    hours or calendar steps since the earliest time of the data passed). So every draw
    seeded here (imputations, calibration hold-outs, anomaly scores, forecast
    calibration) changes when the same data come in other units (``X * 1000``), with an
    offset (``X + 1e6``), or with times in other units or from another origin (``60 * t``,
    ``t + 1e6``; dates beside a series that starts earlier): the fitted networks and
    kernels are the same, but results that rest on the draws move by their Monte-Carlo
    error (on a small example, calibrated interval widths by about 10% and anomaly
    thresholds by about 4%). Hashing the standardised values instead would change every
    recorded result, so the seeding stays as it is; the same data in the same form always
    repeat the same draws.
    """
    h = hashlib.sha256()
    h.update(np.array([seed, salt], dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(times, dtype=np.float64).tobytes())
    return int.from_bytes(h.digest()[:8], "little") >> 1


def series_generators(
    seed: int,
    salt: int,
    values: Sequence[np.ndarray],
    times: Sequence[np.ndarray],
    device: torch.device,
) -> list[torch.Generator]:
    """One generator per series, seeded by :func:`series_seed` of its values and times."""
    return [
        torch.Generator(device=device).manual_seed(series_seed(seed, salt, v, t))
        for v, t in zip(values, times)
    ]


def per_series_normal(
    generators: Sequence[torch.Generator],
    lengths: Sequence[int],
    num_samples: int,
    num_points: int,
    tail: tuple[int, ...],
    like: Tensor,
) -> Tensor:
    """Standard-normal noise (S, B, N, *tail), series b's part (S, T_b, *tail) from its own
    generator, zeros on padding."""
    B = len(generators)
    out = like.new_zeros((num_samples, B, num_points, *tail))
    for b, (gen, T) in enumerate(zip(generators, lengths)):
        out[:, b, :T] = torch.randn(
            (num_samples, T, *tail), generator=gen, dtype=like.dtype, device=like.device
        )
    return out


def gaussian_draws(
    mean: Tensor,
    var: Tensor,
    generators: Sequence[torch.Generator],
    lengths: Sequence[int],
) -> Tensor:
    """y ~ N(mean, var) entry-wise (S, B, N, D), series b's draws from its own generator."""
    out = torch.zeros_like(mean)
    for b, (gen, T) in enumerate(zip(generators, lengths)):
        m, v = mean[:, b : b + 1, :T], var[:, b : b + 1, :T]
        eps = torch.randn(m.shape, generator=gen, dtype=m.dtype, device=m.device)
        out[:, b : b + 1, :T] = m + v.sqrt() * eps
    return out


#: (rows of the global batch, its size) while :func:`batch_rows` is active.
_ROWS: ContextVar[tuple[Tensor, int] | None] = ContextVar("gpvae_batch_rows", default=None)


@contextlib.contextmanager
def batch_rows(rows: Sequence[int] | np.ndarray, size: int) -> Iterator[None]:
    """Inside this block the batch is rows ``rows`` of a batch of ``size`` series.

    :func:`batch_normal` then draws the noise of all ``size`` series and keeps ``rows``.
    The local batch must have ``len(rows)`` series, padded to the global batch's length.

    Args:
        rows: (B,) distinct row numbers in ``[0, size)``, in the local batch's order.
        size: the global batch's number of series.
    """
    idx = torch.as_tensor(np.asarray(rows, dtype=np.int64))
    if idx.ndim != 1 or idx.numel() == 0 or int(idx.min()) < 0 or int(idx.max()) >= size:
        raise ValueError(f"rows: expected row numbers in [0, {size}), found {idx.tolist()}")
    token = _ROWS.set((idx, int(size)))
    try:
        yield
    finally:
        _ROWS.reset(token)


def _global_shape(shape: Sequence[int], batch_dim: int) -> tuple[list[int], Tensor | None]:
    """(the shape to draw, the rows to keep or None) for a batch's draw of ``shape``."""
    part = _ROWS.get()
    full = list(shape)
    if part is None:
        return full, None
    rows, size = part
    if full[batch_dim] != len(rows):
        raise ValueError(
            f"shape: expected {len(rows)} series along dimension {batch_dim} (the rows given to "
            f"batch_rows), found shape {tuple(shape)}"
        )
    full[batch_dim] = size
    return full, rows


def _keep(draw: Tensor, batch_dim: int, rows: Tensor | None) -> Tensor:
    return draw if rows is None else draw.index_select(batch_dim, rows.to(draw.device))


def batch_normal(
    shape: Sequence[int],
    batch_dim: int,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device | str | None,
) -> Tensor:
    """Standard-normal noise of ``shape`` for one batch, whose series are along ``batch_dim``.

    Outside :func:`batch_rows` this is ``torch.randn(shape, ...)``; inside it, the noise of
    the global batch (``shape`` with ``size`` series along ``batch_dim``) at ``rows``.
    """
    full, rows = _global_shape(shape, batch_dim)
    noise = torch.randn(full, generator=generator, dtype=dtype, device=device)
    return _keep(noise, batch_dim, rows)


def batch_rand(
    shape: Sequence[int],
    batch_dim: int,
    generator: torch.Generator | None,
    device: torch.device | str | None,
) -> Tensor:
    """Uniform [0, 1) draws like :func:`batch_normal` (``torch.rand``, default dtype)."""
    full, rows = _global_shape(shape, batch_dim)
    return _keep(torch.rand(full, generator=generator, device=device), batch_dim, rows)


def batch_randint(
    low: int,
    high: int,
    shape: Sequence[int],
    batch_dim: int,
    generator: torch.Generator | None,
    device: torch.device | str | None,
) -> Tensor:
    """Integers in [low, high) like :func:`batch_normal` (``torch.randint``)."""
    full, rows = _global_shape(shape, batch_dim)
    draw = torch.randint(low, high, full, generator=generator, device=device)
    return _keep(draw, batch_dim, rows)
