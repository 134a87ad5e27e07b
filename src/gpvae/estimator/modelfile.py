"""The estimator's model folder: ``model.safetensors`` (weights) and ``config.json``.

``config.json`` holds the constructor arguments (kernels as JSON specs), the number and
names of the features, the scaler's state, the training history, the interval spread
factors and the gpvae version (:mod:`gpvae.io` writes and reads the files; nothing is ever
unpickled). Loading takes **no path** from the file: ``checkpoint_dir`` is written as None
and ignored when read, so a crafted folder cannot send a later ``fit``'s checkpoint writes
elsewhere.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn

from gpvae.arguments import int_arg
from gpvae.data import Scaler
from gpvae.errors import GPVAEError, ModelFileError, ValidationError
from gpvae.estimator.assembly import resolve_device
from gpvae.io import check_state_dict, json_number, read_model, save_model
from gpvae.kernels import kernel_from_spec, kernel_spec
from gpvae.nets.registry import decoder_names, encoder_names

if TYPE_CHECKING:
    import torch

    from gpvae.estimator.estimator import GPVAE

__all__ = ["estimator_config", "read_estimator", "write_estimator"]


def estimator_config(est: GPVAE) -> dict[str, Any]:
    """The constructor arguments of ``est`` as JSON-able values (kernels as specs).

    Raises:
        ValidationError: naming ``encoder``/``decoder`` when it is an ``nn.Module``, or
            ``kernel`` for a kernel instance that cannot be rebuilt from JSON.
    """
    for name, options in (("encoder", encoder_names()), ("decoder", decoder_names())):
        value = getattr(est, name)
        if isinstance(value, nn.Module):
            raise ValidationError(
                f"{name}: expected a named network ({', '.join(options)}) to save the "
                f"model to JSON, found a custom {type(value).__name__}; save its weights "
                "with torch yourself"
            )
    return {
        "latent_dim": est.latent_dim,
        "kernel": kernel_spec(est.kernel),
        "posterior": est.posterior,
        "backend": est.backend,
        "likelihood": est.likelihood,
        "encoder": est.encoder,
        "decoder": est.decoder,
        "hidden": list(est.hidden),
        "beta": est.beta,
        "epochs": est.epochs,
        "batch_size": est.batch_size,
        "lr": est.lr,
        "optimizer": est.optimizer,
        "patience": est.patience,
        "val_fraction": est.val_fraction,
        "calibrate": est.calibrate,
        "num_samples": est.num_samples,
        "lengthscale": est.lengthscale,
        "device": str(est.device),
        "seed": est.seed,
        "progress": est.progress,
        "checkpoint_dir": None if est.checkpoint_dir is None else str(est.checkpoint_dir),
        "checkpoint_every": est.checkpoint_every,
    }


def write_estimator(est: GPVAE, path: str | os.PathLike[str]) -> None:
    """Write the fitted ``est`` to the folder ``path`` (see the module docstring)."""
    model, scaler = est.model_, est.scaler_
    settings = {**estimator_config(est), "checkpoint_dir": None}
    config = {
        "estimator": settings,
        "num_features": est.num_features_,
        "feature_names": est.feature_names_,
        "time_step": scaler.time_step_,
        "time_origin": scaler.time_origin_,
        "dtype": "float32",
    }
    history = [{k: json_number(v) for k, v in h.items()} for h in est.history_]
    extra = {
        "scaler": scaler.state_dict(),
        "history": history,
        "interval_scale": (
            np.ones(scaler.num_features) if est.interval_scale_ is None else est.interval_scale_
        ).tolist(),
    }
    save_model(path, model.state_dict(), config, extra)


def _interval_scale_entry(value: object, D: int) -> np.ndarray:
    """The saved spread factors, or ones for a model saved before they existed."""
    if value is None:
        return np.ones(D)
    arr = np.asarray(value, dtype=np.float64) if isinstance(value, list) else None
    if arr is None or arr.shape != (D,) or not (np.isfinite(arr).all() and (arr > 0).all()):
        raise ModelFileError(
            f"config.json: expected interval_scale to be {D} positive numbers, found {value!r}"
        )
    return arr


def read_estimator(
    cls: type[GPVAE], path: str | os.PathLike[str], device: str | torch.device
) -> GPVAE:
    """A fitted estimator from the folder ``path`` (see :meth:`GPVAE.load`)."""
    mf = read_model(path)
    cfg = mf.config
    try:
        args = dict(cfg["estimator"])
        args["kernel"] = kernel_from_spec(args["kernel"])
        args["hidden"] = tuple(args["hidden"])
        args["device"] = device
        args["checkpoint_dir"] = None  # never a path from the file
        est = cls(**args)
        D = int_arg("num_features", cfg["num_features"])
        scaler = Scaler.from_state_dict(mf.extra["scaler"])
        names = [str(s) for s in cfg["feature_names"]]
        model = est._build_model(D)
    except GPVAEError as err:
        raise ModelFileError(f"config.json: does not describe a GPVAE ({err})") from None
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(
            f"config.json: expected the estimator's config, num_features, feature_names "
            f"and the scaler state, found error {err!r}"
        ) from None
    if scaler.num_features != D or len(names) != D:
        raise ModelFileError(
            f"config.json: expected {D} features in the scaler and feature_names, found "
            f"{scaler.num_features} and {len(names)}"
        )
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check_state_dict(mf.state_dict, expected)
    model.load_state_dict(mf.state_dict)
    dev = resolve_device(device)
    history = mf.extra.get("history", [])
    est._set_fitted(
        model.to(dev).eval(),
        scaler,
        dev,
        feature_names=names,
        interval_scale=_interval_scale_entry(mf.extra.get("interval_scale"), D),
        history=[
            {k: math.nan if v is None else v for k, v in h.items()}
            for h in (history if isinstance(history, list) else [])
            if isinstance(h, dict)
        ],
    )
    return est
