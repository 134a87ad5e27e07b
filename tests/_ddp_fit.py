"""Fits of small float64 models, run by ``tests/test_distributed.py`` in one process and under
``torchrun --nproc-per-node 2`` (``python _ddp_fit.py OUT``: process 0 saves every case's
weights and history to OUT with ``torch.save``)."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch

from gpvae.batch import Batch
from gpvae.data import Scaler, SeriesSet, to_series_set
from gpvae.data.batching import shard_bounds
from gpvae.errors import ValidationError
from gpvae.estimator.assembly import ModelSpec, build_model
from gpvae.model import ELBOResult
from gpvae.training import FitSession, SessionConfig, TrainConfig, distributed, train
from gpvae.training.distributed import Communicator
from gpvae.training.loop import Step

#: (name, posterior, backend, batch size, options): 21 series in batches of 4 leave a last
#: batch of one series, so process 1 runs a stand-in step in every epoch. Options:
#: ``mask`` trains with artificial missingness (blocks hidden from the encoder, drawn for
#: the whole batch); ``hidden`` early-stops on hidden ground truth (as ``X_val_target``).
CASES: list[tuple[str, str, str, int, tuple[str, ...]]] = [
    ("structured-markov", "structured", "markov", 4, ()),
    ("structured-dense", "structured", "dense", 4, ()),
    ("diagonal", "diagonal", "auto", 5, ()),
    ("masked-hidden", "structured", "markov", 4, ("mask", "hidden")),
]
EPOCHS = 2


def data(n: int = 21, D: int = 3, seed: int = 0) -> list[np.ndarray]:
    """n ragged series (lengths 9-16) of smooth signals with 30% of the entries missing."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        T = int(rng.integers(9, 17))
        t = np.arange(T)[:, None]
        v = np.sin(t / 3.0 + rng.normal(size=D)) + 0.1 * rng.normal(size=(T, D))
        v[rng.random(v.shape) < 0.3] = np.nan
        v[0, 0] = 1.0  # every series has an observed entry
        out.append(v)
    return out


def _spec(posterior: str, backend: str, mask: bool = False) -> ModelSpec:
    return ModelSpec(
        latent_dim=2,
        kernel="matern32",
        posterior=posterior,
        backend=backend,
        likelihood="gaussian",
        encoder="mlp",
        decoder="mlp",
        hidden=(16,),
        beta=1.0,
        lengthscale=None,
        mask_rate=0.3 if mask else 0.0,
        mask_pattern="blocks",
        block_lengths=(2, 4),
    )


def initial(posterior: str, backend: str, options: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """The weights every fit starts from."""
    torch.manual_seed(0)
    return build_model(_spec(posterior, backend, "mask" in options), 3).double().state_dict()


def hidden(series: SeriesSet) -> tuple[SeriesSet, SeriesSet]:
    """(input, targets): a block of 3 steps of feature 1 hidden in every series whose
    entries there are observed (the X_val / X_val_target pair of the fit's validation)."""
    inputs, targets = [], []
    for v in series.values:
        keep, held = v.copy(), np.full_like(v, np.nan)
        held[2:5, 1] = v[2:5, 1]
        keep[2:5, 1] = np.nan
        inputs.append(keep)
        targets.append(held)
    return series.with_values(inputs), series.with_values(targets)


def fit(
    posterior: str,
    backend: str,
    batch_size: int,
    comm: Communicator | None,
    sharded: bool = False,
    checkpoint_dir: str | None = None,
    options: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Train a float64 model for EPOCHS epochs; its weights, history and steps."""
    series = to_series_set(data())
    scaler = Scaler().fit(series)
    train_set: SeriesSet = series
    validation = hidden(to_series_set(data(seed=1))) if "hidden" in options else None
    if sharded and comm is not None:
        start, stop = shard_bounds(series.num_series, comm.rank, comm.world_size)
        train_set = series.subset(np.arange(start, stop))
    torch.manual_seed(0)
    spec = _spec(posterior, backend, "mask" in options)
    model = build_model(spec, series.num_features).double()
    train = TrainConfig(epochs=EPOCHS, lr=1e-2, patience=None, progress=False)
    config = SessionConfig(
        train=train, batch_size=batch_size, seed=3, val_fraction=0.2, checkpoint_dir=checkpoint_dir
    )
    cpu = torch.device("cpu")
    session = FitSession(
        config, model, scaler, cpu, train_set, None, validation, comm=comm, sharded=sharded
    )
    state = session.run(resume=False)
    return {
        "weights": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "history": [{k: v for k, v in h.items() if k != "seconds"} for h in state.history],
        "steps": state.step,
    }


def estimator_hidden(sharded: bool, comm: Communicator | None) -> dict[str, Any]:
    """``GPVAE.fit`` (float32) early-stopping and calibrating on hidden ground truth
    (``X_val_target``), with training masks: its validation scores, interval scales and
    forecast-interval factors (horizon 2). With ``sharded``, each process passes its block
    of the series (training and validation)."""
    from gpvae import GPVAE

    X = data()
    val_in, val_target = hidden(to_series_set(data(seed=1)))
    Xv, Xt = list(val_in.values), list(val_target.values)
    if sharded and comm is not None:
        a, b = shard_bounds(len(X), comm.rank, comm.world_size)
        c, d = shard_bounds(len(Xv), comm.rank, comm.world_size)
        X, Xv, Xt = X[a:b], Xv[c:d], Xt[c:d]
    model = GPVAE(latent_dim=2, hidden=(16,), epochs=2, batch_size=4, patience=None,
                  mask_rate=0.2, seed=0, progress=False, device="cpu",
                  forecast_horizon=2)  # fmt: skip
    model.fit(X, X_val=Xv, X_val_target=Xt, sharded=sharded)
    return {
        "val_score": [h["val_score"] for h in model.history_ or []],
        "loss": [h["loss"] for h in model.history_ or []],
        "interval_scale": np.asarray(model.interval_scale_),
        "forecast_scale": model.forecast_scale_,
    }


def forecast_factors(
    comm: Communicator | None, sharded: bool = True, first: int | None = None
) -> np.ndarray | None:
    """The forecast-interval factors (horizon 2) of an untrained model on 21 series (the
    ``first`` ones only, if given); under ``comm`` each process passes its block of them
    (``sharded``) or all of them."""
    from gpvae.estimator.context import PredictContext
    from gpvae.estimator.forecast_calibration import calibrate_forecasts

    series = to_series_set(data(seed=2))
    mine = series if first is None else series.subset(np.arange(first))
    if sharded and comm is not None:
        mine = series.subset(np.arange(*shard_bounds(series.num_series, comm.rank, 2)))
    torch.manual_seed(0)
    model = build_model(_spec("structured", "markov"), series.num_features)
    scaler = Scaler().fit(series)
    ctx = PredictContext(model, scaler, torch.device("cpu"), 4, 3, np.ones(3), "structured")
    return calibrate_forecasts(ctx, mine, 2, comm=comm, sharded=sharded)


class MeanModel(torch.nn.Module):
    """log N(y | mu, 1) of the observed entries; its ``fail`` call (counting the DDP probe)
    gives a NaN bound or raises, on process ``rank`` only."""

    def __init__(self, rank: int, fail: int, how: str) -> None:
        super().__init__()
        self.mu = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
        self.rank, self.fail, self.how, self.calls = rank, fail, how, 0

    def elbo(
        self, batch: Batch, num_samples: int = 1, iwae: int = 1, generator: Any = None
    ) -> ELBOResult:
        self.calls += 1
        ll = (-0.5 * (batch.y - self.mu) ** 2 * batch.observed).sum(dim=(1, 2))
        if self.calls == self.fail and self.rank == 1:
            if self.how == "nan":
                ll = ll * float("nan")
            else:
                raise ValidationError("X: this process's batch is bad")
        return ELBOResult(elbo=ll, loglik=ll, kl=torch.zeros_like(ll))


def loop(comm: Communicator, how: str) -> tuple[MeanModel, Any]:
    """Three epochs of two steps of a MeanModel, each process with 2 of 4 series per step."""
    g = torch.Generator().manual_seed(1)
    y = torch.randn(8, 5, 3, generator=g, dtype=torch.float64) + 1.0
    model = MeanModel(comm.rank, fail=3, how=how)

    def parts(epoch: int) -> list[Step]:
        out = []
        for k in range(2):
            rows = y[4 * k : 4 * k + 4]
            mine = rows[2 * comm.rank : 2 * comm.rank + 2]
            out.append(Step(Batch.from_tensors(mine), int(rows.numel())))
        return out

    config = TrainConfig(epochs=3, lr=0.05, patience=None, progress=False)
    state, optimizer = train(model, parts, config, comm=comm)
    return model, (state, optimizer)


def main(out: str) -> None:
    comm = distributed.current()
    if comm is None or comm.world_size != 2:
        raise SystemExit("run me under torchrun with 2 processes")
    results: dict[str, Any] = {}
    for name, posterior, backend, batch_size, options in CASES:
        results[name] = fit(posterior, backend, batch_size, comm, options=options)
    results["estimator_hidden"] = estimator_hidden(False, comm)
    own = estimator_hidden(True, comm)
    results["estimator_hidden_sharded"] = own
    results["estimator_hidden_sharded_scores"] = comm.all_gather(own["val_score"])
    results["estimator_hidden_sharded_forecast"] = comm.all_gather(own["forecast_scale"])
    # forecast-interval factors of every process's origins, the same on every process
    for how, sharded in (("own", True), ("all", False)):
        results[f"forecast_factors_{how}"] = comm.all_gather(forecast_factors(comm, sharded))
    # each process holding its own series: the same result twice for the same world size
    first = fit("structured", "markov", 4, comm, sharded=True)
    second = fit("structured", "markov", 4, comm, sharded=True)
    results["sharded"] = first
    results["sharded_again"] = second
    gathered = comm.all_gather({k: v.sum().item() for k, v in first["weights"].items()})
    results["sharded_ranks_agree"] = all(g == gathered[0] for g in gathered)
    # a NaN loss on process 1 only: both roll back and halve the learning rate
    model, (state, optimizer) = loop(comm, "nan")
    mus = comm.all_gather(model.mu.detach().clone())
    results["nan_on_one_process"] = {
        "bad_steps": state.bad_steps,
        "agree": bool(torch.equal(mus[0], mus[1])),
        "lr": optimizer.param_groups[0]["lr"],
    }
    # processes that should hold the same series but do not: both refuse
    try:
        bad = to_series_set(data(seed=comm.rank))
        FitSession(
            SessionConfig(TrainConfig(epochs=1, progress=False), 4, 0, 0.0),
            build_model(_spec("structured", "markov"), 3),
            Scaler().fit(bad),
            torch.device("cpu"),
            bad,
            None,
            comm=comm,
        )
        results["other_series"] = "no error"
    except ValidationError as err:
        results["other_series"] = str(err)
    # fit_threshold with each process's own series but sharded=False: both refuse (each
    # scored its block of other data and the threshold came from half of them, silently)
    try:
        from gpvae import GPVAE

        est = GPVAE(latent_dim=2, hidden=(8,), epochs=1, batch_size=4, progress=False)
        est.fit(data())  # the same series on both processes
        est.fit_threshold(data(seed=10 + comm.rank), num_samples=2, num_folds=2)
        results["threshold_other_series"] = "no error"
    except ValidationError as err:
        results["threshold_other_series"] = str(err)
    # an error on process 1 only: both raise it
    try:
        loop(comm, "raise")
        results["error_on_one_process"] = "no error"
    except ValidationError as err:
        results["error_on_one_process"] = f"{type(err).__name__}: {err}"
    if comm.is_main:
        torch.save(results, out)


if __name__ == "__main__":
    main(sys.argv[1])
