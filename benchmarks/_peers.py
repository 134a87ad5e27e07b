"""PyPOTS 1.5 peers (``pypots_gpvae``, ``saits``, ``brits``) for the imputation benchmark.

Imported only when a peer is requested: PyPOTS is never a core or CI dependency (install it
with ``benchmarks/setup_bench_env.sh``).

Every peer is trained on the unmasked training split with the same epoch budget and the same
early stopping as the other learned methods: after each epoch the model imputes the masked
validation split and its MAE on the hidden validation entries is computed here (so the three
peers, whose built-in validation metrics differ -- MSE for SAITS/BRITS, the ELBO for GPVAE --
all stop on the same quantity); the weights with the lowest validation MAE are kept, and
training stops after ``patience`` epochs without improvement. Architecture settings are the
PyPOTS defaults, plus the few arguments PyPOTS requires without a default (listed in
``PEER_SETTINGS``; the SAITS values are those of the PyPOTS README example).
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
from _protocol import Task, score

__all__ = ["PEER_SETTINGS", "PeerImputer"]

PEER_SETTINGS: dict[str, dict[str, Any]] = {
    "saits": {
        "n_layers": 2,
        "d_model": 256,
        "n_heads": 4,
        "d_k": 64,
        "d_v": 64,
        "d_ffn": 128,
        "dropout": 0.1,
    },
    "brits": {"rnn_hidden_size": 128},
    "pypots_gpvae": {"latent_size": 35},
}
"""Arguments given explicitly (PyPOTS has no default for them); all others are defaults."""

_CLASS_NAMES = {"saits": "SAITS", "brits": "BRITS", "pypots_gpvae": "GPVAE"}


def _pypots_class(method: str) -> type:
    from pypots.imputation import BRITS, GPVAE, SAITS

    return {"saits": SAITS, "brits": BRITS, "pypots_gpvae": GPVAE}[method]


def _init_args(cls: type) -> dict[str, Any]:
    """The defaults of a PyPOTS class's constructor, as JSON-friendly values."""
    import inspect

    out: dict[str, Any] = {}
    for name, p in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or p.default is inspect.Parameter.empty:
            continue
        value = p.default
        if isinstance(value, type):
            value = value.__name__
        elif not isinstance(value, (int, float, str, bool, type(None), tuple, list)):
            value = repr(value)
        out[name] = list(value) if isinstance(value, tuple) else value
    return out


class PeerImputer:
    """A PyPOTS imputer behind the benchmark's ``fit`` / ``impute`` interface.

    Args:
        method: ``"saits"``, ``"brits"`` or ``"pypots_gpvae"``.
        epochs: maximum epochs.
        patience: epochs without a better validation MAE before stopping.
        seed: seeds torch and numpy before the model is built (initial weights, batch order,
            SAITS's artificial masks, sampling).
    """

    def __init__(self, method: str, epochs: int, patience: int, seed: int) -> None:
        self.method = method
        self.max_epochs = epochs
        self.patience = patience
        self.seed = seed
        self.model: Any = None
        self.epochs_run = 0
        self.best_epoch = 0
        self.history: list[dict[str, float]] = []
        cls = _pypots_class(method)
        import pypots

        self.settings: dict[str, Any] = {
            "library": f"pypots {pypots.__version__}",
            "class": f"pypots.imputation.{_CLASS_NAMES[method]}",
            "explicit": dict(PEER_SETTINGS[method]),
            "defaults": {
                k: v
                for k, v in _init_args(cls).items()
                if k not in PEER_SETTINGS[method]
                and k
                not in (
                    "epochs",
                    "patience",
                    "device",
                    "saving_path",
                    "verbose",
                    "validation_metric",
                )
            },
            "epochs": epochs,
            "patience": patience,
            "early_stopping": "validation MAE on the hidden validation entries, computed by "
            "the harness after every epoch (PyPOTS's own validation_metric is not used); best "
            "weights kept; optimiser Adam with PyPOTS's default lr 1e-3",
            "device": "cpu",
        }

    def fit(self, task: Task) -> None:
        """Train on ``task.X_train`` with early stopping on the masked validation split."""
        import torch

        cls = _pypots_class(self.method)
        torch.manual_seed(self.seed)
        np.random.seed(self.seed)  # noqa: NPY002 (PyPOTS draws from the global RNG)
        _, T, D = task.X_train.shape
        self.model = cls(
            n_steps=T,
            n_features=D,
            **PEER_SETTINGS[self.method],
            epochs=1,
            patience=None,
            device="cpu",
            saving_path=None,
            verbose=False,
        )
        train_set = {"X": task.X_train.astype(np.float32)}
        best_mae, best_state, waited = np.inf, None, 0
        for epoch in range(1, self.max_epochs + 1):
            start = time.perf_counter()
            self.model.fit(train_set)  # one more epoch; the optimiser state carries over
            val_mae = score(self.impute(task.X_val, task.times_val), task.X_val_ori, task.val_mask)[
                "mae"
            ]
            self.history.append(
                {"epoch": epoch, "val_mae": val_mae, "seconds": time.perf_counter() - start}
            )
            print(f"  [{self.method}] epoch {epoch}: val MAE {val_mae:.4f}", flush=True)
            self.epochs_run = epoch
            if val_mae < best_mae:
                best_mae, self.best_epoch, waited = val_mae, epoch, 0
                best_state = copy.deepcopy(self.model.model.state_dict())
            else:
                waited += 1
                if waited >= self.patience:
                    break
        if best_state is not None:
            self.model.model.load_state_dict(best_state)

    def impute(self, X: np.ndarray, times: np.ndarray | None = None) -> np.ndarray:
        """Impute (n, T, D) standardised series; observed entries are returned unchanged."""
        out = self.model.impute({"X": X.astype(np.float32)})
        out = np.asarray(out, dtype=np.float64)
        if out.ndim == 4:  # (n, samples, T, D) from GPVAE
            out = out.mean(axis=1)
        observed = ~np.isnan(X)
        return np.where(observed, X, out)
