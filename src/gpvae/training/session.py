"""One fit session: validation split and score, checkpoints, resume.

A :class:`FitSession` takes a model, the data and a :class:`SessionConfig` (it knows nothing
of the estimator above it). The loop itself is :func:`gpvae.training.train`; this module
prepares what it needs (seeded batches per epoch, the validation score, the epoch-end hook)
and writes / reads the crash-safe checkpoint: model, best weights so far, optimiser state,
the ELBO's random-generator state and the training state, in one safetensors file replaced
atomically (:func:`gpvae.io.save_checkpoint`). Resuming needs the same data (checked by a
fingerprint); batches of epoch e are drawn with a seed derived from (seed, e), so a resumed
fit sees exactly the batches and draws an uninterrupted one would.

Distributed (``comm``, under torchrun), in one of two ways:

- every process holds every series (``sharded=False``): the validation split and the batches
  are the one-process ones; each process takes its rows of every batch
  (:func:`gpvae.data.batching.sharded_batch_indices`), padded to the whole batch's length, and
  draws the whole batch's noise (:func:`gpvae.rng.batch_rows`), so the fit is the one-process
  fit up to round-off, for any number of processes;
- every process holds only its own series (``sharded=True``, e.g. read from a Parquet
  dataset): each shuffles its own series every epoch and takes its share of every batch
  (:func:`gpvae.data.batching.local_batch_indices`), with its own validation split and
  generator (seeded by the seed and its rank); the fingerprint covers every process's data.

Either way the validation score sums every process's held-out entries, process 0 alone
writes the checkpoint (with every process's generator state), and a resumed fit reads it on
process 0 and broadcasts it.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gpvae.batch import Batch
from gpvae.data import Scaler, SeriesSet, batch_indices, make_batches
from gpvae.data.batching import (
    local_batch_indices,
    local_num_steps,
    shard_bounds,
    sharded_batch_indices,
)
from gpvae.errors import DistributedError, ModelFileError, NumericalError, ValidationError
from gpvae.io import (
    check_state_dict,
    flatten_state,
    json_number,
    load_checkpoint,
    save_checkpoint,
    unflatten_state,
)
from gpvae.model import GPVAEModel
from gpvae.rng import seed_for
from gpvae.training.distributed import Communicator
from gpvae.training.loop import Step, TrainConfig, TrainState, make_optimizer, train

__all__ = ["CHECKPOINT_FILE", "FitSession", "SessionConfig", "check_same_series"]

#: The checkpoint's file name inside ``checkpoint_dir``.
CHECKPOINT_FILE = "checkpoint.safetensors"

#: A fit warns when its kept weights' validation MAE is more than this many times the MAE
#: of filling every held-out entry with its feature's training mean (a diverged fit: 852
#: against 0.87 at lr=10 on the audit's sines). Not 1: a barely trained model (a few
#: epochs of a small test fit) scores about the mean fill's MAE, up to 1.07 times it.
USELESS_RATIO = 1.25


@dataclass(frozen=True)
class SessionConfig:
    """What a fit session needs besides the model and the data.

    Attributes:
        train: the loop's settings (epochs, learning rate, patience, ...).
        batch_size: series per training batch.
        seed: seed of the validation split, the batch order and the ELBO's draws.
        val_fraction: share of observed entries held out as validation targets (0: none).
        checkpoint_dir: folder of the crash-safe checkpoint, or None.
        checkpoint_every: write the checkpoint every this many epochs (and at the end).
        settings: the fit's settings a resumed fit must share (JSON), recorded in the
            checkpoint; None: not checked.
    """

    train: TrainConfig
    batch_size: int
    seed: int
    val_fraction: float
    checkpoint_dir: str | os.PathLike[str] | None = None
    checkpoint_every: int = 1
    settings: dict[str, Any] | None = None


def _read_checkpoint(file: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """:func:`load_checkpoint`, its errors naming ``resume`` (the argument that reads it)."""
    try:
        return load_checkpoint(file)
    except ModelFileError as err:
        raise ModelFileError(f"resume: {err}") from None


def _changed_settings(saved: Any, now: dict[str, Any] | None) -> str | None:
    """The settings that differ between a checkpoint written with ``saved`` and ``now``
    (``lr changed (lr: 0.001 then 0.002)``), which keep it from being resumed (the weights
    would continue under other settings, and the optimiser's state would keep the old
    learning rates), or None (also when either is unknown).

    A setting missing from ``saved`` whose value ``now`` is None is unchanged: an argument
    added after the checkpoint was written (such as ``noise_lr``), whose None keeps the
    behaviour of the fits before it."""
    if not isinstance(saved, dict) or now is None or saved == now:
        return None
    changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if not changed:  # only keys missing from ``saved`` whose value is None now
        return None
    shown = "; ".join(f"{k}: {saved.get(k)!r} then {now.get(k)!r}" for k in changed[:3])
    return f"{', '.join(changed)} changed ({shown})"


def _warn_no_validation(
    val_set: SeriesSet | None, train_set: SeriesSet, val_fraction: float
) -> None:
    """Say that no validation entry could be held out (of ``val_set``, X_val, or else of the
    training series), so that early stopping and the kept epoch go by the training loss."""
    if val_set is not None:
        found = (
            "no observed entry (all NaN)"
            if val_set.num_observed == 0
            else f"{val_set.num_observed} observed entries, too few to hold any out"
        )
        where = f"X_val: expected observed entries to validate on, found {found} in its "
        where += f"{val_set.num_series} series"
    else:
        where = (
            f"val_fraction: expected observed entries of X to hold out a share of "
            f"{val_fraction:g} of as validation targets, found {train_set.num_observed} in "
            f"{train_set.num_series} series, too few to hold any out"
        )
    warnings.warn(
        f"{where}; the fit is not validated: early stopping and the kept epoch go by the "
        "training loss instead (the history's 'validated' is 0.0)",
        UserWarning,
        stacklevel=4,
    )


def _fingerprint(*sets: SeriesSet | None) -> str:
    h = hashlib.sha256()
    for ss in sets:
        if ss is None:
            h.update(b"none")
            continue
        for v, t in zip(ss.values, ss.times):
            h.update(np.ascontiguousarray(v).tobytes())
            h.update(np.ascontiguousarray(t).tobytes())
    return h.hexdigest()


def _other_series(comm: Communicator, fingerprint: str) -> str | None:
    """The error when the processes' data (their ``fingerprint``) differ, else None."""
    prints = comm.all_gather(fingerprint)
    other = next((r for r, fp in enumerate(prints) if fp != prints[0]), None)
    if other is None:
        return None
    return (
        f"X: expected the same series in every process (sharded=False), found other "
        f"series in process {other} than in process 0; pass sharded=True when each "
        "process holds its own series"
    )


def _raise_everywhere(problem: str | None) -> None:
    if problem is not None:
        err = ValidationError(problem)
        err.synchronized = True  # type: ignore[attr-defined]  # every process raises it
        raise err


def check_same_series(comm: Communicator, data: SeriesSet) -> None:
    """Raise on every process when processes that should all hold the same series (not
    sharded) do not (as :class:`FitSession` does for a fit)."""
    _raise_everywhere(_other_series(comm, _fingerprint(data)))


def _check_processes(
    config: SessionConfig, comm: Communicator, sharded: bool, fingerprint: str
) -> None:
    """Raise on every process when the batch size is below the number of processes, or
    when processes that should all hold the same series (not ``sharded``) do not."""
    problem = None
    if config.batch_size < comm.world_size:
        problem = (
            f"batch_size: expected at least the number of processes ({comm.world_size}), "
            f"found {config.batch_size}"
        )
    elif not sharded:
        problem = _other_series(comm, fingerprint)
    _raise_everywhere(problem)


class FitSession:
    """One fit: data split, scoring, checkpoints, resume.

    Args:
        config: the session's settings.
        model: the model to train (its parameters' dtype is the batches' dtype).
        scaler: fitted on the training series (of every process).
        device: where the model lives.
        train_set, val_set: the training and optional validation series (this process's
            own when ``sharded``).
        validation: (input, targets) chosen by the caller (e.g. hidden ground truth: the
            targets are entries missing from the input; this process's own when
            ``sharded``); else the split follows ``val_fraction`` (random held-out observed
            entries of ``val_set`` or of the training data).
        comm: the job's communicator (None: one process).
        sharded: each process holds only its own series (else every process holds all).
    """

    def __init__(
        self,
        config: SessionConfig,
        model: GPVAEModel,
        scaler: Scaler,
        device: torch.device,
        train_set: SeriesSet,
        val_set: SeriesSet | None,
        validation: tuple[SeriesSet, SeriesSet] | None = None,
        *,
        comm: Communicator | None = None,
        sharded: bool = False,
    ) -> None:
        self.config, self.model, self.scaler, self.device = config, model, scaler, device
        self.comm = comm
        self.sharded = bool(sharded) and comm is not None
        rank = () if not self.sharded or comm is None else (comm.rank,)
        # a hash of the data, read by checkpoints (resume checks them against it) and by a
        # distributed fit's processes; not made otherwise (it reads every value once)
        self.fingerprint: str | None = None
        if comm is not None or config.checkpoint_dir is not None:
            self.fingerprint = _fingerprint(train_set, val_set, *(validation or ()))
        if comm is not None and self.fingerprint is not None:
            _check_processes(config, comm, self.sharded, self.fingerprint)
        if self.sharded and comm is not None and self.fingerprint is not None:
            prints = comm.all_gather(self.fingerprint)
            self.fingerprint = hashlib.sha256("/".join(prints).encode()).hexdigest()
        self.dtype = next(iter(model.parameters())).dtype
        split = torch.Generator().manual_seed(seed_for(config.seed, 10, *rank))
        scaled_train = scaler.transform(train_set)
        self.val_input: SeriesSet | None = None
        self.val_target: SeriesSet | None = None
        if validation is not None:
            self.train_input = scaled_train
            self.val_input, self.val_target = (scaler.transform(s) for s in validation)
        elif val_set is not None:
            scaled_val = scaler.transform(val_set)
            if config.val_fraction > 0:
                self.val_input, self.val_target = scaled_val.hold_out(
                    config.val_fraction, generator=split
                )
            else:
                self.val_input, self.val_target = scaled_val, scaled_val
            self.train_input = scaled_train
        elif config.val_fraction > 0:
            self.train_input, held = scaled_train.hold_out(config.val_fraction, generator=split)
            self.val_input, self.val_target = self.train_input, held
        else:
            self.train_input = scaled_train
        n_held = 0 if self.val_target is None else self.val_target.num_observed
        if self.sharded and comm is not None:
            n_held = int(comm.all_reduce([n_held])[0])
        if n_held == 0:
            self.val_input = self.val_target = None  # too little data to hold any out
            if self.is_main and (val_set is not None or config.val_fraction > 0):
                _warn_no_validation(val_set, train_set, config.val_fraction)
        self.generator = torch.Generator(device=device).manual_seed(
            seed_for(config.seed, 11, *rank)
        )
        self.best: dict[str, Tensor] | None = None
        #: the training state: the loop's so far when interrupted, else the finished one
        self.state: TrainState | None = None
        self.saved_epoch: int | None = None  # the epoch of the checkpoint this run wrote last
        self.path = None if config.checkpoint_dir is None else Path(config.checkpoint_dir)
        self.num_steps = math.ceil(self.train_input.num_series / config.batch_size)
        if self.sharded and comm is not None:
            own = local_num_steps(
                self.train_input.num_series, config.batch_size, comm.rank, comm.world_size
            )
            self.num_steps = int(comm.all_reduce([own], op="max")[0])
        self._observed = np.array([int((~np.isnan(v)).sum()) for v in self.train_input.values])

    @property
    def is_main(self) -> bool:
        """True in the process that reports and writes files (process 0, or the only one)."""
        return self.comm is None or self.comm.is_main

    def local_validation(self) -> tuple[SeriesSet, SeriesSet] | None:
        """This process's share of the validation inputs and targets (all of them in one
        process), or None when it has none."""
        if self.val_input is None or self.val_target is None:
            return None
        if self.comm is None or self.sharded:
            return self.val_input, self.val_target
        start, stop = shard_bounds(self.val_input.num_series, self.comm.rank, self.comm.world_size)
        if stop == start:
            return None
        idx = np.arange(start, stop)
        return self.val_input.subset(idx), self.val_target.subset(idx)

    # -- pieces handed to gpvae.training.train

    def batches(self, epoch: int) -> Iterator[Batch | Step]:
        """The shuffled training batches of ``epoch`` (seeded by the estimator seed and it);
        in a distributed fit, this process's parts of them."""
        if self.comm is not None:
            return self._parts(epoch, self.comm)
        return make_batches(
            self.train_input,
            self.config.batch_size,
            shuffle=True,
            seed=seed_for(self.config.seed, 12, epoch),
            dtype=self.dtype,
            device=self.device,
            time_shift=self.scaler.time_origin_,
            time_scale=self.scaler.time_step_,
            shift_rows=True,
        )

    def _batch(self, idx: np.ndarray, length: int | None = None) -> Batch:
        return self.train_input.to_batch(
            idx,
            dtype=self.dtype,
            device=self.device,
            time_shift=self.scaler.time_origin_,
            time_scale=self.scaler.time_step_,
            shift_rows=True,
            length=length,
        )

    def _parts(self, epoch: int, comm: Communicator) -> Iterator[Step]:
        """This process's :class:`~gpvae.training.loop.Step` parts of epoch ``epoch``."""
        B, rank, world = self.config.batch_size, comm.rank, comm.world_size
        if not self.sharded:
            seed = seed_for(self.config.seed, 12, epoch)
            plan = sharded_batch_indices(
                self.train_input.num_series, B, rank, world, shuffle=True, seed=seed
            )
            lengths = self.train_input.lengths
            for part in plan:
                whole = part.whole if part.whole is not None else part.indices
                n_obs = int(self._observed[whole].sum())
                length = int(lengths[whole].max())
                if len(part.indices):
                    batch = self._batch(part.indices, length)
                    yield Step(batch, n_obs, 1.0, part.rows, len(whole))
                else:  # a stand-in: this process has no series in this batch
                    stand_in = self._batch(whole[:1], length)
                    yield Step(stand_in, n_obs, 0.0, np.zeros(1, np.int64), len(whole))
            return
        seed = seed_for(self.config.seed, 12, epoch, rank)
        n_local = self.train_input.num_series
        plan = local_batch_indices(n_local, B, rank, world, self.num_steps, seed=seed)
        counts = comm.all_reduce([float(self._observed[p.indices].sum()) for p in plan])
        for part, n_obs in zip(plan, counts):
            if len(part.indices):
                yield Step(self._batch(part.indices), int(n_obs))
            else:
                yield Step(self._batch(np.zeros(1, np.int64)), int(n_obs), 0.0)

    def val_score(self) -> float:
        """MAE (standardised) of the posterior-mean imputation of the held-out entries (of
        every process)."""
        if self.val_input is None or self.val_target is None:
            return math.nan
        if self.comm is None:
            total, count = self._val_sums(self.val_input, self.val_target)
            return total / max(count, 1)
        sums, error = (0.0, 0), None
        try:
            local = self.local_validation()
            if local is not None:
                sums = self._val_sums(*local)
        except Exception as err:  # reported to every process by check
            error = err
        self.comm.check(error)
        total, count = self.comm.all_reduce(list(sums))
        return float(total) / max(float(count), 1.0)

    def _val_sums(self, inputs: SeriesSet, targets: SeriesSet) -> tuple[float, int]:
        """Summed absolute error and number of the held-out entries of ``targets``."""
        total, count = 0.0, 0
        n = inputs.num_series
        for idx in batch_indices(n, self.config.batch_size):
            batch = inputs.to_batch(
                idx,
                dtype=self.dtype,
                device=self.device,
                time_shift=self.scaler.time_origin_,
                time_scale=self.scaler.time_step_,
                shift_rows=True,
            )
            target, _, _ = targets.padded(indices=idx)  # (B, N, D), NaN = not a target
            with torch.no_grad():
                z_mean, _ = self.model.encode(batch).marginals()  # (B, N, L)
                params = self.model.decode(z_mean, batch)
                pred = self.model.predictive(params, batch)[0]  # (B, N, D)
            err = np.abs(pred.double().cpu().numpy() - target)
            keep = ~np.isnan(target)
            total += float(err[keep].sum())
            count += int(keep.sum())
        return total, count

    def on_epoch_end(self, state: TrainState, optimizer: torch.optim.Optimizer) -> None:
        """Keep the best weights; write the checkpoint every ``checkpoint_every`` epochs and
        at the end."""
        if state.best_epoch == state.epoch:
            self.best = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        patience = self.config.train.patience
        stopped_early = patience is not None and state.epoch - state.best_epoch >= patience
        finished = stopped_early or state.epoch >= self.config.train.epochs
        if self.path is not None and (state.epoch % self.config.checkpoint_every == 0 or finished):
            if self.comm is None:
                self.write_checkpoint(state, optimizer, stopped_early)
                return
            states = [self.generator.get_state()]
            if self.sharded:
                states = self.comm.all_gather(self.generator.get_state())
            with self.comm.together():  # a failed write stops every process
                if self.comm.is_main:
                    self.write_checkpoint(state, optimizer, stopped_early, states)

    # -- checkpoints

    def write_checkpoint(
        self,
        state: TrainState,
        optimizer: torch.optim.Optimizer,
        stopped_early: bool,
        generator_states: list[Tensor] | None = None,
    ) -> None:
        """Atomically write model, best weights, optimiser, RNG and training state.

        ``generator_states``: every process's ELBO generator state (distributed), else this
        process's generator's is written.
        """
        if self.path is None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        tensors = {f"model/{k}": v for k, v in self.model.state_dict().items()}
        if self.best is not None:
            tensors.update({f"best/{k}": v for k, v in self.best.items()})
        opt_tensors, skeleton = flatten_state(optimizer.state_dict(), prefix="optim/")
        tensors.update(opt_tensors)
        states = generator_states or [self.generator.get_state()]
        tensors["rng/elbo"] = states[0]
        for r, st in enumerate(states[1:], start=1):
            tensors[f"rng/elbo.{r}"] = st
        state_json = state.to_json()
        state_json["history"] = [
            {k: json_number(v) for k, v in h.items()} for h in state_json["history"]
        ]
        meta = {
            "kind": "gpvae.GPVAE.fit",
            "fingerprint": self.fingerprint,
            "train_state": state_json,
            "optimizer": skeleton,
            "has_best": self.best is not None,
            "stopped_early": stopped_early,
            "scaler": self.scaler.state_dict(),
            "world_size": 1 if self.comm is None else self.comm.world_size,
            "sharded": self.sharded,
            "settings": self.config.settings,
            "epochs": self.config.train.epochs,  # what the fit was to run (finished or not)
        }
        save_checkpoint(self.path / CHECKPOINT_FILE, tensors, meta)
        self.saved_epoch = state.epoch

    def restore(self) -> tuple[TrainState, torch.optim.Optimizer, bool] | None:
        """Load the checkpoint into the model: (state, optimiser, finished), or None if there
        is no checkpoint yet.

        Raises:
            ValidationError: naming ``resume`` when the checkpoint is of other data.
            ModelFileError: a corrupt checkpoint.
        """
        if self.path is None:
            return None
        file = self.path / CHECKPOINT_FILE
        loaded: tuple[dict[str, Tensor], dict[str, Any]] | None = None
        if self.comm is None:
            loaded = _read_checkpoint(file) if file.is_file() else None
        else:  # process 0 reads, every process gets its content (no shared disk needed)
            with self.comm.together():
                if self.comm.is_main and file.is_file():
                    loaded = _read_checkpoint(file)
            loaded = self.comm.broadcast(loaded)
        if loaded is None:
            return None
        tensors, meta = loaded
        world = 1 if self.comm is None else self.comm.world_size
        problem = None
        # the number of processes first: a fit whose processes held their own series has a
        # fingerprint of every process's part, which no other number of processes matches
        ours = meta.get("kind") == "gpvae.GPVAE.fit"
        if ours and meta.get("sharded", False) and meta.get("world_size", 1) != world:
            problem = (
                f"resume: expected {meta.get('world_size')} processes (as in the interrupted "
                f"fit, whose processes each held their own series), found {world}"
            )
        elif not ours:
            problem = (
                f"resume: expected a checkpoint of a gpvae fit in {self.path}, found one "
                "written by another program"
            )
        else:  # changed settings first: some (window, difference, ...) change the data too
            changed = _changed_settings(meta.get("settings"), self.config.settings)
            if changed is not None:
                problem = (
                    f"resume: expected the settings of the interrupted fit, found {changed}; "
                    "resume with its settings, or fit afresh without resume"
                )
            elif meta.get("fingerprint") != self.fingerprint:
                problem = (
                    f"resume: expected a checkpoint of a fit on the same data in {self.path}, "
                    "found one written for other data"
                )
        if problem is not None:  # every process finds it alike
            err = ValidationError(problem)
            err.synchronized = self.comm is not None  # type: ignore[attr-defined]
            raise err

        def part(prefix: str) -> dict[str, Tensor]:
            return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

        model_state = part("model/")
        check_state_dict(model_state, {k: v.shape for k, v in self.model.state_dict().items()})
        try:
            self.model.load_state_dict(model_state)
            if meta.get("has_best"):
                self.best = {k: v.to(self.device) for k, v in part("best/").items()}
            optimizer = make_optimizer(self.model, self.config.train)
            optimizer.load_state_dict(unflatten_state(tensors, meta["optimizer"]))
            rank = 0 if self.comm is None else self.comm.rank
            self.generator.set_state(tensors.get(f"rng/elbo.{rank}", tensors["rng/elbo"]))
            history = [
                {k: (math.nan if v is None else v) for k, v in h.items()}
                for h in meta["train_state"]["history"]
            ]
            state = TrainState.from_json({**meta["train_state"], "history": history})
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise ModelFileError(
                f"checkpoint {file.name}: expected a complete gpvae fit checkpoint, found "
                f"error {err!r}"
            ) from None
        finished = self._finished(state, file)
        self.saved_epoch = state.epoch
        return state, optimizer, finished

    def _finished(self, state: TrainState, file: Path) -> bool:
        """Whether the checkpoint's run is already over under this run's ``epochs`` and
        ``patience``: a larger ``epochs`` or ``patience`` continues it (exactly as an
        uninterrupted fit with them would have gone on), the checkpoint's own settings
        finish it.

        Raises:
            ValidationError: naming ``epochs`` or ``patience`` when the checkpoint ran past
                where a fit with them would have stopped.
        """
        epochs, patience = self.config.train.epochs, self.config.train.patience
        if state.epoch > epochs:
            raise ValidationError(
                f"epochs: expected at least the {state.epoch} epochs the checkpoint "
                f"{file} already ran (resume continues a fit, never shortens it), found "
                f"{epochs}; fit afresh without resume for fewer"
            )
        if patience is None:
            return state.epoch >= epochs
        best, best_epoch = math.inf, 0  # the loop's early stopping, replayed on the history
        for epoch, record in enumerate(state.history, start=1):
            score = float(record.get("val_score", math.nan))
            if math.isfinite(score) and score < best:
                best, best_epoch = score, epoch
            if epoch - best_epoch >= patience:
                if epoch < state.epoch:
                    raise ValidationError(
                        f"patience: expected at least the patience with which the checkpoint "
                        f"{file} ran {state.epoch} epochs, found {patience}, which stops after "
                        f"epoch {epoch}; resume with a larger patience, or fit afresh without "
                        "resume"
                    )
                return True
        return state.epoch >= epochs

    def remove_stale_temps(self) -> None:
        """Delete temporary checkpoint files left by a run killed while writing one (the
        checkpoint itself is only ever replaced whole, never left half-written)."""
        if self.path is None or not self.path.is_dir() or not self.is_main:
            return
        for tmp in self.path.glob(f".{CHECKPOINT_FILE}.*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()

    def run(self, resume: bool) -> TrainState:
        """Train (or resume and finish training); leave the best weights in the model.

        Without ``resume``, a checkpoint of an unfinished fit in ``checkpoint_dir`` is
        replaced at the first epoch's end: a warning names it first. After training, a
        warning says when the kept weights' validation score is more than
        :data:`USELESS_RATIO` times that of filling every held-out entry with its feature's
        training mean (a diverged or untrained fit);
        without validation entries this is not checked (the kept epoch's training loss is
        the lowest, the first epoch's included, so it tells nothing).

        Interrupted (KeyboardInterrupt), it leaves the best weights so far in the model and
        the training state so far (its history, the best epoch) in :attr:`state`, and
        re-raises the interrupt.

        Raises:
            NumericalError: too many steps could not be applied (the loop's rule); nothing
                of this fit is returned.
        """
        self.remove_stale_temps()
        state: TrainState | None = None
        optimizer: torch.optim.Optimizer | None = None
        finished = False
        if resume:
            restored = self.restore()
            if restored is not None:
                state, optimizer, finished = restored
        else:
            self._warn_unfinished_checkpoint()
        score: Callable[[], float] | None = None
        if self.val_input is not None:
            score = self.val_score
        if not finished:
            state = state if state is not None else TrainState()
            self.state = state  # the loop fills it in place: what an interrupt leaves
            try:
                train(
                    self.model,
                    self.batches,
                    self.config.train,
                    val_score=score,
                    optimizer=optimizer,
                    state=state,
                    generator=self.generator,
                    on_epoch_end=self.on_epoch_end,
                    steps_per_epoch=self.num_steps,
                    comm=self.comm,
                )
            except DistributedError as err:
                raise self._with_resume_hint(err) from err
            except NumericalError as err:
                out = NumericalError(f"{err}; nothing of this fit is kept")
                out.synchronized = getattr(err, "synchronized", False)  # type: ignore[attr-defined]
                raise out from err.__cause__
            except KeyboardInterrupt:  # the best weights so far (a resumed fit's included)
                if self.best is not None:
                    self.model.load_state_dict(self.best)
                self.model.eval()
                raise
            if score is not None:
                self._warn_if_useless(state)
        if state is None:  # a finished checkpoint always holds a state
            raise ValidationError("resume: the checkpoint holds no training state")
        self.state = state
        if self.best is not None:
            self.model.load_state_dict(self.best)
        self.model.eval()
        return state

    def interrupted_note(self) -> str | None:
        """After an interrupted :meth:`run`: what the estimator keeps (the best weights so far,
        left in the model) and how to go on, or None when no epoch has a finite score yet
        (nothing worth keeping)."""
        state = self.state
        if state is None or not math.isfinite(state.best_score) or state.best_epoch < 1:
            return None
        what = "validation MAE" if self.val_input is not None else "training loss"
        note = (
            f"fit: interrupted (KeyboardInterrupt) after {state.epoch} finished epochs "
            f"(of epochs={self.config.train.epochs}); the estimator is fitted with the best "
            f"weights so far (epoch {state.best_epoch}, {what} {state.best_score:.4g}) and "
            "history_ of those epochs, but its intervals are the model's own, not calibrated"
        )
        if self.saved_epoch is not None:
            note += (
                f"; the checkpoint in {str(self.path)!r} holds epoch {self.saved_epoch}: "
                "resume=True goes on from it"
            )
        return note

    def _warn_unfinished_checkpoint(self) -> None:
        """Warn when ``checkpoint_dir`` holds the checkpoint of a fit that had not finished
        (fewer epochs ran than it was given, and it did not stop early), which this fit,
        started afresh, will replace. Checkpoints written before they recorded their
        ``epochs`` are not judged."""
        if self.path is None or not self.is_main:
            return
        file = self.path / CHECKPOINT_FILE
        if not file.is_file():
            return
        try:
            _, meta = load_checkpoint(file)
        except ModelFileError:  # not a checkpoint of a fit: replaced as before
            return
        done = (meta.get("train_state") or {}).get("epoch", 0)
        planned = meta.get("epochs")
        if meta.get("kind") != "gpvae.GPVAE.fit" or meta.get("stopped_early"):
            return
        if not isinstance(done, int) or not isinstance(planned, int) or done >= planned:
            return
        where = f"the checkpoint in {str(self.path)!r} is of a fit that had not finished "
        where += f"({done} of its {planned} epochs ran)"
        changed = _changed_settings(meta.get("settings"), self.config.settings)
        if changed is None:
            fix = "interrupt it and pass resume=True to continue the earlier fit, or give "
        else:  # resume=True would be refused: only another folder keeps it
            where += f"; this fit has other settings ({changed})"
            fix = "give "
        warnings.warn(
            f"resume: {where}; this fit starts afresh and replaces that checkpoint at its "
            f"first epoch's end: {fix}another checkpoint_dir to keep it",
            UserWarning,
            stacklevel=4,
        )

    def mean_fill_score(self) -> float:
        """The validation score (MAE, standardised) of filling every held-out entry with its
        feature's mean over the training input's observed entries (of every process); NaN
        without validation entries. A model that does not beat it has learnt nothing."""
        D = self.train_input.num_features
        sums, counts = np.zeros(D), np.zeros(D)
        for v in self.train_input.values:
            seen = ~np.isnan(v)
            sums += np.where(seen, v, 0.0).sum(axis=0)
            counts += seen.sum(axis=0)
        if self.sharded and self.comm is not None:
            both = self.comm.all_reduce([*sums.tolist(), *counts.tolist()])
            sums, counts = np.asarray(both[:D], float), np.asarray(both[D:], float)
        mean = sums / np.maximum(counts, 1.0)
        total, count = 0.0, 0
        local = self.local_validation()
        if local is not None:
            for target in local[1].values:
                keep = ~np.isnan(target)
                total += float(np.abs(target - mean)[keep].sum())
                count += int(keep.sum())
        if self.comm is not None:
            total, count = self.comm.all_reduce([total, count])
        return float(total) / float(count) if count else math.nan

    def _warn_if_useless(self, state: TrainState) -> None:
        """Warn when the kept weights' validation score is worse than the mean fill's."""
        base = self.mean_fill_score()
        # (NaN: False; a mean fill that scores 0, constant held-out values, judges nothing)
        if not base > 0 or not state.best_score > USELESS_RATIO * base or not self.is_main:
            return
        lr = self.config.train.lr
        scores = [h["val_score"] for h in state.history if h.get("validated", 1.0)]
        shown = f"{scores[0]:.4g} after epoch 1"
        if len(scores) > 1:
            shown += f", {scores[-1]:.4g} after epoch {len(scores)}"
        warnings.warn(
            f"training: the kept weights (epoch {state.best_epoch}) score a validation MAE of "
            f"{state.best_score:.4g}, {state.best_score / base:.3g} times that of filling "
            f"every held-out entry with its feature's training mean ({base:.4g}): the model "
            "is no use as it is "
            f"(validation MAE {shown}). If the fit diverged (scores far above "
            f"{base:.3g}, or rising), fit again with a smaller lr (it was lr={lr:g}; try "
            f"lr={lr / 10:g}); if the scores were still falling, train longer (more epochs)",
            UserWarning,
            stacklevel=4,
        )

    def _with_resume_hint(self, err: DistributedError) -> DistributedError:
        """``err`` with where the last good checkpoint is and how to go on from it."""
        hint = ""
        if self.path is not None:
            hint = (
                f"; the last good checkpoint in {str(self.path)!r} is kept: run the fit again "
                "with resume=True (gpvae fit --resume) to go on from it"
            )
        out = DistributedError(f"{err}{hint}")
        out.synchronized = getattr(err, "synchronized", False)  # type: ignore[attr-defined]
        return out
