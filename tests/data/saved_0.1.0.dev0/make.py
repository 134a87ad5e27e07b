"""Wrote the model folders beside it with gpvae 0.1.0.dev0: ``python make.py OUT_DIR``."""

import sys

import numpy as np

from gpvae import GPVAE

rng = np.random.default_rng(0)
t = np.arange(40.0)
X = np.stack([np.stack([np.sin(t / 5 + i), np.cos(t / 7 + i), 0.1 * t], -1) for i in range(6)])
X[rng.random(X.shape) < 0.2] = np.nan
CASES = [
    ("gaussian", "matern32", "structured"),
    ("gaussian_gp", "matern52", "structured"),
    ("student_t", "rbf", "banded"),
]
for lik, kern, post in CASES:
    m = GPVAE(
        latent_dim=2,
        kernel=kern,
        likelihood=lik,
        posterior=post,
        hidden=(8,),
        epochs=2,
        progress=False,
        seed=1,
    ).fit(X)
    folder = f"{sys.argv[1]}/{lik}_{kern}_{post}"
    m.save(folder)
    np.save(f"{folder}/impute_mean.npy", m.impute(X[:2], num_samples=8).mean)
np.save(f"{sys.argv[1]}/X.npy", X[:2])
