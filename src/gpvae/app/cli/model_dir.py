"""MODEL_DIR, the folder that ``gpvae fit`` writes: the model (``model/``) and its column
layout (``cli.json``), loaded back by ``impute``, ``forecast``, ``detect`` and ``sample``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from gpvae.app.cli.errors import CLIError, as_cli

if TYPE_CHECKING:
    from gpvae.app.cli.columns import ColumnSpec
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


def _spatial(model_dir: Path) -> bool:
    """Whether MODEL_DIR holds a spatial model (``fit --coord-cols``: no cli.json, which the
    commands would otherwise report as missing); False when its config is not readable here
    (the model's own loading reports it)."""
    config = model_dir / MODEL_SUBDIR / "config.json"
    try:
        spatial = json.loads(config.read_text())["config"]["estimator"].get("spatial")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return spatial is not None


def _refuse_spatial(model_dir: Path) -> None:
    """A spatial model is served by ``impute`` (the gaps of observed sites) and
    ``predict-sites`` (new sites) only: say so."""
    if _spatial(model_dir):
        raise CLIError(
            f"MODEL_DIR: expected a time-series model, found a spatial one in {str(model_dir)!r} "
            "(fitted with --coord-cols), which 'gpvae impute' (gaps at observed sites) and "
            "'gpvae predict-sites' (new sites) use"
        )


@overload
def load_model(path: str) -> tuple[GPVAE, ColumnSpec]: ...


@overload
def load_model(
    path: str, forecasts_only_ok: Literal[False] = ..., *, spatial_ok: Literal[True]
) -> tuple[GPVAE, ColumnSpec]: ...


@overload
def load_model(
    path: str, forecasts_only_ok: Literal[True]
) -> tuple[GPVAE | GPVAEEnsemble, ColumnSpec]: ...


def load_model(
    path: str, forecasts_only_ok: bool = False, *, spatial_ok: bool = False
) -> tuple[Any, ColumnSpec]:
    """The fitted estimator and the column layout saved in MODEL_DIR: a
    :class:`gpvae.GPVAE`, or a :class:`gpvae.GPVAEEnsemble` (``fit --members K``).

    A model that forecasts only (an ensemble, or a model of increments: ``fit --members K``,
    ``--difference``, ``--difference-columns``) is refused, naming MODEL_DIR and the fit
    option, unless the command forecasts (``forecasts_only_ok``: forecast and backtest).
    A spatial model (``fit --coord-cols``) is refused, saying which commands use it, unless
    ``spatial_ok`` (``impute``); its layout is then the site id, time and feature columns
    stored with the model (the coordinate columns are in ``model.spatial_.projection``).
    """
    from gpvae.app.cli.columns import ColumnSpec
    from gpvae.estimator import GPVAE, GPVAEEnsemble
    from gpvae.estimator.ensemble import ENSEMBLE_FILE

    model_dir = check_model_dir(path)
    if spatial_ok and _spatial(model_dir):
        with as_cli("MODEL_DIR"):
            model = GPVAE.load(model_dir / MODEL_SUBDIR)
        sites = model.spatial_
        assert sites is not None  # the config read by _spatial says so
        columns = ColumnSpec(time_col=sites.time, id_col=sites.id, features=list(sites.features))
        return model, columns
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
