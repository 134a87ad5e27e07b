"""The estimator's save / load / get_config (a mixin of :class:`~gpvae.estimator.GPVAE`).

The folder format itself (safetensors weights and a JSON config, nothing pickled) is
:mod:`gpvae.estimator.modelfile`; this module maps the estimator to and from it.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

import torch
from torch import nn

from gpvae.errors import GPVAEError, ModelFileError, ValidationError
from gpvae.estimator.assembly import resolve_device
from gpvae.estimator.modelfile import check_ensemble, load_weights, read_folder, write_folder
from gpvae.kernels import kernel_spec
from gpvae.nets.registry import decoder_names, encoder_names
from gpvae.training import distributed

__all__ = ["ARGUMENTS", "PersistenceMethods"]

_T = TypeVar("_T", bound="PersistenceMethods")

#: The estimator's constructor arguments, in order: what get_config writes and load reads.
ARGUMENTS = (
    "latent_dim",
    "kernel",
    "posterior",
    "backend",
    "likelihood",
    "encoder",
    "decoder",
    "hidden",
    "beta",
    "epochs",
    "batch_size",
    "lr",
    "optimizer",
    "patience",
    "val_fraction",
    "val_pattern",
    "mask_rate",
    "mask_pattern",
    "block_lengths",
    "interp_skip",
    "interp_cross",
    "interp_blend",
    "calibrate",
    "num_samples",
    "lengthscale",
    "period",
    "kernel_lr",
    "noise_lr",
    "window",
    "forecast_horizon",
    "forecast_blend",
    "difference",
    "device",
    "seed",
    "progress",
    "checkpoint_dir",
    "checkpoint_every",
)


class PersistenceMethods:
    """save, load and get_config of the estimator."""

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as JSON-able values (kernels as specs).

        Raises:
            ValidationError: naming ``encoder``/``decoder`` when it is an ``nn.Module``, or
                ``kernel`` for a kernel instance that cannot be rebuilt from JSON.
        """
        est: Any = self  # the GPVAE this is mixed into
        for name, options in (("encoder", encoder_names()), ("decoder", decoder_names())):
            if isinstance(getattr(est, name), nn.Module):
                raise ValidationError(
                    f"{name}: expected a named network ({', '.join(options)}) to save the "
                    f"model to JSON, found a custom {type(getattr(est, name)).__name__}; "
                    "save its weights with torch yourself"
                )
        config = {name: getattr(est, name) for name in ARGUMENTS}
        config["kernel"] = kernel_spec(est.kernel)
        config["hidden"] = list(est.hidden)
        config["block_lengths"] = list(est.block_lengths)
        if isinstance(est.lengthscale, tuple):  # one per latent channel
            config["lengthscale"] = list(est.lengthscale)
        config["device"] = str(est.device)
        if est.checkpoint_dir is not None:
            config["checkpoint_dir"] = str(est.checkpoint_dir)
        return config

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the fitted model to the directory ``path``: ``model.safetensors`` (weights)
        and ``config.json`` (constructor arguments, D, feature names, time scale, scaler
        state, history, gpvae version; no paths). Nothing is pickled.

        Raises:
            NotFittedError: before fit.
            ValidationError: a custom encoder/decoder module or a kernel instance that JSON
                cannot describe (names the argument); ``path`` holds a ``config.json``,
                ``model.safetensors`` or ``ensemble.json`` that gpvae did not write (nothing
                is written then); ``path`` cannot be created as a folder (a file in the
                way, a missing parent that cannot be made, no permission).

        Under torchrun only process 0 writes (the others return at once, without waiting).
        """
        est: Any = self
        model, scaler = est._fitted("save")
        if not distributed.is_main_process():
            return  # under torchrun, process 0 writes the folder
        check_ensemble(path)  # before writing: never replace files gpvae did not write
        config = self.get_config()
        if est.spatial_ is not None:  # what the fit learned of the space (not an argument)
            config["spatial"] = est.spatial_.to_json()
        write_folder(
            path,
            config,
            model,
            scaler,
            list(est.feature_names_ or []),
            est._context("save").interval_scale,
            est.history_,
            est.anomaly_profile_,
            est.forecast_scale_,
            est.blend_weight_,
            est.forecast_blend_,
        )

    @classmethod
    def load(cls: type[_T], path: str | os.PathLike[str], device: str | torch.device = "cpu") -> _T:
        """Load a model saved by :meth:`save` (never unpickles anything, and takes no path
        from the files: ``checkpoint_dir`` is None after loading).

        Args:
            path: the model directory.
            device: where to put the model (default the CPU; ``"auto"`` picks cuda/mps).

        Raises:
            ModelFileError: missing or malformed files (for the output folder of ``gpvae
                fit``, it names its ``model`` subfolder, where the model is), a config that
                does not describe a valid estimator, or weights whose names or shapes do not
                match it.
            ValidationError: a ``device`` torch cannot use in this process.
        """
        dev = resolve_device(device)  # an unavailable device fails before any reading
        saved = read_folder(path)
        arguments = dict(saved.arguments)
        spatial = arguments.pop("spatial", None)
        try:
            est: Any = cls(**{**arguments, "device": device})
            if spatial is not None:
                model = est._spatial_model(spatial, saved.num_features)
            else:  # periods the user gave stay fixed, as in fit (resolve_periods)
                model = est._build_model(saved.num_features, learn_period=est.period is None)
        except GPVAEError as err:
            raise ModelFileError(f"config.json: does not describe a GPVAE ({err})") from None
        except (KeyError, ValueError) as err:
            raise ModelFileError(f"config.json: malformed spatial entry ({err!r})") from None
        except TypeError as err:  # unknown or missing constructor arguments
            raise ModelFileError(
                f"config.json: expected the estimator's arguments, found error {err!r}"
            ) from None
        load_weights(model, saved.state_dict)
        est._set_fitted(
            model.to(dev).eval(),
            saved.scaler,
            dev,
            feature_names=saved.feature_names,
            interval_scale=saved.interval_scale,
            history=saved.history,
            anomaly_profile=saved.anomaly_profile,
            forecast_scale=saved.forecast_scale,
            forecast_blend=saved.forecast_blend,
            blend_weight=saved.blend_weight,
            spatial=est.spatial_,  # read by _spatial_model
        )
        return est
