"""Labelled anomaly-detection data: the NAB real series and the SMAP/MSL telemetry channels.

Each loader returns :class:`AnomalySeries` objects: one series split into a normal
(``train``) part to fit on and a ``test`` part with per-step labels (1 inside a labelled
anomaly window). The values are returned raw, as in the files.

- **NAB** (Lavin & Ahmad 2015): ``nab/data/real*/*.csv`` (``timestamp,value``) and the
  labelled windows of ``nab/labels/combined_windows.json``. NAB's protocol gives every
  detector the first 15% of a series as a probationary period without scoring; here that
  period is the ``train`` part (``train_fraction``) and the remaining 85% is ``test``. A
  labelled window that overlaps the probationary period stays labelled in ``train_labels``
  (the probationary part of NAB's 47 real series holds no labelled window).
- **SMAP/MSL** (Hundman et al. 2018): ``smap_msl/<channel>.npz`` with ``train`` (the
  anomaly-free period), ``test`` and ``label``; column 0 is the telemetry value, the others
  are one-hot command flags (D = 25 for SMAP, 55 for MSL).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gpvae.datasets._paths import dataset_dir
from gpvae.errors import ValidationError

__all__ = [
    "AnomalySeries",
    "load_nab",
    "load_smap_msl",
    "nab_names",
    "smap_msl_channels",
]


@dataclass(repr=False)
class AnomalySeries:
    """One labelled series, split into a normal part and a scored part.

    Attributes:
        name: e.g. ``"realKnownCause/nyc_taxi"`` or ``"P-1"``.
        dataset: ``"NAB"``, ``"SMAP"`` or ``"MSL"``.
        train: (T1, D) float64 values of the part to fit on.
        test: (T2, D) float64 values of the part to score.
        labels: (T2,) uint8, 1 inside a labelled anomaly of ``test``.
        train_times: (T1,) times (``datetime64[s]`` for NAB, step numbers otherwise).
        test_times: (T2,) times, continuing ``train_times``.
        features: the D feature names.
        info: provenance (source files, split rule).
    """

    name: str
    dataset: str
    train: np.ndarray
    test: np.ndarray
    labels: np.ndarray
    train_times: np.ndarray
    test_times: np.ndarray
    features: list[str]
    train_labels: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"AnomalySeries({self.dataset} {self.name!r}, train={self.train.shape}, "
            f"test={self.test.shape}, anomalous={float(self.labels.mean()):.3f})"
        )


def _nab_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    return dataset_dir(data_dir, "nab", "labels/combined_windows.json")


def nab_names(data_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """The names (``realX/name``, no ``.csv``) of NAB's real series, sorted."""
    root = _nab_dir(data_dir) / "data"
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.glob("real*/*.csv"))


def load_nab(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    train_fraction: float = 0.15,
) -> AnomalySeries:
    """One NAB real series with its labelled windows.

    Args:
        name: ``"realKnownCause/nyc_taxi"`` (``.csv`` optional); see :func:`nab_names`.
        data_dir: the shared data directory or the ``nab`` folder (None: ``GPVAE_DATA`` or
            ``../shared/data``).
        train_fraction: the leading share of the series in ``train`` (NAB's probationary
            period is 15%).

    Raises:
        ValidationError: an unknown name (naming ``name``), a bad ``train_fraction``.
    """
    import pandas as pd

    if not 0.0 < train_fraction < 1.0:
        raise ValidationError(
            f"train_fraction: expected a number in (0, 1), found {train_fraction!r}"
        )
    root = _nab_dir(data_dir)
    key = name if name.endswith(".csv") else f"{name}.csv"
    path = root / "data" / key
    if not path.is_file():
        raise ValidationError(
            f"name: expected a NAB real series such as 'realKnownCause/nyc_taxi', found "
            f"{name!r} (no file {str(path)!r})"
        )
    frame = pd.read_csv(path)
    stamps = pd.to_datetime(frame["timestamp"])
    values = frame["value"].to_numpy(dtype=np.float64)[:, None]
    windows = json.loads((root / "labels" / "combined_windows.json").read_text())
    labels = np.zeros(len(frame), dtype=np.uint8)
    for start, end in windows.get(key, []):
        inside = (stamps >= pd.Timestamp(start)) & (stamps <= pd.Timestamp(end))
        labels[inside.to_numpy()] = 1
    n_train = int(train_fraction * len(frame))
    times = stamps.to_numpy().astype("datetime64[s]")
    return AnomalySeries(
        name=key[: -len(".csv")],
        dataset="NAB",
        train=values[:n_train],
        test=values[n_train:],
        labels=labels[n_train:],
        train_times=times[:n_train],
        test_times=times[n_train:],
        features=["value"],
        train_labels=labels[:n_train],
        info={"source": str(path), "split": f"first {train_fraction:g} of the steps"},
    )


def _smap_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    return dataset_dir(data_dir, "smap_msl", "*.npz")


def smap_msl_channels(data_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """The SMAP/MSL channel names (``"A-1"``, ...), sorted."""
    return sorted(p.stem for p in _smap_dir(data_dir).glob("*.npz"))


def load_smap_msl(channel: str, data_dir: str | os.PathLike[str] | None = None) -> AnomalySeries:
    """One SMAP or MSL channel: ``train`` (anomaly-free), ``test`` and its labels.

    Raises:
        ValidationError: an unknown channel (naming ``channel``).
    """
    root = _smap_dir(data_dir)
    path = root / f"{channel}.npz"
    if not path.is_file():
        raise ValidationError(
            f"channel: expected a SMAP/MSL channel such as 'P-1', found {channel!r} "
            f"(no file {str(path)!r})"
        )
    with np.load(path) as z:
        train = np.asarray(z["train"], dtype=np.float64)
        test = np.asarray(z["test"], dtype=np.float64)
        labels = np.asarray(z["label"], dtype=np.uint8)
    D = train.shape[1]
    return AnomalySeries(
        name=channel,
        dataset="SMAP" if D == 25 else "MSL",
        train=train,
        test=test,
        labels=labels,
        train_times=np.arange(len(train), dtype=np.float64),
        test_times=np.arange(len(train), len(train) + len(test), dtype=np.float64),
        features=["telemetry"] + [f"command_{j}" for j in range(1, D)],
        info={"source": str(path)},
    )
