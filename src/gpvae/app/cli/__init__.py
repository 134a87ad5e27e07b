"""The ``gpvae`` command line: demo, fit, impute, forecast, detect, sample.

Data files are CSV (``.csv``, ``.csv.gz``) or Parquet (``.parquet``, ``.pq``), chosen by
extension, long (an id column, a time column, features) or wide (one series); ``gpvae fit``
records the layout in MODEL_DIR (:mod:`gpvae.app.cli.columns`). Every error (missing or
unreadable file, unknown column, bad option, bad data) ends the command with exit code 1 (2
for usage errors) and one line ``error: ...`` on stderr; the global ``--debug`` option shows
the traceback.

This module owns the click group :func:`cli`, which lists the commands (one per module of
:mod:`gpvae.app.cli.commands`) and imports them when one runs or shows its help, and
:func:`main`, the entry point that turns errors into exit codes and warnings into one line
each; ``gpvae``, ``gpvae --help`` and ``gpvae --version`` import neither torch nor pandas,
and neither do a command's ``--help`` and its usage errors, after ``--threads N`` too: the
command modules import them (through :mod:`~gpvae.app.cli.tables`,
:mod:`~gpvae.app.cli.columns`, the estimator) inside the functions that do the work, and
each command sets torch's threads once its arguments have parsed
(:class:`~gpvae.app.cli.options.Command`).
Its neighbours: :mod:`~gpvae.app.cli.errors` (messages), :mod:`~gpvae.app.cli.tables`
(files), :mod:`~gpvae.app.cli.columns` (layout), :mod:`~gpvae.app.cli.model_dir`
(MODEL_DIR), :mod:`~gpvae.app.cli.options` (click plumbing),
:mod:`~gpvae.app.cli.choices` (the registries' names).

Run ``gpvae --help`` or ``gpvae COMMAND --help``; docs/cli.md has worked examples.
"""

from __future__ import annotations

import ast
import contextlib
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from gpvae.app.cli.errors import is_main_process as _is_main_process
from gpvae.app.cli.errors import launched as _launched
from gpvae.errors import DistributedError, GPVAEError
from gpvae.heap import limit_heap_fragmentation
from gpvae.version import __version__

__all__ = ["cli", "main"]

#: The commands, name -> the module of :mod:`gpvae.app.cli.commands` that defines it (as a
#: function of the module's name), in the order of ``COMMANDS`` there.
COMMAND_MODULES = {
    "demo": "demo",
    "fit": "fit",
    "impute": "impute",
    "forecast": "forecast",
    "backtest": "backtest",
    "detect": "detect",
    "sample": "sample",
    "predict-sites": "predict_sites",
}


class _LazyGroup(click.Group):
    """A group whose commands are imported when one is run or shows its help.

    Importing the command modules takes a few tenths of a second (click, numpy; torch and
    pandas only where a command works); the group's own help lists each
    command with the first sentence of its function's docstring, read from the module's
    source (:func:`_short_help_command`) without running it, so ``gpvae --help`` is quick
    (an install without the sources imports the commands instead).
    A name outside :data:`COMMAND_MODULES` loads them all (click's "did you mean" needs
    their names).
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if not self.commands:
            from gpvae.app.cli.commands import COMMANDS

            for command in COMMANDS:
                self.add_command(command)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if not self.commands:
            try:
                shown = [_short_help_command(n) for n in COMMAND_MODULES]
            except (OSError, SyntaxError, LookupError):  # no sources (.pyc only, a zip)
                self.get_command(ctx, "")  # import the commands and list theirs
            else:
                click.Group(self.name, shown).format_commands(ctx, formatter)
                return
        super().format_commands(ctx, formatter)


def _short_help_command(name: str) -> click.Command:
    """A command named ``name`` whose help is the docstring of its function (the function
    named as its module in :data:`COMMAND_MODULES`), read from the module's source: the
    short help of the real command, which click takes from the first paragraph."""
    module = COMMAND_MODULES[name]
    path = Path(__file__).parent / "commands" / f"{module}.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == module:
            return click.Command(name, help=ast.get_docstring(node))
    raise LookupError(f"{path}: no function {module!r}")


@click.group(
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", prog_name="gpvae")
@click.option("--debug", is_flag=True, help="Show the full traceback when a command fails.")
@click.option(
    "--threads",
    default=None,
    type=click.IntRange(min=1),
    help="CPU threads for torch (default: torch's choice; the demo uses 1). Small models "
    "often run fastest on 1 thread, especially on a busy machine.",
)
@click.pass_context
def cli(ctx: click.Context, debug: bool, threads: int | None) -> None:
    """gpvae: fill gaps in multivariate time series with calibrated intervals, forecast,
    score anomalies and sample, with a Gaussian-process-prior VAE.

    \b
    Start with the demo on real data (Seattle weather, no download):
      gpvae demo --out gpvae-demo
    Then on your own CSV or Parquet file:
      gpvae fit data.csv --time-col date -o model/
      gpvae impute model/ data.csv -o imputed.csv --plot imputed.png
    """
    # the command applies --threads once its own arguments have parsed (options.Command):
    # here torch's import (seconds) would delay its --help and usage errors
    ctx.obj = {"threads": threads}


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """Print warnings as one line ``warning: ...`` on stderr (no source excerpt); one that
    names an estimator argument names the command line's instead (``--num-samples``)."""
    from gpvae.app.cli.errors import cli_message, one_line

    text = one_line(str(message))
    mapped = cli_message(text, "")
    click.echo(f"warning: {text if mapped.startswith(': ') else mapped}", err=True)


def _report(message: str, err: BaseException | None = None) -> None:
    """Print ``error: ...`` on stderr. Under torchrun process 0 reports the errors that every
    process raised alike (``synchronized``); other processes print only their own, marked
    with their rank."""
    if _is_main_process():
        click.echo(message, err=True)
    elif not getattr(err, "synchronized", False):
        rank = os.environ.get("RANK", "?")
        click.echo(message.replace("error: ", f"error [process {rank}]: ", 1), err=True)


def _stop_on_sigterm() -> Any:
    """Under torchrun: SIGTERM (torchrun stopping the job because another process failed,
    or the job being cancelled) becomes an error that says so, instead of a silent exit.
    Returns the handler installed (None: another one was there, left as it is); the
    command restores the default when it ends (:func:`_end_sigterm`)."""
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None

    def stop(signum: int, frame: Any) -> None:
        err = DistributedError(
            "the job was stopped (SIGTERM): another process failed or was killed, or the "
            "job was cancelled"
        )
        err.synchronized = True  # type: ignore[attr-defined]  # process 0 reports
        raise err

    with contextlib.suppress(ValueError):  # not in the main thread
        signal.signal(signal.SIGTERM, stop)
        return stop
    return None


def _end_sigterm(handler: Any) -> None:
    """The command has ended (its error, if any, reported): SIGTERM no longer raises (an
    error raised while the interpreter exits, e.g. in the exit handler that waits for the
    process group's threads, was printed as "Exception ignored in atexit callback" with a
    traceback); it stops the process, as by default."""
    if handler is not None and signal.getsignal(signal.SIGTERM) is handler:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns (and, as a script, exits with) the exit code.

    Args:
        argv: the arguments (default ``sys.argv[1:]``).

    Returns:
        0 on success, 1 for errors, 2 for usage errors, 130 when interrupted.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args[: args.index("--")] if "--" in args else "--debug" in args
    debug = debug or os.environ.get("GPVAE_DEBUG", "") not in ("", "0")
    limit_heap_fragmentation()
    handler = _stop_on_sigterm() if _launched() else None
    try:
        return _main(args, debug)
    finally:
        _end_sigterm(handler)


def _main(args: list[str], debug: bool) -> int:
    """:func:`main` after the set-up: the command, its errors reported."""
    with warnings.catch_warnings():
        if not debug:
            warnings.showwarning = _show_warning
            if not _is_main_process():
                warnings.simplefilter("ignore")  # under torchrun, process 0 reports
        try:
            result = cli.main(args=args, prog_name="gpvae", standalone_mode=False)
        except click.exceptions.Exit as done:
            return int(done.exit_code)
        except click.exceptions.NoArgsIsHelpError as err:  # no command: the help, as is
            click.echo(err.format_message(), err=True)
            return int(err.exit_code)
        except click.ClickException as err:
            from gpvae.app.cli.errors import one_line

            if debug:
                traceback.print_exc()
            hint = ""
            if isinstance(err, click.UsageError) and err.ctx is not None:
                hint = f" (see '{err.ctx.command_path} --help')"
            _report(f"error: {one_line(err.format_message())}{hint}", err)
            return int(err.exit_code)
        except click.exceptions.Abort as err:
            # click turns Ctrl-C (KeyboardInterrupt) into Abort before it reaches us
            stopped = isinstance(err.__cause__, KeyboardInterrupt)
            _report("error: interrupted (Ctrl-C)" if stopped else "error: aborted")
            return 130
        except KeyboardInterrupt:
            _report("error: interrupted")
            return 130
        except GPVAEError as err:
            from gpvae.app.cli.errors import one_line

            if debug:
                traceback.print_exc()
            _report(f"error: {one_line(str(err))}", err)
            return 1
        except Exception as err:
            from gpvae.app.cli.errors import one_line

            if debug:
                traceback.print_exc()
            _report(
                f"error: {type(err).__name__}: {one_line(str(err))} (run 'gpvae --debug ...' "
                "for the traceback)",
                err,
            )
            return 1
    return int(result) if isinstance(result, int) else 0
