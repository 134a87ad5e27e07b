"""Training: the fit loop (:mod:`gpvae.training.loop`), one fit session with its validation
split, checkpoints and resume (:mod:`gpvae.training.session`), and distributed training under
torchrun (:mod:`gpvae.training.distributed`)."""

from __future__ import annotations

from gpvae.training.loop import OPTIMIZERS, Step, TrainConfig, TrainState, make_optimizer, train
from gpvae.training.session import CHECKPOINT_FILE, FitSession, SessionConfig

__all__ = [
    "CHECKPOINT_FILE",
    "OPTIMIZERS",
    "FitSession",
    "SessionConfig",
    "Step",
    "TrainConfig",
    "TrainState",
    "make_optimizer",
    "train",
]
