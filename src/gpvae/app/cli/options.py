"""Click plumbing shared by the commands: option callbacks, options used by several
commands, choices taken from the registries, and the example block of a command's help."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from gpvae import settings
from gpvae.arguments import lengthscale_text
from gpvae.errors import GPVAEError, ValidationError

__all__ = [
    "PLOT_FORMATS",
    "PLOT_SUFFIXES",
    "Command",
    "FiniteFloat",
    "FiniteRange",
    "RegistryChoice",
    "examples",
    "hidden_sizes",
    "interval",
    "interval_draws",
    "level_option",
    "merge_option",
    "num_samples_option",
    "out_option",
    "positive_float",
    "positive_int",
    "probability",
    "series_option",
]

_F = TypeVar("_F", bound=Callable[..., Any])

#: The suffixes of the image files that the plot options write.
PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")
#: The image files every plot option writes, as its help and errors name them.
PLOT_FORMATS = f"{', '.join(PLOT_SUFFIXES[:-1])} or {PLOT_SUFFIXES[-1]}"


def examples(text: str) -> Callable[[_F], _F]:
    """Append an example block to a command's help (shown verbatim by click)."""

    def wrap(func: _F) -> _F:
        func.__doc__ = inspect.cleandoc(func.__doc__ or "") + "\n\n\b\nExample:\n" + text
        return func

    return wrap


class Command(click.Command):
    """A ``gpvae`` command: it applies the group's ``--threads`` (``ctx.obj["threads"]``,
    torch's ``set_num_threads``) once its own arguments have parsed, before its work.

    The group's callback runs before click parses the command's arguments; applying
    ``--threads`` there imported torch (seconds) for a ``--help`` or a usage error, which
    need none. Every command of :mod:`gpvae.app.cli.commands` is one.
    """

    def invoke(self, ctx: click.Context) -> Any:
        threads = ctx.obj.get("threads") if isinstance(ctx.obj, dict) else None
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        return super().invoke(ctx)


class RegistryChoice(click.Choice):
    """A case-insensitive choice among a registry's names.

    Help and errors list ``names`` (the registry's canonical names); any value the
    registry's ``key`` function accepts (another case, ``-`` for ``_``, an alias such as
    ``se`` for ``rbf``) is taken too and returned as that key, so the command line accepts
    exactly what the estimator does.
    """

    def __init__(self, names: Sequence[str], key: Callable[[object], str]) -> None:
        super().__init__(list(names), case_sensitive=False)
        self.key = key

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return self.key(value)
        except GPVAEError:
            return super().convert(value, param, ctx)  # fails, listing the names


def positive_int(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    """Callback: None or an integer >= 1."""
    if value is not None and value < 1:
        raise click.BadParameter(f"expected a positive integer, found {value}")
    return value


def interval_draws(ctx: click.Context, param: click.Parameter, value: int) -> int:
    """Callback: draws for an interval, at least 2 (0 and 1 fail alike, as bad options)."""
    if value < 2:
        raise click.BadParameter(
            f"expected at least 2 draws for the interval [lower, upper], found {value}"
        )
    return value


def rank_window(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    """Callback: None, 0 (no rank) or a window of 2 to
    ``settings.ANOMALY_RANK_WINDOW_MAX`` steps (checked before the fit: the library refuses
    the others only when the threshold is learned, after it)."""
    top = settings.ANOMALY_RANK_WINDOW_MAX
    if value is not None and (value < 0 or value == 1 or value > top):
        raise click.BadParameter(
            f"expected 0 (the spread baseline) or a window of 2 to {top} steps, found {value}"
        )
    return value


class FiniteRange(click.FloatRange):
    """``click.FloatRange`` without NaN (which compares False with both ends, so passed
    the range and failed only after the fit)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        out = super().convert(value, param, ctx)
        if not math.isfinite(out):
            self.fail(f"expected a finite number, found {value!r}", param, ctx)
        return out

    def _describe_range(self) -> str:
        # without ends the help showed "[x<=None]"
        if self.min is None and self.max is None:
            return ""
        return str(super()._describe_range())

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str | None:
        if self.min is None and self.max is None:
            return "FLOAT"
        return super().get_metavar(param, ctx)


#: A finite float option (no NaN, no infinity).
FiniteFloat = FiniteRange()


def positive_float(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """Callback: None or a finite number > 0."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"expected a positive number, found {value}")
    return value


def probability(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """Callback: a probability in (0, 1)."""
    if not 0.0 < value < 1.0:
        raise click.BadParameter(f"expected a probability in (0, 1), found {value}")
    return value


def hidden_sizes(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[int, ...] | None:
    """Callback: comma-separated positive layer widths (``"128,128"``) as a tuple."""
    if value is None:
        return None
    try:
        sizes = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, found {value!r}") from None
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"expected comma-separated positive integers, found {value!r}")
    return sizes


def lengthscales(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> float | tuple[float, ...] | None:
    """Callback: one positive number, or comma-separated ones (one per latent channel)."""
    if value is None:
        return None
    try:
        return lengthscale_text(value)
    except ValidationError as err:
        raise click.BadParameter(str(err)) from None


def interval(level: float) -> tuple[float, float]:
    """The quantiles ``(lower, upper)`` of the central interval of probability ``level``."""
    return (0.5 - level / 2.0, 0.5 + level / 2.0)


out_option = click.option(
    "-o",
    "--out",
    required=True,
    help="Output .csv or .parquet file, or a folder (a name without extension) that gets "
    "part-00000.parquet, one part per process: for a large DATA folder of Parquet files.",
)
num_samples_option = click.option(
    "--num-samples",
    default=100,
    show_default=True,
    callback=interval_draws,
    help="Monte Carlo samples for the mean and the intervals (impute, forecast: at least 2; "
    "a warning says when too few for --level, e.g. 19 for 0.9).",
)
level_option = click.option(
    "--level",
    default=0.9,
    show_default=True,
    callback=probability,
    help="Probability of the interval [lower, upper].",
)
series_option = click.option(
    "--series",
    default=None,
    help="Series id to plot (long files; ignored without --plot); default the first one. "
    "Checked before any work; "
    "refused for a model of one series (fitted on a wide file).",
)
quiet_option = click.option(
    "--quiet",
    is_flag=True,
    help="No progress bar (otherwise shown once the work has run a few seconds).",
)
merge_option = click.option(
    "--merge-duplicate-times",
    "merge_duplicates",
    is_flag=True,
    default=False,
    help="Merge the rows of a series that share a time into one (the mean of each feature, "
    "as gpvae.data.merge_duplicate_times) and list the merged rows; without it repeated "
    "times are an error.",
)
