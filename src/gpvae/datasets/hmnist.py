"""Healing MNIST: sequences of one rotating MNIST digit with pixels missing not at random.

The benchmark of Fortuin et al., "GP-VAE: Deep Probabilistic Time Series Imputation"
(AISTATS 2020), built from the Healing MNIST idea of Krishnan et al. (2015). Their public
generator (``ratschlab/GP-VAE``, ``lib/healing_mnist.py``) makes each sequence from one digit
by a random walk of rotations: per-frame angle increments drawn i.i.d. from
``N(0, max_angle^2)`` degrees (code default ``max_angle=180``; the value behind the
released data is not recorded), the first one applied to the upright digit, each frame
binarised at ``> 127`` (of 0..255). Their missingness (60% of pixels, white pixels more
likely missing than black) was applied by a script that is not public; only the resulting
``hmnist_mnar.npz`` was shared, so the exact probabilities are unknown. This module
regenerates the data set from the 10,000 MNIST test digits, seeded, in seconds (our
choices, not Fortuin's, where marked "default"):

1. A seeded permutation of the digits picks ``sum(split)`` of them (all 10,000 by default)
   and cuts it into train / val / test.
2. Sequence ``i`` has angles ``a[i, t] = sum_{s <= t} e[i, s]`` degrees with
   ``e ~ N(0, rotation_std^2)`` (default 20 degrees; counter-clockwise as displayed).
   Frame ``t`` is the grey-level digit rotated by ``a[i, t]`` about the image centre
   (bilinear, zero outside), then binarised at 0.5 (127.5 of 255). Rotating the original
   by the cumulative angle (one interpolation per frame) instead of rotating the previous
   frame avoids the blur that repeated interpolation adds; the angles follow the same walk.
3. Each pixel is missing independently with probability ``p_white`` if it is white and
   ``p_black`` if it is black (missing not at random). ``p_white`` has ``mnar_odds_ratio``
   times the odds of ``p_black``, and ``p_black`` is solved so that the expected missing
   rate over all generated pixels equals ``missing_rate`` exactly. With the defaults
   (60%, odds ratio 7; about 13.3% of pixels are white) that gives ``p_white = 0.897`` and
   ``p_black = 0.555`` (default odds ratio). ``mnar=False`` gives missing completely at
   random (``p = missing_rate``).

Shapes: n sequences, T = ``seq_len`` frames, D = 784 pixels (28 x 28, row-major).
"""

from __future__ import annotations

import gzip
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gpvae.datasets._paths import dataset_dir
from gpvae.errors import InputTypeError, ModelFileError, invalid

__all__ = ["HMNIST", "HMNISTSplit", "load_mnist", "make_hmnist", "read_idx", "rotate_images"]

# IDX type codes (third byte of the magic number) -> big-endian numpy dtypes.
_IDX_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
_MNIST_IMAGES = "t10k-images-idx3-ubyte.gz"
_MNIST_LABELS = "t10k-labels-idx1-ubyte.gz"
_SIDE = 28
_CHUNK = 1000  # sequences rotated / masked per step (bounds peak memory)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or plain. Never downloads.

    Layout: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dimensions k, then k big-endian uint32
    sizes, then the values in C order, big-endian.

    Args:
        path: the file; gzip is detected from its first two bytes, not from its name.

    Returns:
        An array of shape (size_1, ..., size_k) in native byte order.

    Raises:
        ModelFileError: the file is missing, not valid gzip, or its header or length is
            malformed (truncated data, trailing bytes, unknown type code).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"path: expected an IDX file, found nothing at {path}")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ModelFileError(
                f"path: expected a valid gzip file, found {exc} in {path}"
            ) from exc
    if len(raw) < 4:
        raise ModelFileError(f"path: expected a 4-byte IDX magic number, found {len(raw)} bytes")
    zero0, zero1, code, ndim = raw[:4]
    if zero0 != 0 or zero1 != 0:
        raise ModelFileError(
            f"path: expected an IDX magic number starting with two zero bytes, "
            f"found 0x{raw[:4].hex()} in {path}"
        )
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise ModelFileError(f"path: expected an IDX type code in ({known}), found 0x{code:02X}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ModelFileError(
            f"path: expected {ndim} dimension sizes ({header} header bytes), "
            f"found only {len(raw)} bytes in {path}"
        )
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = math.prod(shape) * dtype.itemsize
    found = len(raw) - header
    if found != expected:
        what = "truncated" if found < expected else "trailing bytes"
        raise ModelFileError(
            f"path: expected {expected} data bytes for shape {shape} of {dtype.name}, "
            f"found {found} ({what}) in {path}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def load_mnist(data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load the 10,000 MNIST test digits (``t10k-*-ubyte.gz``) from ``<data_dir>/mnist``.

    Args:
        data_dir: the shared data directory (holding ``mnist/``) or the ``mnist`` folder
            itself; None resolves it from the ``GPVAE_DATA`` environment variable, else
            ``../shared/data`` (see ``gpvae.datasets._paths.resolve_data_dir``).

    Returns:
        ``images`` (N, 28, 28) uint8 grey levels 0..255 and ``labels`` (N,) int64 in 0..9,
        N = 10,000 for the standard files.

    Raises:
        ValidationError: the directory does not exist or holds no MNIST image file.
        ModelFileError: a file is missing or malformed, or images and labels disagree.
    """
    folder = dataset_dir(data_dir, "mnist", _MNIST_IMAGES)
    for name in (_MNIST_IMAGES, _MNIST_LABELS):
        if not (folder / name).is_file():
            raise ModelFileError(
                f"data_dir: expected {name} in {folder} (set data_dir or GPVAE_DATA), found none"
            )
    images = read_idx(folder / _MNIST_IMAGES)
    labels = read_idx(folder / _MNIST_LABELS)
    if images.ndim != 3 or images.shape[1:] != (_SIDE, _SIDE) or images.dtype != np.uint8:
        raise ModelFileError(
            f"data_dir: expected {_MNIST_IMAGES} to hold (N, 28, 28) uint8, "
            f"found {images.shape} {images.dtype}"
        )
    if labels.shape != (images.shape[0],):
        raise ModelFileError(
            f"data_dir: expected {_MNIST_LABELS} of shape ({images.shape[0]},), "
            f"found {labels.shape}"
        )
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ModelFileError(
            f"data_dir: expected labels in 0..9, found {labels.min()}..{labels.max()}"
        )
    return images, labels


def rotate_images(images: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate square images about their centre, counter-clockwise as displayed.

    Bilinear interpolation, zero outside the image, no resizing; for multiples of 90 degrees
    pixel centres land on pixel centres (90 degrees equals ``np.rot90`` up to float rounding).

    Args:
        images: (B, H, H) float.
        angles: (B,) angles in degrees.

    Returns:
        (B, H, H) the rotated images, same dtype.
    """
    rad = torch.deg2rad(angles.to(images.dtype))
    cos, sin = torch.cos(rad), torch.sin(rad)
    zero = torch.zeros_like(cos)
    # affine_grid maps output coordinates (x right, y down, in [-1, 1]) to input ones: the
    # inverse of a counter-clockwise turn on screen.
    theta = torch.stack(
        [torch.stack([cos, -sin, zero], -1), torch.stack([sin, cos, zero], -1)], -2
    )  # (B, 2, 3)
    x = images.unsqueeze(1)  # (B, 1, H, H)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (B, H, H, 2)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.squeeze(1)  # (B, H, H)


@dataclass
class HMNISTSplit:
    """One split of Healing MNIST.

    Attributes:
        X: (n, T, 784) float32 complete binarised frames (0 or 1), the ground truth.
        observed: (n, T, 784) bool, True where the pixel is observed.
        X_missing: (n, T, 784) float32, ``X`` with NaN where not observed.
        labels: (n,) int64 digit classes 0..9.
        times: (n, T) float32 frame numbers 0..T-1.
        angles: (n, T) float64 rotation of each frame from upright, degrees (CCW).
        index: (n,) int64 position of each sequence's digit in the MNIST test set.
    """

    X: np.ndarray
    observed: np.ndarray
    X_missing: np.ndarray
    labels: np.ndarray
    times: np.ndarray
    angles: np.ndarray
    index: np.ndarray

    def __len__(self) -> int:
        """Number of sequences n."""
        return int(self.X.shape[0])


@dataclass
class HMNIST:
    """Healing MNIST: three splits and how they were made.

    Attributes:
        train, val, test: the splits (sizes ``split``).
        info: generation record: ``seed``, ``seq_len``, ``split``, ``missing_rate`` (target),
            ``mnar``, ``mnar_odds_ratio``, ``rotation_std`` (degrees per frame),
            ``p_missing_white``, ``p_missing_black`` (the probabilities used),
            ``white_fraction`` (of all generated pixels), ``realised_missing_rate``,
            ``realised_missing_white``, ``realised_missing_black``, ``angles`` (dict of
            split name -> (n, T) degrees, the same arrays as ``split.angles``) and
            ``seconds`` (generation time).
    """

    train: HMNISTSplit
    val: HMNISTSplit
    test: HMNISTSplit
    info: dict[str, Any] = field(default_factory=dict)

    def splits(self) -> dict[str, HMNISTSplit]:
        """The splits by name: ``{"train": ..., "val": ..., "test": ...}``."""
        return {"train": self.train, "val": self.val, "test": self.test}


def _as_int(name: str, value: object) -> int:
    """``value`` as an int, or InputTypeError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputTypeError(f"{name}: expected an int, found {type(value).__name__}")
    return int(value)


def _as_float(name: str, value: object) -> float:
    """``value`` as a float, or InputTypeError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputTypeError(f"{name}: expected a float, found {type(value).__name__}")
    return float(value)


def _check_split(split: object, n_digits: int) -> tuple[int, int, int]:
    """Validate ``split``: three ints >= 0 summing to 1..n_digits."""
    bad = invalid(
        "split", f"three ints >= 0 (train, val, test) summing to 1..{n_digits}", repr(split)
    )
    if not isinstance(split, (tuple, list)) or len(split) != 3:
        raise bad
    if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in split):
        raise bad
    sizes = (int(split[0]), int(split[1]), int(split[2]))
    if not 1 <= sum(sizes) <= n_digits:
        raise bad
    return sizes


def _solve_p_black(missing_rate: float, white_fraction: float, odds_ratio: float) -> float:
    """The p_black whose MNAR pair gives the expected missing rate ``missing_rate``.

    Expected rate ``w * p_white + (1 - w) * p_black`` with
    ``odds(p_white) = odds_ratio * odds(p_black)`` rises monotonically in p_black from 0 to
    1, so bisection finds the unique solution.
    """
    lo, hi = 0.0, 1.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        rate = white_fraction * _p_white(mid, odds_ratio) + (1.0 - white_fraction) * mid
        if rate < missing_rate:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _p_white(p_black: float, odds_ratio: float) -> float:
    """``p`` with ``odds_ratio`` times the odds of ``p_black``."""
    return odds_ratio * p_black / (1.0 - p_black + odds_ratio * p_black)


def make_hmnist(
    data_dir: str | Path | None = None,
    *,
    seq_len: int = 10,
    missing_rate: float = 0.6,
    seed: int = 0,
    split: tuple[int, int, int] = (8000, 1000, 1000),
    mnar: bool = True,
    mnar_odds_ratio: float = 7.0,
    rotation_std: float = 20.0,
) -> HMNIST:
    """Generate Healing MNIST from the MNIST test digits (see the module docstring).

    One sequence per digit: ``sum(split)`` digits chosen by a seeded permutation (all
    10,000 by default). Independent random streams (spawned from ``seed``) drive the
    permutation, the angles and the masks, so e.g. a different ``rotation_std`` keeps the
    same split. The same arguments give the same arrays, bit for bit.

    Args:
        data_dir: the shared data directory holding ``mnist/``, or that folder itself
            (None: ``GPVAE_DATA`` or ``../shared/data``).
        seq_len: T, frames per sequence, >= 1.
        missing_rate: expected fraction of missing pixels over all frames, in (0, 1).
        seed: seed of every random choice.
        split: (train, val, test) numbers of sequences, summing to at most 10,000.
        mnar: True: white pixels more likely missing (odds ratio ``mnar_odds_ratio``);
            False: every pixel missing with probability ``missing_rate``.
        mnar_odds_ratio: odds of a white pixel being missing over the odds of a black one
            (>= 1; used when ``mnar``).
        rotation_std: standard deviation (degrees) of the per-frame angle increment of the
            rotation random walk; 0 gives upright, unrotated digits.

    Returns:
        An :class:`HMNIST` with ``train``, ``val``, ``test`` (each ``X``, ``observed``,
        ``X_missing`` (n, T, 784); ``labels`` (n,); ``times``, ``angles`` (n, T)) and ``info``.

    Raises:
        ValidationError, InputTypeError: an argument is out of range or of the wrong type,
            or the data directory is not found.
        ModelFileError: the MNIST files are malformed.
    """
    start = time.perf_counter()
    seq_len = _as_int("seq_len", seq_len)
    if seq_len < 1:
        raise invalid("seq_len", "an int >= 1", seq_len)
    seed = _as_int("seed", seed)
    if seed < 0:  # numpy's SeedSequence said only "expected non-negative integer"
        raise invalid("seed", "an int >= 0", seed)
    missing_rate = _as_float("missing_rate", missing_rate)
    if not 0.0 < missing_rate < 1.0:
        raise invalid("missing_rate", "a value in the open interval (0, 1)", missing_rate)
    rotation_std = _as_float("rotation_std", rotation_std)
    if not (math.isfinite(rotation_std) and rotation_std >= 0.0):
        raise invalid("rotation_std", "a finite value >= 0 (degrees)", rotation_std)
    odds_ratio = _as_float("mnar_odds_ratio", mnar_odds_ratio)
    if not (math.isfinite(odds_ratio) and odds_ratio >= 1.0):
        raise invalid("mnar_odds_ratio", "a finite value >= 1", odds_ratio)
    if not mnar:
        odds_ratio = 1.0
    images, labels = load_mnist(data_dir)
    n_digits = images.shape[0]
    sizes = _check_split(split, n_digits)
    n = sum(sizes)
    perm_rng, angle_rng, mask_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )

    index = perm_rng.permutation(n_digits)[:n]  # (n,)
    steps = angle_rng.normal(0.0, rotation_std, size=(n, seq_len))  # (n, T)
    angles = np.cumsum(steps, axis=1)  # (n, T) random walk, degrees

    # Rotate and binarise, in chunks of sequences.
    X = np.empty((n, seq_len, _SIDE * _SIDE), dtype=np.float32)  # (n, T, D)
    grey = torch.from_numpy(images[index].astype(np.float32) / 255.0)  # (n, 28, 28)
    for lo in range(0, n, _CHUNK):
        hi = min(lo + _CHUNK, n)
        frames = grey[lo:hi].repeat_interleave(seq_len, dim=0)  # (c*T, 28, 28)
        rotated = rotate_images(frames, torch.from_numpy(angles[lo:hi].reshape(-1)))
        X[lo:hi] = (rotated > 0.5).reshape(hi - lo, seq_len, -1).numpy()

    # Missingness: probabilities fixed per pixel value, calibrated to the target rate.
    white_fraction = float(X.mean(dtype=np.float64))
    p_black = _solve_p_black(missing_rate, white_fraction, odds_ratio)
    p_white = _p_white(p_black, odds_ratio)
    p_base, p_step = np.float32(p_black), np.float32(p_white - p_black)
    observed = np.empty(X.shape, dtype=bool)  # (n, T, D)
    for lo in range(0, n, _CHUNK):
        hi = min(lo + _CHUNK, n)
        u = mask_rng.random(X[lo:hi].shape, dtype=np.float32)  # (c, T, D) uniform
        observed[lo:hi] = u >= p_base + p_step * X[lo:hi]  # missing with p_black or p_white
    X_missing = np.where(observed, X, np.float32(np.nan))  # (n, T, D)

    white = X > 0.5
    n_white = int(white.sum())
    missing_white = int(np.count_nonzero(white & ~observed))
    missing_all = int(observed.size - np.count_nonzero(observed))
    times = np.broadcast_to(np.arange(seq_len, dtype=np.float32), (n, seq_len)).copy()

    out: dict[str, HMNISTSplit] = {}
    bounds = np.cumsum((0, *sizes))
    for name, lo, hi in zip(("train", "val", "test"), bounds[:-1], bounds[1:]):
        out[name] = HMNISTSplit(
            X=X[lo:hi],
            observed=observed[lo:hi],
            X_missing=X_missing[lo:hi],
            labels=labels[index[lo:hi]],
            times=times[lo:hi],
            angles=angles[lo:hi],
            index=index[lo:hi].astype(np.int64),
        )
    info: dict[str, Any] = {
        "seed": seed,
        "seq_len": seq_len,
        "split": sizes,
        "missing_rate": missing_rate,
        "mnar": bool(mnar),
        "mnar_odds_ratio": odds_ratio,
        "rotation_std": rotation_std,
        "p_missing_white": p_white,
        "p_missing_black": p_black,
        "white_fraction": white_fraction,
        "realised_missing_rate": missing_all / observed.size,
        "realised_missing_white": missing_white / max(n_white, 1),
        "realised_missing_black": (missing_all - missing_white) / max(X.size - n_white, 1),
        "angles": {name: s.angles for name, s in out.items()},
        "seconds": time.perf_counter() - start,
    }
    return HMNIST(train=out["train"], val=out["val"], test=out["test"], info=info)
