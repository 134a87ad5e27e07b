"""NAB and SMAP/MSL loaders (skipped when the shared data directory is absent)."""

from __future__ import annotations

import numpy as np
import pytest

from gpvae.datasets import resolve_data_dir
from gpvae.datasets.anomaly import load_nab, load_smap_msl, nab_names, smap_msl_channels
from gpvae.errors import ValidationError

try:
    DATA = resolve_data_dir()
except ValidationError:
    DATA = None
nab = pytest.mark.skipif(
    DATA is None or not (DATA / "nab").is_dir(), reason="shared data nab/ not found"
)
smap = pytest.mark.skipif(
    DATA is None or not (DATA / "smap_msl").is_dir(), reason="shared data smap_msl/ not found"
)


@nab
def test_nab_series_labels_and_probationary_split() -> None:
    names = nab_names()
    assert len(names) == 47
    assert "realKnownCause/nyc_taxi" in names
    s = load_nab("realKnownCause/nyc_taxi")
    n = len(s.train) + len(s.test)
    assert n == 10320
    assert len(s.train) == int(0.15 * n)
    assert s.train.shape[1] == s.test.shape[1] == 1
    assert s.test_times[0] > s.train_times[-1]
    # five labelled windows in the scored part, none in the probationary part
    runs = np.flatnonzero(np.diff(np.concatenate([[0], s.labels, [0]])) == 1)
    assert len(runs) == 5
    assert s.train_labels is not None
    assert s.train_labels.sum() == 0
    with pytest.raises(ValidationError, match="name"):
        load_nab("realKnownCause/no_such_series")
    with pytest.raises(ValidationError, match="train_fraction"):
        load_nab("realKnownCause/nyc_taxi", train_fraction=1.5)


@smap
def test_smap_msl_channels() -> None:
    chans = smap_msl_channels()
    assert len(chans) == 81  # the redistributed set has 81 of the 82 channels
    p1 = load_smap_msl("P-1")
    assert p1.dataset == "SMAP"
    assert p1.train.shape[1] == 25
    assert len(p1.labels) == len(p1.test)
    assert 0 < p1.labels.mean() < 0.5
    c1 = load_smap_msl("C-1")
    assert c1.dataset == "MSL"
    assert c1.train.shape[1] == 55
    assert c1.features[0] == "telemetry"
    with pytest.raises(ValidationError, match="channel"):
        load_smap_msl("Z-99")
