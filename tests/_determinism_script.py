"""Fit a tiny GPVAE and print SHA-256 digests of everything it computes, as JSON.

Run by tests/test_determinism.py in fresh subprocesses (and imported there for the
in-process digests): the same seed and inputs must give the same digests everywhere on the
CPU.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

import numpy as np
import torch


def data(seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Ragged, irregular, unsorted series with gaps (3 features)."""
    rng = np.random.default_rng(seed)
    X, times = [], []
    for T in (7, 15, 11, 30):
        t = np.cumsum(rng.uniform(0.5, 1.5, size=T))
        x = np.sin(t[:, None] / 3 + rng.uniform(0, 6)) * np.arange(1, 4) + 5.0
        x = x + 0.05 * rng.standard_normal((T, 3))
        x[rng.random((T, 3)) < 0.3] = np.nan
        x[0, 0] = 5.0
        perm = rng.permutation(T)
        X.append(x[perm])
        times.append(t[perm])
    return X, times


def _digest(*arrays: Any) -> str:
    h = hashlib.sha256()
    for a in arrays:
        if isinstance(a, torch.Tensor):
            a = a.detach().cpu().contiguous().numpy()
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def digests(seed: int = 0) -> dict[str, str]:
    """Fit, impute, forecast, sample, score; digest each result."""
    from gpvae import GPVAE

    X, times = data()
    est = GPVAE(
        latent_dim=2, hidden=(16,), epochs=3, batch_size=2, progress=False, device="cpu",
        seed=seed,
    )  # fmt: skip
    est.fit(X, times)
    state = est.model_.state_dict()
    history = [{k: v for k, v in h.items() if k != "seconds"} for h in est.history_]
    imp = est.impute(X, times, num_samples=20, return_samples=True)
    fc = est.forecast(X, times, horizon=4, num_samples=20)
    draws = est.sample(np.arange(12.0) * 0.9, num_samples=3)
    scores = est.anomaly_scores(X, times, num_samples=10)
    mean, var = est.latent(X, times)
    return {
        "state": _digest(*(state[k] for k in sorted(state))),
        "history": hashlib.sha256(json.dumps(history, sort_keys=True).encode()).hexdigest(),
        "impute": _digest(*imp.mean, *imp.lower, *imp.upper, *imp.samples),
        "forecast": _digest(fc.mean, fc.lower, fc.upper, fc.times),
        "sample": _digest(draws),
        "anomaly": _digest(*scores.entry, *scores.step),
        "latent": _digest(*mean, *var),
    }


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(json.dumps(digests(int(sys.argv[1]) if len(sys.argv) > 1 else 0), sort_keys=True))
