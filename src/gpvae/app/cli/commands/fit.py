"""``gpvae fit``: fit a GP-VAE to a data file and write MODEL_DIR (model + ``cli.json``).

The kernel, encoder and likelihood choices are the registries' names
(:func:`gpvae.kernels.kernel_names`, :func:`gpvae.nets.registry.encoder_names`,
:func:`gpvae.likelihoods.likelihood_names`), as :mod:`gpvae.app.cli.choices` holds them
(without importing torch, for ``gpvae fit --help`` and its usage errors); the modules that
do the work (tables, the estimator) are imported where the work starts.
"""

from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path
from typing import Any

import click
import numpy as np

from gpvae import settings
from gpvae.app.cli.choices import (
    DECODER_NAMES,
    ENCODER_NAMES,
    HIDE_PATTERNS,
    KERNEL_NAMES,
    LIKELIHOOD_NAMES,
    MASK_PATTERNS,
    decoder_key,
    encoder_key,
    kernel_key,
    likelihood_key,
)
from gpvae.app.cli.errors import CLIError, as_cli, cli_remedies, cli_warning_words, info
from gpvae.app.cli.model_dir import MODEL_SUBDIR
from gpvae.app.cli.options import (
    Command,
    FiniteFloat,
    FiniteRange,
    RegistryChoice,
    examples,
    hidden_sizes,
    lengthscales,
    merge_option,
    positive_float,
    positive_int,
    rank_window,
)
from gpvae.errors import NumericalError

__all__ = ["fit", "fit_spatial"]


@click.command(cls=Command)
@click.argument("data", type=str)
@click.option("--time-col", required=True, help="Name of the time column (numbers or dates).")
@click.option("--id-col", default=None, help="Series id column (long files); omit for one series.")
@click.option(
    "--features",
    default=None,
    help="Comma-separated feature columns (default: all other numeric columns).",
)
@click.option(
    "-o",
    "--out",
    "model_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder to write the model into (created if needed).",
)
@click.option("--epochs", default=100, show_default=True, callback=positive_int)
@click.option("--latent-dim", default=8, show_default=True, callback=positive_int)
@click.option(
    "--kernel",
    default="matern32",
    show_default=True,
    type=RegistryChoice(KERNEL_NAMES, kernel_key),
    help="GP kernel of every latent channel; '+' adds kernels and '*' multiplies them "
    "(e.g. matern32+periodic, periodic*matern32).",
)
@click.option(
    "--period",
    "periods",
    multiple=True,
    help="Period of the periodic kernel(s), in the time column's units or as a duration or "
    "calendar offset (24h, 365.25D, 12MS); repeat once per periodic factor. Fixed in "
    "training. Default: found in the data's spectrum and learned.",
)
@click.option(
    "--forecast-horizon",
    default=None,
    type=int,
    callback=positive_int,
    help="Calibrate the forecast intervals for this many steps ahead (rolling origins "
    "inside the training data).",
)
@click.option(
    "--forecast-blend",
    is_flag=True,
    help="With --forecast-horizon: blend the forecast mean with a simple forecast (last "
    "value, seasonal naive, drift) where that beats the model on the calibration origins.",
)
@click.option(
    "--difference",
    is_flag=True,
    help="Model the steps y[t] - y[t-1] and forecast their cumulated sum from the last "
    "value (for trending series; such a model forecasts only: no detect threshold).",
)
@click.option(
    "--difference-columns",
    default=None,
    metavar="COLS",
    help="Like --difference for these comma-separated feature columns only; the others are "
    "modelled by their levels (a rate or change beside trending counts).",
)
@click.option(
    "--lengthscale",
    default=None,
    callback=lengthscales,
    metavar="STEPS",
    help="Initial kernel lengthscale, in time steps (one step = the median spacing of the "
    "training times), or one per latent channel, comma-separated (e.g. 3,6,12,24 with "
    f"--latent-dim 4: a bank of time scales). Default: {settings.DEFAULT_LENGTHSCALE:g}.",
)
@click.option(
    "--encoder",
    default="mlp",
    show_default=True,
    type=RegistryChoice(ENCODER_NAMES, encoder_key),
    help="Encoder network ('partial' combines per-feature evidence).",
)
@click.option(
    "--decoder",
    default="mlp",
    show_default=True,
    type=RegistryChoice(DECODER_NAMES, decoder_key),
    help="Decoder network ('cnn': features are the pixels of square image frames, as with "
    "--encoder cnn).",
)
@click.option(
    "--likelihood",
    default="gaussian",
    show_default=True,
    type=RegistryChoice(LIKELIHOOD_NAMES, likelihood_key),
    help="Observation model ('gaussian_gp': each feature's own deviations form a GP in time).",
)
@click.option(
    "--hidden",
    default="128,128",
    show_default=True,
    callback=hidden_sizes,
    help="Hidden layer widths of encoder and decoder.",
)
@click.option("--lr", default=1e-3, show_default=True, callback=positive_float)
@click.option(
    "--kernel-lr",
    default=None,
    type=FiniteFloat,
    callback=positive_float,
    help="Learning rate of the kernel hyper-parameters (default: the larger of --lr and 1e-2).",
)
@click.option(
    "--noise-lr",
    default=None,
    type=FiniteFloat,
    callback=positive_float,
    help="Learning rate of the likelihood's noise parameters, in their own optimiser group "
    "(default: --lr, at which the noise moves little in a few hundred steps; docs/results.md).",
)
@click.option("--batch-size", default=32, show_default=True, callback=positive_int)
@click.option(
    "--patience",
    default=10,
    show_default=True,
    type=click.IntRange(min=0),
    help="Stop after this many epochs without improvement of the validation score (0: "
    "never stop early; the fit keeps the epoch of the best score either way).",
)
@click.option(
    "--window",
    default=None,
    type=click.IntRange(min=2),
    help="Cut long series into overlapping windows of this many steps for training "
    "(half-overlapping); helps a single long series.",
)
@click.option(
    "--calibrate/--no-calibrate",
    default=True,
    show_default=True,
    help="Rescale the imputation intervals per feature to cover held-out entries.",
)
@click.option(
    "--interp-skip",
    is_flag=True,
    help="Fuse the decoder's prediction with each feature's interpolation between its "
    "observed neighbours (in time; with --coord-cols also over the other sites at the same "
    "time); learned from entries hidden by --mask-rate.",
)
@click.option(
    "--interp-cross",
    is_flag=True,
    help="With --interp-skip (in time only): add a feature regression from the other "
    "features at the same step and interpolate its residual, so a gap of one feature "
    "follows the others through it.",
)
@click.option(
    "--interp-cross-options",
    default=None,
    help="The feature regression's options joined by '+' (fill, window, fade, fit; the "
    "imputation benchmark's: fill+fit+fade); implies --interp-cross.",
)
@click.option(
    "--interp-blend",
    is_flag=True,
    help="After training, blend each feature's imputation with its linear interpolation, "
    "with the weight that does best on the held-out validation entries.",
)
@click.option(
    "--mask-rate",
    default=0.0,
    show_default=True,
    type=FiniteRange(min=0.0, max=1.0, max_open=True),
    help="Share of the observed entries hidden from the encoder at every training step "
    "(and scored): trains the model to fill gaps.",
)
@click.option(
    "--mask-pattern",
    default="points",
    show_default=True,
    type=click.Choice(MASK_PATTERNS),
    help="Shape of the entries --mask-rate hides: single points, blocks of one feature "
    "(--block-lengths), runs of whole steps with every feature hidden (steps, "
    "--block-lengths), or whole sites (with --coord-cols: the task of predict-sites).",
)
@click.option(
    "--val-pattern",
    default="points",
    show_default=True,
    type=click.Choice(HIDE_PATTERNS),
    help="Shape of the held-out validation entries (early stopping and interval "
    "calibration): match the gaps you will impute: blocks when one feature is missing "
    "for a while, steps when every feature is (a recorder off; runs of --block-lengths).",
)
@click.option(
    "--block-lengths",
    default="2,24",
    show_default=True,
    help="Shortest,longest block in steps, for the 'blocks' and 'steps' patterns.",
)
@click.option(
    "--coord-cols",
    default=None,
    help="Two coordinate columns (e.g. lat,lon in degrees, or x,y in km): spatial data, one "
    "site per --id-col; the latents become GPs over space x time (see predict-sites).",
)
@click.option(
    "--inducing",
    default=None,
    type=int,
    callback=positive_int,
    help="With --coord-cols: this many learnable inducing sites (the sparse backend).",
)
@click.option(
    "--false-alarm-rate",
    default=0.01,
    show_default=True,
    type=FiniteRange(min=0.0, max=1.0, min_open=True, max_open=True),
    help="Share of the training data's steps that detect's stored threshold flags.",
)
@click.option(
    "--smooth",
    default=None,
    callback=positive_int,
    type=int,
    help="Average detect's step score over the last this many steps (default 1: none; "
    "longer suits anomalies that last, see docs/benchmarks.md); the stored threshold is "
    "compared with the step's own score.",
)
@click.option(
    "--causal-scores",
    is_flag=True,
    help="detect scores each step from the steps before it only (a forecast score, for "
    "monitoring a stream; default: from its neighbours on both sides).",
)
@click.option(
    "--spread-baseline/--no-spread-baseline",
    default=None,
    help="With --rank-window 0: detect's alarm divides the score's rise over its recent "
    "median by its recent spread (the default), so that new data whose normal scores vary "
    "more or less than the training data's keep about the --false-alarm-rate.",
)
@click.option(
    "--feature-scale",
    default=None,
    type=click.Choice(["spread", "tail"]),
    help="How detect puts the features' scores on one scale: as -log of the share of the "
    "training scores at least as large (tail, the default: a 0/1 flag that is rarely set does "
    "not drown the other features when it is), or divided by their spread.",
)
@click.option(
    "--combine",
    default=None,
    type=click.Choice(["sum", "max"]),
    help="detect's step score: the largest (max, the default) or the sum of the features' "
    "scaled scores.",
)
@click.option(
    "--novelty",
    default=None,
    type=click.Choice(["extrapolate", "cap"]),
    help="detect's alarm (with --feature-scale tail) counts a new value of a feature that is "
    "constant in the training data as rare as one training step in n + 1, no rarer (cap, the "
    "default), or on the tail's exponential extrapolation.",
)
@click.option(
    "--spread-quantile",
    default=None,
    type=FiniteRange(min=0.5, max=1.0, min_open=True, max_open=True),
    help="With the spread baseline: detect's spread is this quantile of the recent scores "
    "less their median (default: gpvae.settings.ANOMALY_SPREAD_QUANTILE).",
)
@click.option(
    "--rank-window",
    default=None,
    type=int,
    callback=rank_window,
    help="detect's alarm is the rank of each step's score among those of the previous N "
    "steps (a share, 0 to 1), so new data whose normal scores change in level, spread or "
    "shape keep about the --false-alarm-rate; 0: the spread baseline instead (default: "
    "gpvae.settings.ANOMALY_RANK_WINDOW, 256).",
)
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0, max=2**63 - 1))
@click.option(
    "--members",
    default=1,
    show_default=True,
    callback=positive_int,
    help="Fit this many models of the configuration from the seeds --seed, --seed + 1, ... "
    "and forecast with their mixture (gpvae.GPVAEEnsemble; such a MODEL_DIR forecasts and "
    "backtests only).",
)
@click.option(
    "--resume", is_flag=True, help="Continue an interrupted fit from MODEL_DIR's checkpoint."
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@merge_option
@examples(
    "  gpvae fit weather.csv --time-col date -o model/ --epochs 50\n"
    "  gpvae fit sensors.parquet --time-col time --id-col station \\\n"
    "      --features temp,humidity -o model/"
)
def fit(
    data: str,
    time_col: str,
    id_col: str | None,
    features: str | None,
    model_dir: str,
    epochs: int,
    latent_dim: int,
    kernel: str,
    periods: tuple[str, ...],
    forecast_horizon: int | None,
    forecast_blend: bool,
    difference: bool,
    difference_columns: str | None,
    lengthscale: float | tuple[float, ...] | None,
    encoder: str,
    decoder: str,
    likelihood: str,
    hidden: tuple[int, ...],
    lr: float,
    kernel_lr: float | None,
    noise_lr: float | None,
    batch_size: int,
    patience: int,
    window: int | None,
    calibrate: bool,
    interp_skip: bool,
    interp_cross: bool,
    interp_cross_options: str | None,
    interp_blend: bool,
    mask_rate: float,
    mask_pattern: str,
    val_pattern: str,
    block_lengths: str,
    false_alarm_rate: float,
    smooth: int | None,
    causal_scores: bool,
    spread_baseline: bool | None,
    feature_scale: str | None,
    combine: str | None,
    novelty: str | None,
    spread_quantile: float | None,
    rank_window: int | None,
    coord_cols: str | None,
    inducing: int | None,
    seed: int,
    members: int,
    resume: bool,
    quiet: bool,
    merge_duplicates: bool,
) -> None:
    """Fit a GP-VAE to a CSV or Parquet file (NaN or empty cells are missing values).

    DATA is long (--id-col: one row per series and time) or wide (one series). The model
    and the column layout (cli.json) are written to MODEL_DIR for impute, forecast, detect
    and sample.
    """
    from gpvae.app.cli import shards
    from gpvae.app.cli.columns import record_times, series_set, spec_from_fit
    from gpvae.app.cli.tables import make_folder
    from gpvae.estimator import GPVAE, GPVAEEnsemble
    from gpvae.estimator.spatial_methods import SPATIAL_ONE_PROCESS

    out = Path(model_dir)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out: expected a folder for the model, found the file {str(out)!r}")
    with as_cli("fit", _option_names()):  # the estimator checks the options it takes
        make: Any = partial(GPVAEEnsemble, members) if members > 1 else GPVAE
        settings: dict[str, Any] = dict(
            latent_dim=latent_dim,
            kernel=kernel,
            encoder=encoder,
            decoder=decoder,
            likelihood=likelihood,
            hidden=hidden,
            lengthscale=lengthscale,
            period=_periods(periods),
            window=window,
            forecast_horizon=forecast_horizon,
            forecast_blend=forecast_blend,
            difference=difference or _difference_columns(difference_columns),
            epochs=epochs,
            lr=lr,
            kernel_lr=kernel_lr,
            noise_lr=noise_lr,
            batch_size=batch_size,
            patience=patience if patience > 0 else None,
            calibrate=calibrate,
            interp_skip=interp_skip,
            interp_cross=interp_cross_options or interp_cross,
            interp_blend=interp_blend,
            mask_rate=mask_rate,
            mask_pattern=mask_pattern,
            val_pattern=val_pattern,
            block_lengths=_lengths(block_lengths),
            seed=seed,
            progress=not quiet,
            # a spatial fit writes no checkpoint (GPVAE refuses checkpoint_dir with coords)
            checkpoint_dir=None if coord_cols is not None else str(out / "checkpoints"),
        )
        model = make(**settings)  # checks the model options before any data is read
    run = shards.job()
    ignored = _ignored_options(coord_cols is not None, difference, difference_columns, inducing)
    if ignored is not None:  # before DATA is read, on every process
        raise shards.everywhere(CLIError(ignored), run)
    if members > 1 and (coord_cols is not None or run.world > 1):  # on every process
        raise shards.everywhere(
            CLIError(
                f"--members: an ensemble is fitted in one process without --coord-cols, found "
                f"{run.world} process(es){' and --coord-cols' if coord_cols else ''}"
            ),
            run,
        )
    # an ensemble or a model of increments forecasts only: it has no anomaly threshold
    forecaster = "--members > 1" if members > 1 else "--difference" if model.difference else None
    rate_source = click.get_current_context().get_parameter_source("false_alarm_rate")
    unused = [
        flag
        for flag, given in (
            # given on the command line, not left at its default
            (
                "--false-alarm-rate",
                rate_source not in (None, click.core.ParameterSource.DEFAULT),
            ),
            ("--causal-scores", causal_scores),
            (
                "--spread-baseline" if spread_baseline else "--no-spread-baseline",
                spread_baseline is not None,
            ),
            ("--smooth", smooth is not None),
            ("--feature-scale", feature_scale is not None),
            ("--combine", combine is not None),
            ("--novelty", novelty is not None),
            ("--spread-quantile", spread_quantile is not None),
            ("--rank-window", rank_window is not None),
        )
        if given
    ]
    if forecaster and unused:  # before DATA is read, on every process
        raise shards.everywhere(
            CLIError(
                f"{unused[0]}: sets detect's anomaly threshold, which a model fitted with "
                f"{forecaster} does not have (it forecasts and backtests only); leave out "
                f"{', '.join(unused)}"
            ),
            run,
        )
    if coord_cols is not None and merge_duplicates:  # before DATA is read, on every process
        raise shards.everywhere(
            CLIError(
                "--merge-duplicate-times: merges the rows of a series that share a time, which "
                "a fit with --coord-cols (one row per site and time) does not do; leave it out"
            ),
            run,
        )
    if coord_cols is not None and run.world > 1:  # before DATA is read, on every process
        raise shards.everywhere(
            CLIError(f"--coord-cols: {SPATIAL_ONE_PROCESS}, found {run.world} processes"), run
        )
    source = shards.read_input(data, id_col, run, share=False)
    frame = source.frame
    if coord_cols is not None:
        fit_spatial(model, frame, out, time_col, id_col, coord_cols, features, window, inducing)
        return
    with run.together():
        spec = spec_from_fit(frame, time_col, id_col, features)
        series = series_set(frame, spec, "DATA", loose=True, merge=merge_duplicates, id_option=True)
    # with a folder each process holds its own series (else every process holds them all)
    sharded = source.folder and run.world > 1
    D = len(spec.features)
    seen = [sum(int((~np.isnan(v[:, j])).sum()) for v in series.values) for j in range(D)]
    if sharded:
        seen = [int(c) for c in run.sums(seen)]
    for feature, count in zip(spec.features, seen):
        if count == 0:
            raise shards.everywhere(
                CLIError(
                    f"DATA: expected at least one value in every feature column, found none "
                    f"in {feature!r} (leave it out of --features)"
                ),
                run,
            )
    with run.together():
        if sharded:
            shards.record_times_all(spec, frame, series, run)
        else:
            record_times(spec, frame, series)
        given = _periods(periods) or []
        if spec.time_type == "duration" and any(isinstance(p, str) for p in given):
            # durations reach the model as numbers of hours: '24h' is 24 of them
            with as_cli("fit", {"period": "--period"}):
                model = make(**{**settings, "period": _period_hours(given)})
        previous = (out / MODEL_SUBDIR / "config.json").is_file()  # kept if interrupted
        if run.is_main:
            make_folder(out, "--out")
            make_folder(out / "checkpoints", "--out")  # the fit's, named as --out's part
            from gpvae.training.session import CHECKPOINT_FILE  # (torch: after --help)

            if resume and not (out / "checkpoints" / CHECKPOINT_FILE).is_file():
                # (the Python API starts afresh so too, as documented; it was not said)
                info(f"--resume: no checkpoint in {str(out / 'checkpoints')!r} yet; fitting "
                     "from the start")  # fmt: skip
    flags = {"encoder": "--encoder", "decoder": "--decoder", "period": "--period"}
    names = {**_option_names(), **flags}
    # (resume names epochs, ...); fit's warnings name the options too, as they come
    # a numerical failure in training is not DATA's (it said "DATA: markov backend ...")
    with as_cli("DATA", names, own=(NumericalError,)), cli_warning_words(names):
        try:
            with warnings.catch_warnings():
                # the estimator's note on what an interrupted fit keeps speaks of its Python
                # state (history_, resume=True); the command line says its own, below
                warnings.filterwarnings("ignore", message=_KEPT_NOTE, category=UserWarning)
                model.fit(series, resume=resume, sharded=sharded)  # 'cnn' on non-square frames
        except KeyboardInterrupt:  # click would say only "aborted"
            raise _interrupted(out / "checkpoints", previous) from None
    # the threshold: a model of increments, or an ensemble, forecasts only: no anomaly scores
    # (cli.json's 'threshold', a quantile of the training scores that detect used before
    # the profile existed, is no longer computed: detect uses the profile)
    stepped = members > 1 or bool(model.difference)
    with run.together(), as_cli("DATA"), cli_remedies(), warnings.catch_warnings():
        # the training data's series with nothing observed were left out of training (fit
        # said so); the threshold's warning that they are left out of it says it again
        warnings.filterwarnings("ignore", message=_PRIOR_VALUES, category=UserWarning)
        if not stepped:
            # detect's threshold and score profile, stored with the model (model/config.json);
            # under torchrun each process scores a block of the series (its own, sharded)
            model.fit_threshold(
                series,  # its times in the model's unit, as fit read them (not numbers for dates)
                sharded=sharded,
                false_alarm_rate=false_alarm_rate,
                smooth=smooth,
                causal=causal_scores,
                spread=spread_baseline,
                feature_scale=feature_scale,
                combine=combine,
                novelty=novelty,
                spread_quantile=spread_quantile,
                rank_window=rank_window,
            )
    # Everything is computed before anything is written: an error leaves MODEL_DIR as it was.
    with run.together():
        if run.is_main:
            model.save(out / MODEL_SUBDIR)
            spec.data_path = str(Path(data).resolve())  # no command's OUT may replace it
            spec.save(out)
    hist = getattr(model, "history_", None) or []
    last = f" after {len(hist)} epochs{_kept_epoch(hist) if members == 1 else ''}" if hist else ""
    # the series trained on: those with nothing observed were left out, with a warning
    trained = sum(1 for v in series.values if not np.isnan(v).all())
    n_series = int(run.total(trained)) if sharded else trained
    n_all = int(run.total(series.num_series)) if sharded else series.num_series
    left = f" ({n_all - n_series} with nothing observed left out)" if n_all > n_series else ""
    processes = f" by {run.world} processes" if run.world > 1 else ""
    info(
        f"fitted on {n_series} series{left}, {series.num_features} features "
        f"({', '.join(spec.features)}){last}{processes}; wrote {out}"
    )
    profile = None if stepped else model.anomaly_profile_
    if profile is not None:
        info(threshold_line(profile))
    _print_kernels(model, out / MODEL_SUBDIR, spec.time_type)


def threshold_line(profile: Any) -> str:
    """fit's line on the threshold it stored for detect: its target false-alarm rate, the
    alarm it is compared with (the rank among the previous W steps, or the spread
    baseline) and its value."""
    if profile.rank_window > 0:
        alarm = f"the step's rank among the previous {profile.rank_window} steps (--rank-window)"
    elif profile.baseline > 0 and profile.spread:
        alarm = (
            f"the score's rise over its median of the previous {profile.baseline} steps, "
            "divided by its spread there (--rank-window 0, --spread-baseline)"
        )
    elif profile.baseline > 0:
        alarm = f"the score's rise over its median of the previous {profile.baseline} steps"
    else:
        alarm = "the step score"
    return (
        f"stored detect's threshold: {profile.threshold:.4g} on the alarm {alarm}, for a "
        f"--false-alarm-rate of {profile.false_alarm_rate:g} on the "
        f"{profile.num_steps} scored steps of DATA"
    )


#: The start of the estimator's warning on what an interrupted fit keeps (not said by fit).
_KEPT_NOTE = r"fit: interrupted \(KeyboardInterrupt\)"


def _interrupted(checkpoints: Path, previous: bool) -> CLIError:
    """The error for a fit stopped by Ctrl-C: what is kept, and how to go on. ``previous``:
    MODEL_DIR held a model before this fit (kept as it was: a fit writes its model when it
    ends; the message said MODEL_DIR held none)."""
    from gpvae.app.cli.errors import Interrupted

    model = (
        "MODEL_DIR keeps its previous model, unchanged, until a fit ends"
        if previous
        else "MODEL_DIR holds no model until a fit ends"
    )
    kept = checkpoints.is_dir() and any(checkpoints.iterdir())
    if kept:
        return Interrupted(
            f"fit: interrupted (Ctrl-C); the checkpoint of its last finished epoch in "
            f"{str(checkpoints)!r} is kept: rerun the same command with --resume to continue "
            f"from it ({model})"
        )
    return Interrupted(
        f"fit: interrupted (Ctrl-C) before it wrote a checkpoint; nothing of it was kept ({model})"
    )


def _kept_epoch(history: list[dict[str, float]]) -> str:
    """The fit summary's words on the epoch whose weights the model kept (the lowest
    ``val_score``: a validation score, else the training loss), from ``history_``: early
    stopping or a later rise of the score leaves a model of an earlier epoch than the last."""
    scores = np.asarray([h.get("val_score", np.nan) for h in history], dtype=float)
    if not np.isfinite(scores).any():
        return ""
    best = int(np.argmin(np.where(np.isfinite(scores), scores, np.inf)))
    validated = bool(history[best].get("validated", 0.0))
    if not validated and best == len(history) - 1:
        return ""  # the last epoch, chosen by its training loss: nothing to add
    what = "validation score" if validated else "training loss"
    return f", kept epoch {best + 1} (best {what} {scores[best]:.4g})"


#: At most this many lines of learned kernels after a fit (one per latent channel, then one
#: per noise kernel of gaussian_gp).
KERNEL_LINES = 8


def _print_kernels(model: Any, folder: Path, time_type: str = "numeric") -> None:
    """The learned kernels in the data's units (``GPVAE.kernel_summary``), one line per
    latent channel (an ensemble's first member), at most :data:`KERNEL_LINES` of them.
    ``time_type``: cli.json's; for durations (given to the model as numbers of hours, its
    "time units") the unit is named hours, as the Python API names it for durations."""
    from gpvae.estimator.kernel_report import format_summary

    table = model.kernel_summary()
    if time_type == "duration":
        table.loc[table["unit"] == "time units", "unit"] = "hours"
    head = "learned kernels (lengthscales and periods in the data's units)"
    if "member" in table.columns:
        head += f", member 0 of {table['member'].nunique()}"
        table = table[table["member"] == 0].drop(columns="member")
    lines = format_summary(table.to_dict("records"))
    info(head + ":")
    for line in lines[:KERNEL_LINES]:
        info("  " + line)
    if len(lines) > KERNEL_LINES:
        info(
            f"  ... and {len(lines) - KERNEL_LINES} more: "
            f"{type(model).__name__}.load({str(folder)!r}).kernel_summary() lists them all"
        )


#: The threshold's warning on series with nothing observed (a regex for
#: warnings.filterwarnings), which scoring the training data for detect's threshold gives:
#: fit has said that they were left out of training.
_PRIOR_VALUES = r".*series with no observed entry; they have nothing to score and are left out"

#: The estimator's names of the training-mask arguments -> the options (for its errors).
MASK_FLAGS = {
    "interp_skip": "--interp-skip",
    "interp_cross": "--interp-cross",
    "mask_pattern": "--mask-pattern",
    "val_pattern": "--val-pattern",
    "block_lengths": "--block-lengths",
}


def _option_names() -> dict[str, str]:
    """The estimator's constructor arguments -> fit's options, for the estimator's errors."""
    import inspect

    from gpvae.estimator import GPVAE

    arguments = set(inspect.signature(GPVAE.__init__).parameters)
    names = {"period": "--period", **MASK_FLAGS}
    for param in fit.params:
        options = [o for o in param.opts if o.startswith("--")]
        if param.name in arguments and options:
            names[str(param.name)] = options[0]
    return names


def _lengths(text: str) -> tuple[int, int]:
    """--block-lengths "A,B" -> (A, B) (the estimator checks the values)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise CLIError(f"--block-lengths: expected two whole numbers such as 2,24, found {text!r}")
    return int(parts[0]), int(parts[1])


def _periods(values: tuple[str, ...]) -> list[float | str] | None:
    """--period values: numbers where they parse as numbers, strings otherwise."""
    if not values:
        return None
    out: list[float | str] = []
    for v in values:
        try:
            out.append(float(v))
        except ValueError:
            out.append(v)
    return out


def _period_hours(periods: list[float | str]) -> list[float]:
    """--period values in hours, for a time column of durations (read as numbers of
    hours): a duration string (``24h``, ``7D``) as its hours, a number as it is."""
    from gpvae.data.calendar import period_in_units

    return [period_in_units(p, "hours", None) for p in periods]


def fit_spatial(
    model: object,
    frame: object,
    out: Path,
    time_col: str,
    id_col: str | None,
    coord_cols: str,
    features: str | None,
    window: int | None,
    inducing: int | None,
) -> None:
    """``fit --coord-cols``: a spatial model written to MODEL_DIR/model."""
    from gpvae.app.cli.columns import parse_times
    from gpvae.app.cli.tables import make_folder

    coords = [c.strip() for c in coord_cols.split(",")]
    if len(coords) != 2 or not all(coords):
        raise CLIError(
            f"--coord-cols: expected two column names such as lat,lon, found {coord_cols!r}"
        )
    if id_col is None:
        raise CLIError("--id-col: expected the site id column with --coord-cols, found none")
    feats = None if features is None else [f.strip() for f in features.split(",")]
    if time_col in getattr(frame, "columns", ()):  # dates written as text, as without coords
        frame = parse_times(frame, time_col, "DATA")
    names = {
        **_option_names(),  # the constructor's settings that the spatial fit refuses
        "coords": "--coord-cols",
        "id": "--id-col",
        "time": "--time-col",
        "features": "--features",
        "window": "--window",
        **MASK_FLAGS,
    }
    # its warnings name the options, as the time-series fit's do
    with as_cli("DATA", names, own=(NumericalError,)), cli_warning_words(names):
        model.fit(  # type: ignore[attr-defined]
            frame,
            id=id_col,
            time=time_col,
            coords=coords,
            features=feats,
            window=window or 48,
            inducing=inducing,
        )
    make_folder(out, "--out")
    model.save(out / MODEL_SUBDIR)  # type: ignore[attr-defined]
    info(f"fitted a spatial model on {len(model.spatial_.train_xy)} sites; wrote {out}")  # type: ignore[attr-defined]


#: fit's options for time series only (anomaly thresholds, forecasting, differencing, the
#: interpolation blend), by parameter name: a fit with --coord-cols would ignore them.
_SERIES_ONLY = {
    "false_alarm_rate": "--false-alarm-rate",
    "smooth": "--smooth",
    "causal_scores": "--causal-scores",
    "spread_baseline": "--spread-baseline",
    "feature_scale": "--feature-scale",
    "combine": "--combine",
    "novelty": "--novelty",
    "spread_quantile": "--spread-quantile",
    "rank_window": "--rank-window",
    "forecast_horizon": "--forecast-horizon",
    "forecast_blend": "--forecast-blend",
    "difference": "--difference",
    "difference_columns": "--difference-columns",
    "interp_blend": "--interp-blend",
}


def _ignored_options(
    spatial: bool, difference: bool, difference_columns: str | None, inducing: int | None
) -> str | None:
    """The error for options that this fit would ignore (given on the command line, not
    left at their defaults), or None."""
    if difference and difference_columns is not None:
        return (
            "--difference-columns: models the listed columns by their steps, --difference "
            "every column: give one of the two"
        )
    if not spatial:
        if inducing is not None:
            return "--inducing: expected --coord-cols with it (a spatial fit), found none"
        return None
    ctx = click.get_current_context()
    if ctx.params.get("resume"):
        return (
            "--resume: continues a time-series fit from its checkpoint; a fit with "
            "--coord-cols writes none, so there is nothing to resume: leave out --resume"
        )
    given = [
        flag
        for name, flag in _SERIES_ONLY.items()
        if ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)
    ]
    if given:
        return (
            f"{given[0]}: sets up anomaly detection, forecasting or the interpolation blend "
            f"of time series, which a fit with --coord-cols (a space x time field: impute and "
            f"predict-sites) does not have; leave out {', '.join(given)}"
        )
    return None


def _difference_columns(text: str | None) -> tuple[str, ...] | bool:
    """The feature columns of ``--difference-columns`` (False: none given)."""
    if text is None:
        return False
    cols = tuple(c.strip() for c in text.split(",") if c.strip())
    if not cols:
        raise click.BadParameter(
            "expected comma-separated column names", param_hint="--difference-columns"
        )
    return cols
