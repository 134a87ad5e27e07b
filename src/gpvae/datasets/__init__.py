"""Real-data loaders, benchmark splits and missingness masks.

Data are read in place from the shared data directory (``GPVAE_DATA`` or ``../shared/data``,
see ``resolve_data_dir``); nothing is downloaded or copied into the project.
"""

from __future__ import annotations

from gpvae.datasets._paths import TimeSeriesData, resolve_data_dir
from gpvae.datasets.beijing_air import (
    BEIJING_FEATURES,
    BEIJING_STATION_COORDINATES,
    chronological_split,
    load_beijing_air,
    make_windows,
)
from gpvae.datasets.hmnist import (
    HMNIST,
    HMNISTSplit,
    load_mnist,
    make_hmnist,
    read_idx,
    rotate_images,
)
from gpvae.datasets.masking import hidden_rate, hide_blocks, hide_points
from gpvae.datasets.physionet2012 import (
    PHYSIONET_PLAUSIBLE_RANGES,
    PHYSIONET_STATIC,
    PHYSIONET_TIME_VARYING,
    load_physionet2012,
    physionet_plausibility_filter,
    random_split,
)

__all__ = [
    "BEIJING_FEATURES",
    "BEIJING_STATION_COORDINATES",
    "HMNIST",
    "PHYSIONET_PLAUSIBLE_RANGES",
    "PHYSIONET_STATIC",
    "PHYSIONET_TIME_VARYING",
    "HMNISTSplit",
    "TimeSeriesData",
    "chronological_split",
    "hidden_rate",
    "hide_blocks",
    "hide_points",
    "load_beijing_air",
    "load_mnist",
    "load_physionet2012",
    "make_hmnist",
    "make_windows",
    "physionet_plausibility_filter",
    "random_split",
    "read_idx",
    "resolve_data_dir",
    "rotate_images",
]
