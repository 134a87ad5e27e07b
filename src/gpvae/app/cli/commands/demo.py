"""``gpvae demo``: the whole job end to end on embedded real data (:mod:`gpvae.app.demo`)."""

from __future__ import annotations

import click

from gpvae.app.cli.errors import info
from gpvae.app.cli.options import Command, examples, positive_int

__all__ = ["demo"]


@click.command(cls=Command)
@click.option(
    "--out",
    "out",
    default="gpvae-demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the CSVs, metrics.json and the PNG plots.",
)
@click.option(
    "--epochs",
    default=None,
    callback=positive_int,
    type=int,
    help="Training epochs (default: the tuned setting).",
)
@click.option("--quick", is_flag=True, help="A ~30 s version (fewer epochs, shorter data).")
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=click.IntRange(min=0, max=2**63 - 1),
    help="Random seed.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@examples("  gpvae demo --out gpvae-demo\n  gpvae demo --quick --out /tmp/demo")
@click.pass_context
def demo(
    ctx: click.Context, out: str, epochs: int | None, quick: bool, seed: int, quiet: bool
) -> None:
    """Run the whole job on real data: 4 years of daily Seattle weather.

    Hides 20% of the entries and three 30-day gaps, fits a GP-VAE, imputes with 90%
    intervals, forecasts the last 4 weeks (held out), scores anomalies, prints the MAE on
    the hidden entries against mean, LOCF and linear interpolation, and writes
    imputed.csv, forecast.csv, anomalies.csv, metrics.json and PNG plots into --out.
    """
    from pathlib import Path

    import torch

    from gpvae.app.cli.tables import make_folder
    from gpvae.app.demo import run_demo

    make_folder(Path(out), "--out")  # before the work, naming the option

    if ctx.obj.get("threads") is None:
        torch.set_num_threads(1)  # the demo's small networks run fastest on one thread
    run_demo(out, epochs=epochs, quick=quick, seed=seed, progress=not quiet, echo=info)
