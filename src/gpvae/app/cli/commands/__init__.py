"""The ``gpvae`` commands, one per module; :mod:`gpvae.app.cli` adds them to its group."""

from __future__ import annotations

from gpvae.app.cli.commands.backtest import backtest
from gpvae.app.cli.commands.demo import demo
from gpvae.app.cli.commands.detect import detect
from gpvae.app.cli.commands.fit import fit
from gpvae.app.cli.commands.forecast import forecast
from gpvae.app.cli.commands.impute import impute
from gpvae.app.cli.commands.predict_sites import predict_sites
from gpvae.app.cli.commands.sample import sample

#: In the order of ``gpvae --help``.
COMMANDS = (demo, fit, impute, forecast, backtest, detect, sample, predict_sites)

__all__ = [
    "COMMANDS",
    "backtest",
    "demo",
    "detect",
    "fit",
    "forecast",
    "impute",
    "predict_sites",
    "sample",
]
