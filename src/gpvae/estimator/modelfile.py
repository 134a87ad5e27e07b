"""The estimator's model folder: ``model.safetensors`` (weights) and ``config.json``.

``config.json`` holds the constructor arguments (kernels as JSON specs), the number and
names of the features, the scaler's state, the training history, the interval spread
factors and the gpvae version (:mod:`gpvae.io` writes and reads the files; nothing is ever
unpickled). Loading takes **no path** from the file: ``checkpoint_dir`` is written as None
and ignored when read, so a crafted folder cannot send a later ``fit``'s checkpoint writes
elsewhere.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor, nn

from gpvae.arguments import int_arg
from gpvae.data import Scaler
from gpvae.errors import GPVAEError, ModelFileError, ValidationError
from gpvae.estimator.anomaly import AnomalyProfile
from gpvae.estimator.forecast_blend import ForecastBlend
from gpvae.gp.prior import adapt_state_dict
from gpvae.io import (
    CONFIG_FILE,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    check_state_dict,
    json_number,
    read_model,
    save_model,
)
from gpvae.kernels import kernel_from_spec

__all__ = [
    "ENSEMBLE_FILE",
    "SavedModel",
    "check_ensemble",
    "check_single",
    "drop_ensemble",
    "drop_single",
    "load_weights",
    "make_folder",
    "read_folder",
    "write_folder",
]

#: The member count of an ensemble folder (:meth:`gpvae.GPVAEEnsemble.save`); its members are
#: model folders ``member_<k>`` beside it.
ENSEMBLE_FILE = "ensemble.json"
_MEMBER = re.compile(r"member_(\d+)")


def _members(root: Path) -> list[tuple[int, Path]]:
    """The member folders ``member_<k>`` (holding a model's config) in ``root``."""
    if not root.is_dir():
        return []
    found = [(_MEMBER.fullmatch(p.name), p) for p in root.iterdir() if p.is_dir()]
    return [(int(m.group(1)), p) for m, p in found if m and (p / CONFIG_FILE).exists()]


def drop_ensemble(path: str | os.PathLike[str]) -> None:
    """After a single model was written to ``path``: remove the ensemble an earlier save left
    there (``ensemble.json`` first, so the folder never reads as the old ensemble again)."""
    root = Path(path)
    if not (root / ENSEMBLE_FILE).exists():
        return
    (root / ENSEMBLE_FILE).unlink()
    for _, folder in _members(root):
        shutil.rmtree(folder, ignore_errors=True)


def _json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None (no file, not JSON, not an object)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def _written_by_gpvae(root: Path) -> bool:
    """Whether ``root/config.json`` is a gpvae model's (the document :func:`gpvae.io.save_model`
    writes: its format marker and the name of its weights file)."""
    document = _json_object(root / CONFIG_FILE)
    if document is None:
        return False
    weights = document.get("weights")
    return (
        document.get("format_version") == FORMAT_VERSION
        and "gpvae_version" in document
        and isinstance(weights, dict)
        and weights.get("file") == WEIGHTS_FILE
    )


def check_single(path: str | os.PathLike[str]) -> None:
    """Before an ensemble is written to ``path``: refuse a folder whose ``config.json`` or
    ``model.safetensors`` are not a single gpvae model's (which :func:`drop_single` would
    remove), naming them.

    Raises:
        ValidationError: such a file in ``path``.
    """
    root = Path(path)
    found = _foreign_model_files(root)
    if found:
        raise ValidationError(
            f"path: expected a folder for the ensemble without a {CONFIG_FILE} or "
            f"{WEIGHTS_FILE} of its own, or with those of a gpvae model (which the ensemble "
            f"replaces), found {', '.join(str(p) for p in found)}, not written by gpvae; "
            "save the ensemble into another folder"
        )


def _foreign_model_files(root: Path) -> list[Path]:
    """``root``'s config.json and model.safetensors when they are not a gpvae model's."""
    found = [root / name for name in (CONFIG_FILE, WEIGHTS_FILE) if (root / name).exists()]
    return found if found and not _written_by_gpvae(root) else []


def _gpvae_ensemble(root: Path) -> bool:
    """Whether ``root/ensemble.json`` is the one :meth:`GPVAEEnsemble.save` writes (its
    member count, and a first member that is a gpvae model)."""
    document = _json_object(root / ENSEMBLE_FILE)
    members = None if document is None else document.get("members")
    ok = isinstance(members, int) and not isinstance(members, bool) and members >= 1
    return ok and set(document or ()) == {"members"} and _written_by_gpvae(root / "member_0")


def check_ensemble(path: str | os.PathLike[str]) -> None:
    """Before a single model is written to ``path``: refuse a folder whose ``config.json``,
    ``model.safetensors`` (which the save replaces) or ``ensemble.json`` (which it removes,
    with the members) gpvae did not write, naming them.

    Raises:
        ValidationError: such a file in ``path``.
    """
    root = Path(path)
    foreign = _foreign_model_files(root)
    if (root / ENSEMBLE_FILE).exists() and not _gpvae_ensemble(root):
        foreign.append(root / ENSEMBLE_FILE)
    if foreign:
        raise ValidationError(
            f"path: expected a folder for the model without files of gpvae's names that "
            f"gpvae did not write (the save would replace or remove them), found "
            f"{', '.join(str(p) for p in foreign)}; save the model into another folder"
        )


def make_folder(path: str | os.PathLike[str]) -> Path:
    """The folder ``path``, created with its parents when missing.

    Raises:
        ValidationError: naming ``path`` when it cannot be created (a file in the way, a
            parent that does not exist and cannot be made, no permission).
    """
    root = Path(path)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValidationError(
            f"path: expected a folder that exists or can be created, found {str(path)!r} "
            f"({err.strerror or err})"
        ) from None
    return root


def drop_single(path: str | os.PathLike[str], count: int) -> None:
    """After an ensemble of ``count`` members was written to ``path``: remove a single gpvae
    model (never files of those names that gpvae did not write: :func:`check_single`) and
    surplus members an earlier save left there."""
    root = Path(path)
    if _written_by_gpvae(root):
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            (root / name).unlink(missing_ok=True)
    for k, folder in _members(root):
        if k >= count:
            shutil.rmtree(folder, ignore_errors=True)


@dataclass
class SavedModel:
    """The contents of a model folder.

    Attributes:
        arguments: the estimator's constructor arguments (kernel rebuilt from its spec,
            ``checkpoint_dir`` None whatever the file says).
        num_features: D.
        feature_names: the D feature names.
        scaler: the fitted scaler.
        state_dict: the model's weights.
        interval_scale: (D,) spread factors (ones for folders written before they existed).
        history: one dict per training epoch.
        anomaly_profile: the anomaly threshold profile, or None.
        forecast_scale: (bands, D) forecast spread factors, or None (not calibrated).
        blend_weight: (D,) imputation blend weights, or None (none fitted; folders written
            before they existed).
        forecast_blend: the forecast mean's blend with simple forecasts, or None.
    """

    arguments: dict[str, Any]
    num_features: int
    feature_names: list[str]
    scaler: Scaler
    state_dict: dict[str, Tensor]
    interval_scale: np.ndarray
    history: list[dict[str, float]]
    anomaly_profile: AnomalyProfile | None = None
    forecast_scale: np.ndarray | None = None
    blend_weight: np.ndarray | None = None
    forecast_blend: ForecastBlend | None = None


def write_folder(
    path: str | os.PathLike[str],
    arguments: Mapping[str, Any],
    model: nn.Module,
    scaler: Scaler,
    feature_names: list[str],
    interval_scale: np.ndarray,
    history: list[dict[str, float]],
    anomaly_profile: AnomalyProfile | None = None,
    forecast_scale: np.ndarray | None = None,
    blend_weight: np.ndarray | None = None,
    forecast_blend: ForecastBlend | None = None,
) -> None:
    """Write a fitted estimator's folder (``arguments`` as given by ``get_config``)."""
    config = {
        "estimator": {**arguments, "checkpoint_dir": None},
        "num_features": scaler.num_features,
        "feature_names": feature_names,
        "time_step": scaler.time_step_,
        "time_origin": scaler.time_origin_,
        "dtype": "float32",
    }
    extra = {
        "scaler": scaler.state_dict(),
        "history": [{k: json_number(v) for k, v in h.items()} for h in history],
        "interval_scale": np.asarray(interval_scale, dtype=np.float64).tolist(),
        "anomaly_profile": None if anomaly_profile is None else anomaly_profile.to_json(),
    }
    if forecast_scale is not None:
        extra["forecast_scale"] = np.asarray(forecast_scale, dtype=np.float64).tolist()
    if blend_weight is not None:
        extra["blend_weight"] = np.asarray(blend_weight, dtype=np.float64).tolist()
    if forecast_blend is not None:
        extra["forecast_blend"] = forecast_blend.to_json()
    make_folder(path)  # a folder that cannot be made names the path, not a raw OSError
    save_model(path, model.state_dict(), config, extra)
    drop_ensemble(path)


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


def _blend_weight_entry(value: object, D: int) -> np.ndarray | None:
    """The saved blend weights, or None when there are none."""
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float64) if isinstance(value, list) else None
    if arr is None or arr.shape != (D,) or not ((arr >= 0) & (arr <= 1)).all():
        raise ModelFileError(
            f"config.json: expected blend_weight to be {D} numbers in [0, 1], found {value!r}"
        )
    return arr


def _forecast_scale_entry(value: object, D: int) -> np.ndarray | None:
    """The saved forecast spread factors (bands, D), or None when there are none."""
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float64) if isinstance(value, list) else np.zeros((0, 0))
    ok = arr.ndim == 2 and arr.shape[1] == D and arr.shape[0] >= 1
    if not ok or not (np.isfinite(arr).all() and (arr > 0).all()):
        raise ModelFileError(
            f"config.json: expected forecast_scale to be rows of {D} positive numbers, "
            f"found {value!r}"
        )
    return arr


def read_folder(path: str | os.PathLike[str]) -> SavedModel:
    """Read a model folder written by :func:`write_folder`.

    Raises:
        ModelFileError: missing or malformed files.
    """
    root = Path(path)
    if (root / ENSEMBLE_FILE).is_file() and not (root / CONFIG_FILE).exists():
        raise ModelFileError(
            f"path: expected a single model's folder, found an ensemble's ({ENSEMBLE_FILE} "
            f"and member_<k> folders) at {root}; load it with gpvae.GPVAEEnsemble.load"
        )
    if not (root / CONFIG_FILE).exists() and (root / "model" / CONFIG_FILE).is_file():
        raise ModelFileError(  # the folder of `gpvae fit -o DIR` holds the model in DIR/model
            f"path: expected a model folder holding {CONFIG_FILE}, found none at {root}, but "
            f"{root / 'model'} holds one (a `gpvae fit` output folder keeps its model there); "
            f"load {str(root / 'model')!r}"
        )
    mf = read_model(path)
    cfg = mf.config
    try:
        args = dict(cfg["estimator"])
        args["kernel"] = kernel_from_spec(args["kernel"])
        args["hidden"] = tuple(args["hidden"])
        args["checkpoint_dir"] = None  # never a path from the file
        D = int_arg("num_features", cfg["num_features"])
        scaler = Scaler.from_state_dict(mf.extra["scaler"])
        names = [str(s) for s in cfg["feature_names"]]
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
    history = mf.extra.get("history", [])
    profile = mf.extra.get("anomaly_profile")
    return SavedModel(
        arguments=args,
        num_features=D,
        feature_names=names,
        scaler=scaler,
        state_dict=mf.state_dict,
        interval_scale=_interval_scale_entry(mf.extra.get("interval_scale"), D),
        forecast_scale=_forecast_scale_entry(mf.extra.get("forecast_scale"), D),
        blend_weight=_blend_weight_entry(mf.extra.get("blend_weight"), D),
        forecast_blend=None
        if mf.extra.get("forecast_blend") is None
        else ForecastBlend.from_json(mf.extra["forecast_blend"], D),
        history=[
            {k: math.nan if v is None else v for k, v in h.items()}
            for h in (history if isinstance(history, list) else [])
            if isinstance(h, dict)
        ],
        anomaly_profile=None if profile is None else AnomalyProfile.from_json(profile, D),
    )


def load_weights(model: nn.Module, state_dict: Mapping[str, Tensor]) -> None:
    """Load saved weights into ``model``, checking every name and shape first.

    Raises:
        ModelFileError: weights whose names or shapes do not match the model.
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    # kernel hyper-parameters saved one per channel kernel (files of gpvae before the GP
    # priors packed them) in the layout of the model's priors
    state_dict = adapt_state_dict(model, state_dict)
    check_state_dict(state_dict, expected)
    model.load_state_dict(state_dict)
