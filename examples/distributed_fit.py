"""Fit on several processes from a Python script: PyTorch DDP under torchrun.

Run with ``torchrun --standalone --nproc-per-node 2 examples/distributed_fit.py FOLDER
[--out model/]``, where FOLDER is a Parquet dataset in the long layout (columns ``id``,
``t`` and the features; a folder of files, partitioned or sorted by id). Each process reads
only its own series (``gpvae.data.parquet.read_shard``) and fits with ``sharded=True``; the
scaler, the validation score and the interval calibration cover every process's series,
process 0 shows progress and writes the model. Without FOLDER, every process builds the
same synthetic series and passes all of them (``sharded=False``): the processes then train
exactly the one-process model, each taking its rows of every batch.

``python examples/distributed_fit.py`` (no torchrun) runs the same script in one process.
"""

from __future__ import annotations

import argparse

import numpy as np

from gpvae import GPVAE
from gpvae.data import parquet, to_series_set
from gpvae.training import distributed


def synthetic(n: int = 64, T: int = 40, D: int = 3, seed: int = 0) -> np.ndarray:
    """n noisy sinusoids (T steps, D features), 30% of the values missing."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)[None, :, None]
    X = np.sin(t / 4.0 + rng.uniform(0, 6, size=(n, 1, D))) + 0.1 * rng.normal(size=(n, T, D))
    X[rng.random(X.shape) < 0.3] = np.nan
    return X


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("folder", nargs="?", default=None, help="Parquet dataset (long layout)")
    parser.add_argument("--out", default="distributed-model", help="model folder to write")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    comm = distributed.current()  # None outside torchrun; sets up the process group inside
    rank, world = (0, 1) if comm is None else (comm.rank, comm.world_size)
    model = GPVAE(latent_dim=4, hidden=(64, 64), epochs=args.epochs, batch_size=16, seed=0)
    if args.folder is None:
        X = synthetic()
        model.fit(X)
        n_series = len(X)
    else:
        part = parquet.read_shard(args.folder, "id", rank, world)
        features = [c for c in part.columns if c not in ("id", "t")]
        series = to_series_set(part, id_col="id", time_col="t", feature_cols=features)
        model.fit(series, sharded=True)
        n_series = series.num_series
    model.save(args.out)  # process 0 writes, the others return at once
    if rank == 0:
        best = min(h["val_score"] for h in model.history_ or [])
        print(
            f"{world} process(es); process 0 held {n_series} series; best validation MAE "
            f"{best:.3f} after {len(model.history_ or [])} epochs; wrote {args.out}"
        )


if __name__ == "__main__":
    main()
