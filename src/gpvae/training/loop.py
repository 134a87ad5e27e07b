"""The fit loop: optimiser, gradient clipping, early stopping, progress, NaN safety.

:func:`train` drives any ``nn.Module`` with an ``elbo(batch, num_samples=..., iwae=...,
generator=...)`` method returning a :class:`~gpvae.model.ELBOResult` of per-series tensors
(B,), as :class:`gpvae.model.GPVAEModel` does. The loss of a step is the negative bound (the
ELBO, or the IWAE bound when the model computes one) summed over the batch and divided by
the number of observed entries, so the learning rate does not depend on the batch size or
the share of missing data.

In a distributed fit (``comm``: :class:`~gpvae.training.distributed.Communicator`) every
process gets its part of each batch as a :class:`Step` and the model is wrapped in
``DistributedDataParallel``. A process's loss is its part of the global batch's negative
bound times ``world_size``, divided by the number of observed entries of the whole global
batch; DDP averages the gradients over the processes, so the applied gradient is the one a
single process would compute on the global batch. Before the backward pass, one all-reduce
per step sums the loss parts and a failure flag over the processes: every process then knows
the global loss (for the progress bar, the history and the finiteness test) and takes the
same decision (apply, roll back, or stop with the error of the process that failed).

Terms of the bound that belong to the whole data set rather than to one series (such as a
KL divergence of shared inducing points) must be spread over the series of ``bound``, each
series carrying its share, so that they count once per data set whatever the batch size and
the number of processes.

A step whose loss or gradients are not finite, or whose forward or backward pass raises a
:class:`~gpvae.errors.NumericalError` (e.g. a failed Cholesky factorisation), is never
applied: the model and optimiser go back to the last good state (the end of the last
finished epoch, or the start), the learning rate is halved, and a warning says so. After
``max_bad_steps`` such events in one fit, a :class:`~gpvae.errors.NumericalError` is raised
naming the epoch, the learning rate and what to change (the model then holds the last good
state). A validation score that raises a NumericalError counts as a non-finite score.

Interrupted (KeyboardInterrupt), the loop leaves the best state so far in the model (as at its
end) and re-raises; the ``state`` passed in holds the history so far.

The progress bar goes to stderr: in a terminal (or a notebook) it is redrawn as tqdm does;
written to a file or a pipe (a log) it is redrawn at most every 30 seconds.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from gpvae import settings
from gpvae.batch import Batch
from gpvae.errors import NumericalError, ValidationError, invalid, outside_stacklevel
from gpvae.gp import release_arenas
from gpvae.gp.prior import GPPrior
from gpvae.kernels import Kernel
from gpvae.model import ELBOResult
from gpvae.rng import batch_rows
from gpvae.training.distributed import Communicator, is_peer_failure, peer_error

__all__ = [
    "OPTIMIZERS",
    "ElboModel",
    "Step",
    "TrainConfig",
    "TrainState",
    "make_optimizer",
    "progress_bar",
    "train",
]


class ElboModel(Protocol):
    """A module with the ELBO method used by :func:`train`."""

    def elbo(
        self,
        batch: Batch,
        num_samples: int = 1,
        iwae: int = 1,
        generator: torch.Generator | None = None,
    ) -> ELBOResult: ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
}

#: How each optimiser updates all parameters at once: Adam and AdamW in one fused kernel,
#: RMSprop with multi-tensor operations. A model has dozens of small parameter tensors, and
#: the default on the CPU loops over them in Python, a dozen operations each (the S2 model's
#: 45 tensors: 5.1 ms per Adam step; fused: 0.8 ms). Same update, up to rounding.
_ALL_AT_ONCE: dict[str, dict[str, bool]] = {
    "adam": {"fused": True},
    "adamw": {"fused": True},
    "rmsprop": {"foreach": True},
}


@dataclass
class TrainConfig:
    """Settings of :func:`train`.

    Attributes:
        epochs: maximum number of passes over the training batches.
        lr: learning rate.
        kernel_lr: learning rate of the GP prior's kernel hyper-parameters (None: ``lr``).
        noise_lr: learning rate of the likelihood's own parameters (the Gaussian's
            per-feature noise variance, the Student-t's scale and degrees of freedom; not
            the decoder's), in a group of their own (None: ``lr``, in the networks' group).
        optimizer: "adam", "adamw" or "rmsprop".
        weight_decay: L2 penalty passed to the optimiser.
        grad_clip: maximum global gradient norm (None: no clipping).
        patience: epochs without improvement of the validation score before stopping
            (None: never stop early).
        num_samples: Monte Carlo samples of z per series in the ELBO.
        iwae: importance samples (1: the standard ELBO).
        max_bad_steps: steps tolerated whose loss or gradients are not finite or whose
            model raised a NumericalError (each rolls back and halves lr).
        progress: show a tqdm progress bar with the loss parts and ETA (on stderr; when
            that is a file or a pipe, redrawn at most every 30 seconds).
    """

    epochs: int = 100
    lr: float = 1e-3
    kernel_lr: float | None = None
    noise_lr: float | None = None
    optimizer: str = "adam"
    weight_decay: float = 0.0
    grad_clip: float | None = 10.0
    patience: int | None = 10
    num_samples: int = 1
    iwae: int = 1
    max_bad_steps: int = 5
    progress: bool = True

    def validate(self) -> None:
        """Raise a :class:`~gpvae.errors.ValidationError` naming the first bad setting."""
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise invalid("epochs", "an integer >= 1", self.epochs)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise invalid("lr", "a finite positive number", self.lr)
        for name in ("kernel_lr", "noise_lr"):
            rate = getattr(self, name)
            if rate is not None and not (isinstance(rate, (int, float)) and 0 < rate < math.inf):
                raise invalid(name, "a finite positive number or None", rate)
        if self.optimizer not in OPTIMIZERS:
            raise ValidationError(
                f"optimizer: expected one of {sorted(OPTIMIZERS)}, found {self.optimizer!r}"
            )
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise invalid("grad_clip", "a positive number or None", self.grad_clip)
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise invalid("patience", "an integer >= 1 or None", self.patience)
        for name in ("num_samples", "iwae", "max_bad_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise invalid(name, "an integer >= 1", value)


@dataclass
class TrainState:
    """Where a fit stands; kept so that training can be resumed.

    Attributes:
        epoch: number of finished epochs.
        step: number of applied optimiser steps.
        best_score: best score so far (lower is better): the validation score, or the
            training loss without one.
        best_epoch: the epoch that reached it.
        bad_steps: non-finite steps rolled back so far.
        history: one dict per finished epoch: the loss parts (``loss``, ``loglik``, ``kl``),
            ``val_score`` (the score early stopping and the kept state go by: the
            validation score, or without one the epoch's training loss, ``loss`` again:
            the key keeps its name for the code that reads it), ``validated`` (1.0 when
            ``val_score`` is a validation score, 0.0 when it is the training loss; absent
            from histories written before it was kept), ``epoch``, ``lr``, ``seconds``.
    """

    epoch: int = 0
    step: int = 0
    best_score: float = math.inf
    best_epoch: int = 0
    bad_steps: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (infinite scores become None)."""
        out = asdict(self)
        out["best_score"] = None if not math.isfinite(self.best_score) else self.best_score
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainState:
        """Inverse of :meth:`to_json`."""
        data = dict(data)
        if data.get("best_score") is None:
            data["best_score"] = math.inf
        return cls(**data)


@dataclass(frozen=True)
class Step:
    """One process's part of one optimiser step of a distributed fit.

    Attributes:
        batch: the process's series of the global batch.
        num_observed: observed entries of the whole global batch (the loss's divisor).
        weight: 1, or 0 for a stand-in batch of a process that has no series in this step
            (it still runs forward and backward, contributing nothing).
        rows: the batch's rows in the global batch, when every process draws the global
            batch's noise (see :func:`gpvae.rng.batch_rows`); else None.
        size: series in the global batch (with ``rows``).
    """

    batch: Batch
    num_observed: int
    weight: float = 1.0
    rows: np.ndarray | None = None
    size: int | None = None


def make_optimizer(
    params: nn.Module | Iterable[nn.Parameter], config: TrainConfig
) -> torch.optim.Optimizer:
    """The optimiser named in ``config`` over the trainable parameters.

    Given a module, the kernel hyper-parameters form a group of their own with learning
    rate ``config.kernel_lr`` (None: ``config.lr``): the parameters of its GP prior (names
    starting with ``prior.``) and of every other GP prior or kernel inside it (e.g. the
    noise GP of the ``gaussian_gp`` likelihood, ``likelihood.gp.``). With
    ``config.noise_lr`` set, the likelihood's own parameters (names starting with
    ``likelihood.``, less its kernels) form a third group with that rate; None leaves them
    in the first group, at ``config.lr`` (the groups are then the two of fits before
    ``noise_lr``, so their optimiser states stay interchangeable). A plain iterable of
    parameters has no names: ``noise_lr`` does not apply to it.
    """
    if isinstance(params, nn.Module):
        named = [(n, p) for n, p in params.named_parameters() if p.requires_grad]
        inner = [n for n, m in params.named_modules() if n and isinstance(m, (GPPrior, Kernel))]
        gps = ("prior.", *(f"{n}." for n in inner))
    else:
        named = [("", p) for p in params if p.requires_grad]
        gps = ("prior.",)
    kernel = [p for n, p in named if n.startswith(gps)]
    own = config.noise_lr is not None
    noise = [p for n, p in named if own and n.startswith("likelihood.") and not n.startswith(gps)]
    if own and not noise and isinstance(params, nn.Module):
        found = type(getattr(params, "likelihood", None)).__name__
        warnings.warn(
            f"noise_lr: expected a likelihood with trainable parameters of its own (a "
            f"homoscedastic gaussian's noise, student_t's scale, gaussian_gp's amplitudes), "
            f"found none in {found} (the decoder gives gaussian_hetero's variance; bernoulli "
            f"has none): noise_lr={config.noise_lr!r} changes nothing",
            UserWarning,
            stacklevel=2,
        )
    taken = {id(p) for p in kernel + noise}
    rest = [p for _, p in named if id(p) not in taken]
    kernel_lr = config.lr if config.kernel_lr is None else config.kernel_lr
    groups: list[dict[str, Any]] = [{"params": rest}] if rest or not (kernel or noise) else []
    if kernel:
        groups.append({"params": kernel, "lr": kernel_lr})
    if noise:
        groups.append({"params": noise, "lr": config.noise_lr})
    params_all = [p for _, p in named]
    fast = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params_all)
    extra = _ALL_AT_ONCE.get(config.optimizer, {}) if fast else {}
    make = OPTIMIZERS[config.optimizer]
    if extra:
        try:
            return make(groups, lr=config.lr, weight_decay=config.weight_decay, **extra)
        except (RuntimeError, ValueError):  # torch < 2.4 has no fused Adam on the CPU
            pass
    return make(groups, lr=config.lr, weight_decay=config.weight_decay)


#: Seconds between two redraws of the progress bar when it goes to a file or a pipe (a log):
#: a terminal's bar is redrawn about ten times a second, which writes kilobytes of carriage
#: returns per minute into a log.
_LOG_SECONDS = 30.0


def _redrawn_often() -> bool:
    """Whether the progress bar is shown where frequent redraws replace each other: a
    terminal, or a notebook's widget (tqdm.auto's choice), rather than a file or a pipe."""
    if any(cls.__module__ == "tqdm.notebook" for cls in tqdm.__mro__):
        return True
    stream = sys.stderr  # tqdm's default file
    try:
        return stream is not None and bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


def progress_bar(total: int | None, unit: str, show: bool, **kwargs: Any) -> Any:
    """A tqdm progress bar on stderr (``disable`` unless ``show``) redrawn about ten times a
    second where redraws replace each other (a terminal, a notebook) and every
    :data:`_LOG_SECONDS` in a file or a pipe; ``kwargs`` go to tqdm (``desc``, ``delay``)."""
    pace = {} if _redrawn_often() else {"mininterval": _LOG_SECONDS, "maxinterval": _LOG_SECONDS}
    if _sizeless_terminal():  # tqdm hides a bar below a terminal's last row, here row 0
        size: dict[str, Any] = {"ncols": 80, "nrows": 24, "dynamic_ncols": False}
    else:
        size = {"dynamic_ncols": True}
    return tqdm(total=total, disable=not show, unit=unit, **size, **pace, **kwargs)


def _sizeless_terminal() -> bool:
    """Whether stderr is a terminal that reports no size (0 columns and rows: ``docker run
    -t``, ``script``), where tqdm drew no bar at all (audit, session 47)."""
    try:
        if sys.stderr is None or not sys.stderr.isatty():
            return False
        shape = os.get_terminal_size(sys.stderr.fileno())
    except (AttributeError, ValueError, OSError):  # a closed, unusual or sizeless stream
        return False
    return shape.columns == 0 or shape.lines == 0


def _snapshot(model: ElboModel, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    return {
        "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "optimizer": copy.deepcopy(optimizer.state_dict()),
    }


def _restore(model: ElboModel, optimizer: torch.optim.Optimizer, snap: dict[str, Any]) -> None:
    model.load_state_dict(snap["model"])
    optimizer.load_state_dict(copy.deepcopy(snap["optimizer"]))


def _grads_finite(params: list[nn.Parameter]) -> bool:
    """Whether the summed absolute gradient of ``params`` is finite (no NaN, no Inf, no
    overflow), in one pass over all the gradients of a device (one concatenation, not three
    operations per parameter)."""
    grads: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
    for p in params:
        if p.grad is not None:
            grads.setdefault((p.grad.device, p.grad.dtype), []).append(p.grad.detach().reshape(-1))
    return all(bool(torch.isfinite(torch.cat(gs).abs().sum())) for gs in grads.values())


def train(
    model: ElboModel,
    batches: Callable[[int], Iterable[Batch]] | Callable[[int], Iterable[Batch | Step]],
    config: TrainConfig,
    *,
    val_score: Callable[[], float] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    state: TrainState | None = None,
    generator: torch.Generator | None = None,
    on_epoch_end: Callable[[TrainState, torch.optim.Optimizer], None] | None = None,
    steps_per_epoch: int | None = None,
    comm: Communicator | None = None,
) -> tuple[TrainState, torch.optim.Optimizer]:
    """Maximise the ELBO of ``model`` over the training batches.

    Args:
        model: module with ``elbo(batch, num_samples, iwae, generator)``.
        batches: ``batches(epoch)`` yields the training batches of that epoch (so that the
            caller controls shuffling and seeding).
        config: the settings.
        val_score: called after each epoch with the model in eval mode; lower is better.
            Without it, the training loss decides early stopping and the best state.
        optimizer: continue with this optimiser (resuming); else a new one from ``config``.
        state: continue from this state (resuming); else a fresh one.
        generator: random generator for the ELBO's samples.
        on_epoch_end: called after each epoch (e.g. to write a checkpoint).
        steps_per_epoch: number of batches per epoch, for the progress bar's ETA.
        comm: the job's communicator in a distributed fit (``batches`` then yields
            :class:`Step` parts, the same number on every process); None: one process.

    Returns:
        The final :class:`TrainState` and the optimiser. The model holds the best state
        (lowest validation score; without ``val_score``, lowest training loss) when the
        loop ends, also when a KeyboardInterrupt ends it (re-raised; ``state``, when given,
        holds the history so far). The progress bar shows ``val`` only with ``val_score``.

    Raises:
        NumericalError: more than ``config.max_bad_steps`` steps could not be applied.
    """
    config.validate()
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer is None:
        optimizer = make_optimizer(model if isinstance(model, nn.Module) else params, config)
    state = state if state is not None else TrainState()
    good = _snapshot(model, optimizer)
    best_model = {k: v.detach().clone() for k, v in model.state_dict().items()}
    epochs_left = config.epochs - state.epoch
    total = epochs_left * steps_per_epoch if steps_per_epoch else None
    show = config.progress and (comm is None or comm.is_main)
    terminal = _redrawn_often()
    bar = progress_bar(total, "step", show)
    ddp: nn.Module | None = None  # the DDP-wrapped model, made at the first step
    stop = False
    try:
        while state.epoch < config.epochs:
            t0 = time.perf_counter()
            model.train(True)
            sums = {"loss": 0.0, "loglik": 0.0, "kl": 0.0}
            n_obs_total = 0
            for batch in batches(state.epoch):
                if comm is not None:
                    if not isinstance(batch, Step):
                        raise TypeError("batches: expected Step parts in a distributed fit")
                    if ddp is None:
                        ddp = comm.wrap(model, batch.batch)  # type: ignore[arg-type]
                    done = _distributed_step(
                        model, ddp, batch, params, optimizer, good, state, config, generator, comm
                    )
                    if done is not None:
                        n_step, step_sums = done
                        for key, value in step_sums.items():
                            sums[key] += value
                        n_obs_total += n_step
                        bar.set_postfix(
                            epoch=state.epoch + 1,
                            loss=f"{step_sums['loss'] / n_step:.4f}",
                            ll=f"{step_sums['loglik'] / n_step:.3f}",
                            kl=f"{step_sums['kl'] / n_step:.3f}",
                            refresh=False,
                        )
                    bar.update(1)
                    continue
                if isinstance(batch, Step):
                    raise TypeError("batches: expected Batch objects outside a distributed fit")
                n_obs = max(int(batch.observed.sum()), 1)
                optimizer.zero_grad(set_to_none=True)
                failure: NumericalError | None = None
                try:  # a numerical failure of the model is a step that cannot be applied
                    parts = model.elbo(
                        batch, num_samples=config.num_samples, iwae=config.iwae, generator=generator
                    )
                    loss = -parts.bound.sum() / n_obs
                    ok = bool(torch.isfinite(loss))
                    if ok:
                        loss.backward()
                        ok = _grads_finite(params)
                except NumericalError as err:
                    failure, ok, loss = err, False, torch.tensor(math.nan)
                if not ok:
                    _handle_bad_step(model, optimizer, good, state, config, loss, failure)
                    bar.update(1)
                    continue
                if config.grad_clip is not None:
                    nn.utils.clip_grad_norm_(params, config.grad_clip)
                optimizer.step()
                state.step += 1
                sums["loss"] += float(loss.detach()) * n_obs
                sums["loglik"] += float(parts.loglik.detach().sum())
                sums["kl"] += float(parts.kl.detach().sum())
                n_obs_total += n_obs
                bar.update(1)
                bar.set_postfix(
                    epoch=state.epoch + 1,
                    loss=f"{float(loss.detach()):.4f}",
                    ll=f"{float(parts.loglik.detach().sum()) / n_obs:.3f}",
                    kl=f"{float(parts.kl.detach().sum()) / n_obs:.3f}",
                    refresh=False,
                )
            # An epoch whose every step was skipped has no loss (NaN), not a loss of 0.
            record = {k: v / n_obs_total if n_obs_total else math.nan for k, v in sums.items()}
            model.train(False)
            failed = ""
            try:
                score = float(val_score()) if val_score is not None else record["loss"]
            except NumericalError as err:  # as a non-finite score
                score, failed = math.nan, f" (the model failed numerically: {_what_failed(err)})"
            if not math.isfinite(score):
                warnings.warn(
                    f"validation score is {score} after epoch {state.epoch + 1}{failed}; "
                    "treating it as no improvement",
                    RuntimeWarning,
                    stacklevel=2,
                )
            record.update(
                epoch=float(state.epoch + 1),
                val_score=score,
                validated=float(val_score is not None),
                lr=float(optimizer.param_groups[0]["lr"]),
                seconds=time.perf_counter() - t0,
            )
            state.history.append(record)
            state.epoch += 1
            if math.isfinite(score) and score < state.best_score:
                # the copy first: an interrupt between the two leaves them in step
                best_model = {k: v.detach().clone() for k, v in model.state_dict().items()}
                state.best_score = score
                state.best_epoch = state.epoch
            stop = config.patience is not None and state.epoch - state.best_epoch >= config.patience
            if not stop and state.epoch < config.epochs and not failed:
                # the next epoch's rollback point (a deep copy: not made after the last);
                # weights whose validation failed numerically are no good state to go back to
                good = _snapshot(model, optimizer)
            shown = {"epoch": state.epoch, "loss": f"{record['loss']:.4f}"}
            if val_score is not None:  # without it the score is the training loss, not "val"
                shown["val"] = f"{score:.4f}"
            bar.set_postfix(shown, refresh=terminal)  # elsewhere at tqdm's pace, and at the end
            if on_epoch_end is not None:
                on_epoch_end(state, optimizer)
            if stop:
                break
    except KeyboardInterrupt:  # the best state so far in the model, then the interrupt goes on
        if math.isfinite(state.best_score):
            model.load_state_dict(best_model)
        model.train(False)
        raise
    finally:
        bar.close()
        release_arenas()  # the fused pass's buffers, reused from step to step
    if math.isfinite(state.best_score):
        model.load_state_dict(best_model)
    model.train(False)
    early = stop and state.epoch < config.epochs  # not at the last epoch anyway
    if early and state.step < settings.EARLY_STOP_MIN_STEPS and (comm is None or comm.is_main):
        _warn_few_steps(state, config)
    return state, optimizer


def _warn_few_steps(state: TrainState, config: TrainConfig) -> None:
    """Say that early stopping ended the fit after few optimiser steps, and what to do."""
    per_epoch = state.step / max(state.epoch, 1)
    warnings.warn(
        f"training: early stopping (patience={config.patience} epochs without improvement) "
        f"ended the fit after {state.step} optimiser steps ({state.epoch} epochs, "
        f"{per_epoch:.3g} per epoch), fewer than gpvae.settings.EARLY_STOP_MIN_STEPS = "
        f"{settings.EARLY_STOP_MIN_STEPS}: the loss may still have been falling. Use a smaller "
        "batch_size (more optimiser steps per epoch), a larger patience (or None with enough "
        "epochs), or window= to cut long series into many windows",
        UserWarning,
        stacklevel=outside_stacklevel(),
    )


def _distributed_step(
    model: ElboModel,
    ddp: nn.Module,
    part: Step,
    params: list[nn.Parameter],
    optimizer: torch.optim.Optimizer,
    good: dict[str, Any],
    state: TrainState,
    config: TrainConfig,
    generator: torch.Generator | None,
    comm: Communicator,
) -> tuple[int, dict[str, float]] | None:
    """One step of a distributed fit; returns the global batch's observed entries and summed
    loss parts, or None when the step was not applied (non-finite, rolled back).

    A :class:`~gpvae.errors.NumericalError` of a process's forward pass makes the global loss
    NaN: every process rolls the step back, as for a non-finite loss.

    Raises (on every process alike): the error of a process whose forward pass failed
    otherwise, the :class:`~gpvae.errors.NumericalError` of too many non-finite steps, or a
    :class:`~gpvae.errors.DistributedError` when another process is gone.
    """
    world = comm.world_size
    n_obs = max(int(part.num_observed), 1)
    optimizer.zero_grad(set_to_none=True)
    error: Exception | None = None
    failure: NumericalError | None = None  # this process's model failed numerically
    local = [0.0, 0.0, 0.0, 0.0]  # failed, loss (times world), loglik, kl
    loss: Tensor | None = None
    try:
        rows = (
            batch_rows(part.rows, int(part.size))
            if part.rows is not None and part.size is not None
            else contextlib.nullcontext()
        )
        with rows:
            parts = ddp(part.batch, config.num_samples, config.iwae, generator)
        loss = -parts.bound.sum() * (world * part.weight) / n_obs
        local = [
            0.0,
            float(loss.detach()),
            float(parts.loglik.detach().sum()) * part.weight,
            float(parts.kl.detach().sum()) * part.weight,
        ]
    except NumericalError as err:  # a non-finite loss: every process rolls the step back
        failure, loss = err, None
        local = [0.0, math.nan, math.nan, math.nan]
    except Exception as err:  # reported to every process by check
        error = err
        local = [1.0, 0.0, 0.0, 0.0]
    total = comm.all_reduce(local)
    if total[0] > 0:
        comm.check(error)  # raises the first failed process's error on every process
    global_loss = float(total[1]) / world
    ok = math.isfinite(global_loss) and math.isfinite(total[2]) and math.isfinite(total[3])
    if ok and loss is not None:
        try:
            loss.backward()  # DDP averages the gradients over the processes here
        except RuntimeError as err:
            if not is_peer_failure(err):
                raise
            raise peer_error(err) from err
        ok = _grads_finite(params)  # the same all-reduced gradients on every process
    if not ok:
        try:
            _handle_bad_step(
                model, optimizer, good, state, config, torch.tensor(global_loss), failure
            )
        except NumericalError as err:
            err.synchronized = True  # type: ignore[attr-defined]  # every process raises it
            raise
        return None
    if config.grad_clip is not None:
        nn.utils.clip_grad_norm_(params, config.grad_clip)
    optimizer.step()
    state.step += 1
    return n_obs, {"loss": global_loss * n_obs, "loglik": float(total[2]), "kl": float(total[3])}


def _what_failed(err: NumericalError) -> str:
    """The first clause of ``err``'s message: what failed, without the advice written for a
    developer (a dtype or jitter the fit does not let the user choose)."""
    return str(err).split(";")[0].strip()


def _handle_bad_step(
    model: ElboModel,
    optimizer: torch.optim.Optimizer,
    good: dict[str, Any],
    state: TrainState,
    config: TrainConfig,
    loss: Tensor,
    failure: NumericalError | None = None,
) -> None:
    """Roll back to the last good state, halve the learning rate, warn; raise past the limit.

    ``failure``: the :class:`~gpvae.errors.NumericalError` the model raised in the step (e.g.
    a failed Cholesky factorisation), which is handled as a non-finite loss."""
    state.bad_steps += 1
    optimizer.zero_grad(set_to_none=True)
    lrs = [group["lr"] for group in optimizer.param_groups]
    _restore(model, optimizer, good)
    for group, old_lr in zip(optimizer.param_groups, lrs):
        group["lr"] = old_lr * 0.5
    lr = optimizer.param_groups[0]["lr"]
    if failure is not None:  # its first clause: what failed, not the advice for a developer
        what = f"numerical failure of the model ({_what_failed(failure)})"
    else:
        what = f"non-finite loss or gradient (loss {float(loss.detach())})"
    where = f"step {state.step} (epoch {state.epoch + 1})"
    if state.bad_steps > config.max_bad_steps:
        raise NumericalError(
            f"training: the loss or its gradients were not finite, or the model failed "
            f"numerically, in {state.bad_steps} steps (more than max_bad_steps="
            f"{config.max_bad_steps}; the last: {what} at {where}); each was rolled back and "
            f"halved the learning rate, down to {lr:.3g}: the fit failed. Fit again with a "
            f"smaller lr (it was lr={config.lr:g}; try lr={config.lr / 10:g}), or check the "
            "data for extreme values"
        ) from failure
    warnings.warn(
        f"{what} at {where}: update skipped, last good state restored, learning rate lowered "
        f"to {lr:.3g} ({state.bad_steps}/{config.max_bad_steps})",
        RuntimeWarning,
        stacklevel=3,
    )
