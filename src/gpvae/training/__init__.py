"""Training: the fit loop (:mod:`gpvae.training.loop`) and one fit session with its
validation split, checkpoints and resume (:mod:`gpvae.training.session`)."""

from __future__ import annotations

from gpvae.training.loop import OPTIMIZERS, TrainConfig, TrainState, make_optimizer, train
from gpvae.training.session import CHECKPOINT_FILE, FitSession, SessionConfig

__all__ = [
    "CHECKPOINT_FILE",
    "OPTIMIZERS",
    "FitSession",
    "SessionConfig",
    "TrainConfig",
    "TrainState",
    "make_optimizer",
    "train",
]
