"""One fit session: validation split and score, checkpoints, resume.

A :class:`FitSession` takes a model, the data and a :class:`SessionConfig` (it knows nothing
of the estimator above it). The loop itself is :func:`gpvae.training.train`; this module
prepares what it needs (seeded batches per epoch, the validation score, the epoch-end hook)
and writes / reads the crash-safe checkpoint: model, best weights so far, optimiser state,
the ELBO's random-generator state and the training state, in one safetensors file replaced
atomically (:func:`gpvae.io.save_checkpoint`). Resuming needs the same data (checked by a
fingerprint); batches of epoch e are drawn with a seed derived from (seed, e), so a resumed
fit sees exactly the batches and draws an uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gpvae.batch import Batch
from gpvae.data import Scaler, SeriesSet, batch_indices, make_batches
from gpvae.errors import ModelFileError, ValidationError
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
from gpvae.training.loop import TrainConfig, TrainState, make_optimizer, train

__all__ = ["CHECKPOINT_FILE", "FitSession", "SessionConfig"]

#: The checkpoint's file name inside ``checkpoint_dir``.
CHECKPOINT_FILE = "checkpoint.safetensors"


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
    """

    train: TrainConfig
    batch_size: int
    seed: int
    val_fraction: float
    checkpoint_dir: str | os.PathLike[str] | None = None
    checkpoint_every: int = 1


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


class FitSession:
    """One fit: data split, scoring, checkpoints, resume."""

    def __init__(
        self,
        config: SessionConfig,
        model: GPVAEModel,
        scaler: Scaler,
        device: torch.device,
        train_set: SeriesSet,
        val_set: SeriesSet | None,
        validation: tuple[SeriesSet, SeriesSet] | None = None,
    ) -> None:
        """``validation``: (input, targets) chosen by the caller (e.g. hidden ground truth:
        the targets are entries missing from the input); else the split follows
        ``val_fraction`` (random held-out observed entries of ``val_set`` or of the
        training data)."""
        self.config, self.model, self.scaler, self.device = config, model, scaler, device
        self.fingerprint = _fingerprint(train_set, val_set, *(validation or ()))
        split = torch.Generator().manual_seed(seed_for(config.seed, 10))
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
        if self.val_target is not None and self.val_target.num_observed == 0:
            self.val_input = self.val_target = None  # too little data to hold any out
        self.generator = torch.Generator(device=device).manual_seed(seed_for(config.seed, 11))
        self.best: dict[str, Tensor] | None = None
        self.path = None if config.checkpoint_dir is None else Path(config.checkpoint_dir)

    # -- pieces handed to gpvae.training.train

    def batches(self, epoch: int) -> Iterator[Batch]:
        """The shuffled training batches of ``epoch`` (seeded by the estimator seed and it)."""
        return make_batches(
            self.train_input,
            self.config.batch_size,
            shuffle=True,
            seed=seed_for(self.config.seed, 12, epoch),
            device=self.device,
            time_shift=self.scaler.time_origin_,
            time_scale=self.scaler.time_step_,
        )

    def val_score(self) -> float:
        """MAE (standardised) of the posterior-mean imputation of the held-out entries."""
        if self.val_input is None or self.val_target is None:
            return math.nan
        total, count = 0.0, 0
        n = self.val_input.num_series
        for idx in batch_indices(n, self.config.batch_size):
            batch = self.val_input.to_batch(
                idx,
                device=self.device,
                time_shift=self.scaler.time_origin_,
                time_scale=self.scaler.time_step_,
            )
            target, _, _ = self.val_target.padded(indices=idx)  # (B, N, D), NaN = not a target
            with torch.no_grad():
                z_mean, _ = self.model.encode(batch).marginals()  # (B, N, L)
                params = self.model.decode(z_mean)
                pred = self.model.predictive(params, batch)[0]  # (B, N, D)
            err = np.abs(pred.double().cpu().numpy() - target)
            keep = ~np.isnan(target)
            total += float(err[keep].sum())
            count += int(keep.sum())
        return total / max(count, 1)

    def on_epoch_end(self, state: TrainState, optimizer: torch.optim.Optimizer) -> None:
        """Keep the best weights; write the checkpoint every ``checkpoint_every`` epochs and
        at the end."""
        if state.best_epoch == state.epoch:
            self.best = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        patience = self.config.train.patience
        stopped_early = patience is not None and state.epoch - state.best_epoch >= patience
        finished = stopped_early or state.epoch >= self.config.train.epochs
        if self.path is not None and (state.epoch % self.config.checkpoint_every == 0 or finished):
            self.write_checkpoint(state, optimizer, stopped_early)

    # -- checkpoints

    def write_checkpoint(
        self, state: TrainState, optimizer: torch.optim.Optimizer, stopped_early: bool
    ) -> None:
        """Atomically write model, best weights, optimiser, RNG and training state."""
        if self.path is None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        tensors = {f"model/{k}": v for k, v in self.model.state_dict().items()}
        if self.best is not None:
            tensors.update({f"best/{k}": v for k, v in self.best.items()})
        opt_tensors, skeleton = flatten_state(optimizer.state_dict(), prefix="optim/")
        tensors.update(opt_tensors)
        tensors["rng/elbo"] = self.generator.get_state()
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
        }
        save_checkpoint(self.path / CHECKPOINT_FILE, tensors, meta)

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
        if not file.is_file():
            return None
        tensors, meta = load_checkpoint(file)
        if meta.get("kind") != "gpvae.GPVAE.fit" or meta.get("fingerprint") != self.fingerprint:
            raise ValidationError(
                f"resume: expected a checkpoint of a fit on the same data in {self.path}, found "
                "one written for other data or by another program"
            )

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
            self.generator.set_state(tensors["rng/elbo"])
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
        # Finished when it stopped early, or reached this run's epochs (a larger ``epochs``
        # continues a finished run).
        finished = bool(meta.get("stopped_early", False)) or state.epoch >= self.config.train.epochs
        return state, optimizer, finished

    def remove_stale_temps(self) -> None:
        """Delete temporary checkpoint files left by a run killed while writing one (the
        checkpoint itself is only ever replaced whole, never left half-written)."""
        if self.path is None or not self.path.is_dir():
            return
        for tmp in self.path.glob(f".{CHECKPOINT_FILE}.*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()

    def run(self, resume: bool) -> TrainState:
        """Train (or resume and finish training); leave the best weights in the model."""
        self.remove_stale_temps()
        state: TrainState | None = None
        optimizer: torch.optim.Optimizer | None = None
        finished = False
        if resume:
            restored = self.restore()
            if restored is not None:
                state, optimizer, finished = restored
        score: Callable[[], float] | None = None
        if self.val_input is not None:
            score = self.val_score
        if not finished:
            n_batches = math.ceil(self.train_input.num_series / self.config.batch_size)
            state, _ = train(
                self.model,
                self.batches,
                self.config.train,
                val_score=score,
                optimizer=optimizer,
                state=state,
                generator=self.generator,
                on_epoch_end=self.on_epoch_end,
                steps_per_epoch=n_batches,
            )
        if state is None:  # a finished checkpoint always holds a state
            raise ValidationError("resume: the checkpoint holds no training state")
        if self.best is not None:
            self.model.load_state_dict(self.best)
        self.model.eval()
        return state
