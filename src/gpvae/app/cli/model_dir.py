"""MODEL_DIR, the folder that ``gpvae fit`` writes: the model (``model/``) and its column
layout (``cli.json``), loaded back by ``impute``, ``forecast``, ``detect`` and ``sample``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gpvae.app.cli.columns import ColumnSpec
from gpvae.app.cli.errors import CLIError, as_cli

if TYPE_CHECKING:
    from gpvae.estimator import GPVAE

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


def load_model(path: str) -> tuple[GPVAE, ColumnSpec]:
    """The fitted estimator and the column layout saved in MODEL_DIR."""
    from gpvae.estimator import GPVAE

    model_dir = check_model_dir(path)
    spec = ColumnSpec.load(model_dir)
    with as_cli("MODEL_DIR"):
        model = GPVAE.load(model_dir / MODEL_SUBDIR)
    return model, spec
