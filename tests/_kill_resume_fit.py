"""A resumable fit for tests/test_kill_resume.py, killed with SIGKILL at random moments.

``python _kill_resume_fit.py data OUT.csv`` writes the training data as a long CSV (for the
``gpvae fit --resume`` run). ``python _kill_resume_fit.py fit CKPT_DIR MODEL_DIR EPOCHS``
fits with ``checkpoint_dir=CKPT_DIR`` and ``resume=True`` (continuing from the checkpoint
when there is one), saves the model to MODEL_DIR and prints ``done <epochs>``. It prints
``ready`` once the imports are done, so the caller can time its kills from there.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

#: Settings shared by the killed runs and the uninterrupted reference fit.
OPTIONS: dict[str, Any] = {
    "latent_dim": 2,
    "hidden": (32,),
    "batch_size": 8,
    "patience": None,
    "seed": 0,
    "progress": False,
    "device": "cpu",
    "checkpoint_every": 1,
}


def data(n: int = 48, T: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, T, 3) sinusoids with 25% missing entries, and the shared times (T,)."""
    rng = np.random.default_rng(seed)
    t = np.arange(T, dtype=np.float64) * 0.5
    X = np.sin(t[None, :, None] / 2 + rng.uniform(0, 6, size=(n, 1, 1))) * np.array([1, 2, 3])
    X = X + 0.1 * rng.standard_normal(X.shape)
    X[rng.random(X.shape) < 0.25] = np.nan
    X[:, 0, 0] = 0.0
    return X, t


def frame() -> Any:
    """The same data as a long table: id, t, a, b, c."""
    import pandas as pd

    X, t = data()
    rows = [
        {"id": f"s{i}", "t": t[k], "a": X[i, k, 0], "b": X[i, k, 1], "c": X[i, k, 2]}
        for i in range(X.shape[0])
        for k in range(X.shape[1])
    ]
    return pd.DataFrame(rows)


def main(argv: list[str]) -> None:
    if argv[0] == "data":
        frame().to_csv(argv[1], index=False)
        return
    import torch

    from gpvae import GPVAE

    torch.set_num_threads(1)
    ckpt_dir, model_dir, epochs = argv[1], argv[2], int(argv[3])
    X, t = data()
    print("ready", flush=True)
    est = GPVAE(**OPTIONS, epochs=epochs, checkpoint_dir=ckpt_dir)
    est.fit(X, t, resume=True)
    est.save(model_dir)
    print(f"done {len(est.history_)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
