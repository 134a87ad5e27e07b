"""Model folders written by an earlier gpvae still load and give the same imputation.

The folders under ``tests/data/saved_0.1.0.dev0`` were written by gpvae 0.1.0.dev0 before
the package was reorganised (``make.py`` beside them is the script that wrote them); each
holds the imputed means that version returned for ``X.npy``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gpvae import GPVAE

DATA = Path(__file__).parent / "data" / "saved_0.1.0.dev0"
FOLDERS = sorted(p.name for p in DATA.iterdir() if p.is_dir())


def test_folders_present() -> None:
    assert len(FOLDERS) == 3


@pytest.mark.parametrize("name", FOLDERS)
def test_old_model_loads_and_imputes_the_same(name: str) -> None:
    model = GPVAE.load(DATA / name)
    X = np.load(DATA / "X.npy")
    expected = np.load(DATA / name / "impute_mean.npy")
    got = model.impute(X, num_samples=8).mean
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    observed = ~np.isnan(X)
    assert np.array_equal(got[observed], X[observed])
