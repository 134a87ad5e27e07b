"""What the command line tells the user: its errors, one line each, and its info lines.

A user error found by the command line itself raises :class:`CLIError` (exit code 1). An
error raised by the estimator names the estimator's argument (``X``, ``times``,
``num_samples``, ...); :func:`as_cli` re-raises it naming the command line's argument or
option instead (``DATA``, ``--num-samples``, ...).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import click

from gpvae.errors import DistributedError, GPVAEError

__all__ = [
    "CLI_NAMES",
    "CLI_PHRASES",
    "REMEDIES",  # noqa: F822  (made on first use, by the module's __getattr__)
    "CLIError",
    "Interrupted",
    "as_cli",
    "cli_message",
    "cli_remedies",
    "cli_warning_words",
    "info",
    "is_main_process",
    "launched",
    "one_line",
]


class CLIError(click.ClickException):
    """A user error found by the command line itself (exit code 1)."""


class Interrupted(CLIError):
    """The user stopped the command (Ctrl-C): exit code 130, as for a shell's SIGINT."""

    exit_code = 130


def one_line(text: str) -> str:
    """``text`` on one line: its non-blank lines stripped and joined by spaces."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


#: The estimator's argument names -> the command line's, for errors raised by the estimator.
CLI_NAMES = {
    "DATA": "DATA",  # the data layer names the file as the command line does (name="DATA")
    "X": "DATA",
    "times": "DATA",
    "resume": "--resume",
    "horizon": "--horizon",
    "num_samples": "--num-samples",
}


def cli_message(message: str, default: str, names: dict[str, str] | None = None) -> str:
    """An estimator error message with the argument it names replaced by the command line's
    (``X[3]: ...`` -> ``DATA: ... (series 3)``); other messages are prefixed by ``default``."""
    names = {**CLI_NAMES, **(names or {})}
    match = re.match(r"([A-Za-z_]\w*(?:, [A-Za-z_]\w*)*)(\[[^\]]*\])?: (.*)", message, re.S)
    args = [] if match is None else match.group(1).split(", ")
    if match is None or not all(a in names for a in args):
        return f"{default}: {_option_words(message, names)}"
    _, index, rest = match.groups()
    rest = _option_words(rest, names)
    shown = ", ".join(dict.fromkeys(names[a] for a in args))  # "num_samples, horizon"
    if index is not None and not index[1:-1].isdigit():  # a column: DATA['t']
        return f"{shown}{index}: {rest}"
    where = f" (series {index[1:-1]})" if index else ""
    return f"{shown}: {rest}{where}"


#: The estimator's phrases that the command line says otherwise (patterns): its way never to
#: stop early is ``--patience 0``, where the estimator's is ``patience=None``.
CLI_PHRASES = [
    (r"(?<![\w-])patience \(or None\b", "--patience (or 0"),
    (r"(?<![\w-])patience=None\b", "--patience 0"),
]

#: The estimator's Python advice on its data, as the command line says it (any command).
DATA_PHRASES = [
    # forecast's memory remedy (PredictContext.draws_remedy)
    (r"only the recent history \(X\[-k:\] and its times\)", "only DATA's recent rows"),
]


def _option_words(text: str, names: dict[str, str]) -> str:
    """``text`` with the estimator's argument names that are command-line options written as
    the options: ``interp_skip=True`` -> ``--interp-skip``, ``kernel='x'`` -> ``--kernel 'x'``
    (``window= to ...`` -> ``--window to ...``),
    and a bare ``latent_dim`` -> ``--latent-dim`` (names with an underscore only: plain words
    such as "kernel" stay words); a bare ``X`` is written as the command's data argument."""
    for phrase, said in CLI_PHRASES if "patience" in names else ():
        text = re.sub(phrase, said, text)
    for phrase, said in DATA_PHRASES:
        text = re.sub(phrase, said, text)
    options = {k: v for k, v in names.items() if v.startswith("--") or k == "X"}
    if not options:
        return text
    alternatives = "|".join(sorted(map(re.escape, options), key=len, reverse=True))

    def replace(match: re.Match[str]) -> str:
        name, true, equals = match.groups()
        if true:
            return options[name]
        if equals:
            return f"{options[name]} "
        return options[name] if "_" in name or name == "X" else name

    # (not inside quotes: a feature named 'X' stays 'X')
    pattern = rf"(?<![\w'\"-])({alternatives})(?:(=True\b)|(= ?)|(?![\w'\"-]))"
    return re.sub(pattern, replace, text)


@contextlib.contextmanager
def as_cli(
    default: str,
    names: dict[str, str] | None = None,
    own: tuple[type[GPVAEError], ...] = (),
) -> Iterator[None]:
    """Re-raise a GPVAEError from the estimator as one naming the command line's argument or
    option (the estimator names its own arguments, X, times, ...; ``names`` adds to
    :data:`CLI_NAMES`). Errors of the types ``own`` are about no argument of the block (a
    numerical failure in training, which is not DATA's): they keep their own words, the
    estimator's names written as options, without the ``default`` prefix."""
    try:
        yield
    except GPVAEError as err:
        message = one_line(str(err))
        if isinstance(err, DistributedError):  # about the job, not about an argument
            out = CLIError(message)
        elif isinstance(err, own):
            said = cli_message(message, "", names)
            out = CLIError(said[2:] if said.startswith(": ") else said)
        else:
            out = CLIError(cli_message(message, default, names))
        if getattr(err, "synchronized", False):  # raised alike by every process of a job
            out.synchronized = True  # type: ignore[attr-defined]
        raise out from err


def _distributed() -> ModuleType | None:
    """:mod:`gpvae.training.distributed` if this process can be one of a distributed job's,
    else None (that module imports torch, which ``gpvae --help`` and usage errors need not
    pay): torchrun sets ``WORLD_SIZE`` (else :func:`~gpvae.training.distributed.launched` is
    False) and a process group needs torch imported (else ``is_main_process`` is True)."""
    if "WORLD_SIZE" not in os.environ and "torch" not in sys.modules:
        return None
    from gpvae.training import distributed

    return distributed


def launched() -> bool:
    """:func:`gpvae.training.distributed.launched`, without importing torch when False."""
    distributed = _distributed()
    return distributed is not None and distributed.launched()


def is_main_process() -> bool:
    """:func:`gpvae.training.distributed.is_main_process`, without importing torch when
    True."""
    distributed = _distributed()
    return distributed is None or distributed.is_main_process()


def info(message: str) -> None:
    """Print a progress or result line on stdout (in process 0 only, under torchrun)."""
    if is_main_process():
        click.echo(message)


@functools.cache
def _remedies() -> list[tuple[str, str]]:
    """:data:`REMEDIES`, made on first use: the API's words come from
    :mod:`gpvae.estimator.forecasting`, which imports torch."""
    from gpvae.estimator.anomaly import GAPS_REMEDY, OBSERVED_REMEDY, THRESHOLD_DATA
    from gpvae.estimator.forecasting import CALIBRATE_REMEDY, UNCALIBRATED_REMEDY

    return [
        # the threshold's warnings: the command line learns it in 'gpvae fit', from DATA
        (r"^X: ", "DATA: "),
        (
            re.escape(GAPS_REMEDY),
            "refit with 'gpvae fit' on normal data that has gaps like this data's (fit "
            "learns the threshold from its DATA) to keep the rate",
        ),
        (re.escape(OBSERVED_REMEDY), "refit with 'gpvae fit' on data where it is observed"),
        (re.escape(THRESHOLD_DATA), "in the DATA that 'gpvae fit' learned the threshold from"),
        (r"\bfalse_alarm_rate\b", "--false-alarm-rate"),
        (
            re.escape(UNCALIBRATED_REMEDY),
            "refit with 'gpvae fit --forecast-horizon H' to calibrate them",
        ),
        (
            re.escape(CALIBRATE_REMEDY).replace(re.escape("{furthest}"), r"(\d+)"),
            r"refit with 'gpvae fit --forecast-horizon \1' to calibrate them",
        ),
    ]


def __getattr__(name: str) -> Any:
    """:data:`REMEDIES`: the API's remedies for uncalibrated intervals and steps beyond the
    calibrated horizon (patterns), and the command line's (made on first use)."""
    if name == "REMEDIES":
        return _remedies()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@contextlib.contextmanager
def cli_remedies() -> Iterator[None]:
    """Say the block's warnings with the command line's remedies (forecast, backtest): the
    estimator's advice to call ``calibrate_forecast(X, horizon=30)`` (a Python call, which
    the command line does not have) becomes a refit with ``gpvae fit --forecast-horizon 30``
    (``H`` for the intervals of a model never calibrated)."""
    with warnings.catch_warnings(record=True) as caught:
        try:
            yield
        finally:
            said = [(w.category, str(w.message)) for w in caught]
    for category, text in said:
        for api, cli in _remedies():
            text = re.sub(api, cli, text)
        warnings.warn(text, category, stacklevel=3)


@contextlib.contextmanager
def cli_warning_words(names: dict[str, str] | None = None) -> Iterator[None]:
    """Show the block's warnings as they come, with the estimator's argument names written as
    the command line's options (``give window=W`` -> ``give --window W``, ``batch_size`` ->
    ``--batch-size``; ``names`` adds to :data:`CLI_NAMES`), as :func:`as_cli` does for errors.

    The text is changed where the warning is shown, not collected and said after the block
    (as :func:`cli_remedies` does), so that a warning given before a long fit is seen before
    it. Which warnings are shown, and how often, is left to the warnings filters."""
    words = {**CLI_NAMES, **(names or {})}
    shown = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        text = _option_words(str(message), words)
        if text != str(message):
            try:
                message = category(text)
            except Exception:  # a category that takes other arguments: the text alone
                message = text
        shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown
