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


def test_loading_takes_no_path_from_the_folder(tmp_path: Path) -> None:
    """A crafted config.json cannot send a later fit's checkpoint writes elsewhere."""
    import json
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(DATA / FOLDERS[0], folder)
    config = json.loads((folder / "config.json").read_text())
    target = tmp_path / "elsewhere"
    config["config"]["estimator"]["checkpoint_dir"] = str(target)
    (folder / "config.json").write_text(json.dumps(config))
    model = GPVAE.load(folder)
    assert model.checkpoint_dir is None
    model.epochs = 1
    model.fit(np.load(DATA / "X.npy"))
    assert not target.exists()


def test_saved_config_holds_no_checkpoint_path(tmp_path: Path) -> None:
    import json

    X = np.load(DATA / "X.npy")
    model = GPVAE(latent_dim=2, hidden=(8,), epochs=1, progress=False)
    model.checkpoint_dir = str(tmp_path / "ckpt")
    model.fit(X).save(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["config"]["estimator"]["checkpoint_dir"] is None
    assert (tmp_path / "ckpt").is_dir()  # the fit itself did use it
