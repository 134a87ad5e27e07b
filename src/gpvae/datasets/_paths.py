"""Shared plumbing of the real-data loaders: where the data live and what a loader returns.

The data are read in place from a directory outside the project (``../shared/data`` by
default, see ``resolve_data_dir``). Nothing is ever downloaded, cached or copied into the
repository.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gpvae.errors import ValidationError

__all__ = ["DATA_ENV_VAR", "TimeSeriesData", "dataset_dir", "resolve_data_dir"]

DATA_ENV_VAR = "GPVAE_DATA"
"""Environment variable naming the shared data directory."""


def _default_candidates() -> list[Path]:
    """Directories tried, in order, when neither an argument nor the variable is given."""
    candidates: list[Path] = []
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file():
            candidates.append(parent.parent / "shared" / "data")
            break
    cwd_candidate = Path.cwd().resolve().parent / "shared" / "data"
    if cwd_candidate not in candidates:
        candidates.append(cwd_candidate)
    return candidates


def resolve_data_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """Find the shared real-data directory.

    Order: ``path`` if given; else the ``GPVAE_DATA`` environment variable if set; else
    ``../shared/data`` relative to the project root (the first directory above this package
    that holds ``pyproject.toml``); else ``../shared/data`` relative to the current working
    directory. The directory holds the subfolders ``physionet2012/``, ``beijing_air/`` and
    ``mnist/``.

    Args:
        path: a directory, or None to search as above.

    Returns:
        The resolved directory (it exists).

    Raises:
        ValidationError: when the given path or ``GPVAE_DATA`` is not a directory, or no
            default location exists; the message lists where it looked.
    """
    if path is not None:
        resolved = Path(path).expanduser()
        if not resolved.is_dir():
            raise ValidationError(
                f"data_dir: expected an existing directory, found {str(resolved)!r} "
                "(missing or not a directory)"
            )
        return resolved.resolve()
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        resolved = Path(env).expanduser()
        if not resolved.is_dir():
            raise ValidationError(
                f"{DATA_ENV_VAR}: expected an existing directory, found {env!r} "
                "(missing or not a directory)"
            )
        return resolved.resolve()
    candidates = _default_candidates()
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    looked = ", ".join(repr(str(c)) for c in candidates)
    raise ValidationError(
        "data_dir: expected a data directory (pass data_dir or set "
        f"{DATA_ENV_VAR}), found none; looked in {looked}"
    )


def dataset_dir(data_dir: str | os.PathLike[str] | None, name: str, marker: str) -> Path:
    """The folder of one data set.

    ``data_dir`` may be the shared data directory (then ``data_dir / name`` is used) or the
    data set's own folder (recognised by containing ``marker``).

    Args:
        data_dir: a directory or None (see ``resolve_data_dir``).
        name: subfolder name, e.g. ``"physionet2012"``.
        marker: a glob pattern that the data set's folder matches, e.g. ``"set-a"``.

    Returns:
        The data set's folder.

    Raises:
        ValidationError: when neither ``data_dir / name`` nor ``data_dir`` holds ``marker``.
    """
    root = resolve_data_dir(data_dir)
    for candidate in (root / name, root):
        if candidate.is_dir() and any(candidate.glob(marker)):
            return candidate
    raise ValidationError(
        f"data_dir: expected a directory holding {name}/{marker} (or {marker} itself), "
        f"found neither in {str(root)!r}"
    )


@dataclass(repr=False)
class TimeSeriesData:
    """A loaded data set of multivariate time series.

    Shapes: n series, T steps, D features, S static features. Regular data have ``X`` of
    shape (n, T, D); irregular data have a list of n arrays of shape (T_i, D).

    Attributes:
        X: (n, T, D) float array with NaN for missing, or a list of n (T_i, D) float arrays.
        times: (n, T) float array of times (hours for the bundled loaders), or a list of n
            (T_i,) float arrays.
        ids: (n,) identifiers of the series (e.g. PhysioNet RecordIDs).
        features: the D feature names, in column order.
        labels: (n,) per-series labels, or None.
        static: (n, S) float array of static descriptors with NaN for unknown, or None.
        static_features: the S static descriptor names, or None.
        info: free-form provenance and details (source files, units, choices made).
    """

    X: np.ndarray | list[np.ndarray]
    times: np.ndarray | list[np.ndarray]
    ids: np.ndarray
    features: list[str]
    labels: np.ndarray | None = None
    static: np.ndarray | None = None
    static_features: list[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_series(self) -> int:
        """Number of series n."""
        return len(self.X)

    @property
    def missing_rate(self) -> float:
        """Fraction of NaN entries over all series, steps and features."""
        arrays = [self.X] if isinstance(self.X, np.ndarray) else self.X
        total = sum(a.size for a in arrays)
        if total == 0:
            return float("nan")
        missing = sum(int(np.count_nonzero(np.isnan(a))) for a in arrays)
        return missing / total

    def __repr__(self) -> str:
        if isinstance(self.X, np.ndarray):
            shape = f"X={self.X.shape}"
        else:
            lengths = [len(a) for a in self.X]
            span = f"{min(lengths)}..{max(lengths)}" if lengths else "-"
            shape = f"X=ragged(n={len(self.X)}, T_i={span}, D={len(self.features)})"
        labels = "None" if self.labels is None else f"{self.labels.shape}"
        return (
            f"TimeSeriesData({shape}, D={len(self.features)}, "
            f"missing_rate={self.missing_rate:.4f}, labels={labels}, "
            f"name={self.info.get('name', '?')!r})"
        )
