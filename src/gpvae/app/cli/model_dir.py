"""MODEL_DIR, the folder that ``gpvae fit`` writes: the model (``model/``) and its column
layout (``cli.json``), loaded back by ``impute``, ``forecast``, ``detect`` and ``sample``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from gpvae.app.cli.columns import ColumnSpec
from gpvae.app.cli.errors import CLIError, as_cli

if TYPE_CHECKING:
    from gpvae.estimator import GPVAE, GPVAEEnsemble

__all__ = ["MODEL_SUBDIR", "check_model_dir", "load_model"]

#: The model's folder inside MODEL_DIR (written by :meth:`gpvae.GPVAE.save`).
MODEL_SUBDIR = "model"


def check_model_dir(path: str) -> Path:
    """The MODEL_DIR argument as a path, or an error when it is missing or a file."""
    p = Path(path)
    if not p.exists():
        raise CLIError(f"MODEL_DIR: not found: {str(p)!r} (create it with 'gpvae fit')")
    if not p.is_dir():
        raise CLIError(f"MODEL_DIR: expected a directory written by 'gpvae fit', found a file {p}")
    return p


def _refuse_spatial(model_dir: Path) -> None:
    """A spatial model (``fit --coord-cols``) is served by ``predict-sites`` only: say so
    (it has no cli.json, which the other commands would otherwise report as missing)."""
    config = model_dir / MODEL_SUBDIR / "config.json"
    try:
        spatial = json.loads(config.read_text())["config"]["estimator"].get("spatial")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return  # not readable here: the model's own loading reports it
    if spatial is not None:
        raise CLIError(
            f"MODEL_DIR: expected a time-series model, found a spatial one in {str(model_dir)!r} "
            "(fitted with --coord-cols), which 'gpvae predict-sites' uses"
        )


@overload
def load_model(path: str) -> tuple[GPVAE, ColumnSpec]: ...


@overload
def load_model(
    path: str, forecasts_only_ok: Literal[True]
) -> tuple[GPVAE | GPVAEEnsemble, ColumnSpec]: ...


def load_model(path: str, forecasts_only_ok: bool = False) -> tuple[Any, ColumnSpec]:
    """The fitted estimator and the column layout saved in MODEL_DIR: a
    :class:`gpvae.GPVAE`, or a :class:`gpvae.GPVAEEnsemble` (``fit --members K``).

    A model that forecasts only (an ensemble, or a model of increments: ``fit --members K``,
    ``--difference``, ``--difference-columns``) is refused, naming MODEL_DIR and the fit
    option, unless the command forecasts (``forecasts_only_ok``: forecast and backtest).
    """
    from gpvae.estimator import GPVAE, GPVAEEnsemble
    from gpvae.estimator.ensemble import ENSEMBLE_FILE

    model_dir = check_model_dir(path)
    _refuse_spatial(model_dir)
    spec = ColumnSpec.load(model_dir)
    folder = model_dir / MODEL_SUBDIR
    with as_cli("MODEL_DIR"):
        if not (folder / ENSEMBLE_FILE).exists():
            model = GPVAE.load(folder)
            if model.difference and not forecasts_only_ok:
                option = "--difference" if model.difference is True else "--difference-columns"
                raise CLIError(
                    f"MODEL_DIR: expected a model of the series' levels, found one of their "
                    f"increments ({path} was fitted with {option}, which forecasts and "
                    f"backtests only); fit without {option} to impute, detect or sample"
                )
            return model, spec
        if not forecasts_only_ok:
            raise CLIError(
                f"MODEL_DIR: expected a single model, found an ensemble ({path} was fitted "
                "with --members > 1, which forecasts and backtests only); fit with --members 1 "
                "to impute, detect or sample"
            )
        return GPVAEEnsemble.load(folder), spec
