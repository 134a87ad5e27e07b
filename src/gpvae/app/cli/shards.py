"""Commands run by several processes (``torchrun --nproc-per-node N -m gpvae COMMAND ...``):
which series each process reads, who writes what, and the figures that need every process.

- DATA is a file: every process reads it. ``fit`` trains on all of it, each process taking
  its rows of every batch (the one-process fit, see :mod:`gpvae.training.session`);
  ``impute``, ``forecast`` and ``detect`` give each process a block of consecutive series
  (in the file's order).
- DATA is a folder of Parquet files (long layout): each process reads only its block of
  series (the ids in sorted order, :mod:`gpvae.data.parquet`), for ``fit`` too
  (``GPVAE.fit(..., sharded=True)``); one process reads the whole folder. A folder of one
  series (a model fitted on a wide file) is read by process 0 alone (``impute``,
  ``forecast``, ``detect``; ``fit`` needs ``--id-col`` there).
- OUT is a file: process 0 gathers the parts and writes it (rows in DATA's order for a
  file). OUT without an extension is a folder: each process writes its own part,
  ``part-00000.parquet``, ``part-00001.parquet``, ... (stale parts of an earlier run with
  more processes are removed first).

Outside torchrun a :class:`Job` has one process and every helper does what one process does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpvae.app.cli.columns import record_times
from gpvae.app.cli.errors import CLIError
from gpvae.app.cli.tables import read_table, write_table
from gpvae.data import SeriesSet, parquet
from gpvae.data.batching import shard_bounds
from gpvae.errors import GPVAEError
from gpvae.estimator.fitting import median_of_counts
from gpvae.training import distributed
from gpvae.training.distributed import Communicator

__all__ = [
    "Input",
    "Job",
    "check_output_path",
    "check_series",
    "everywhere",
    "gather_values",
    "is_folder",
    "job",
    "plot_owner",
    "read_input",
    "record_times_all",
    "write_output",
]


@dataclass(frozen=True)
class Job:
    """The processes running this command (one outside torchrun)."""

    comm: Communicator | None

    @property
    def rank(self) -> int:
        """This process, 0..world-1."""
        return 0 if self.comm is None else self.comm.rank

    @property
    def world(self) -> int:
        """The number of processes."""
        return 1 if self.comm is None else self.comm.world_size

    @property
    def is_main(self) -> bool:
        """True in process 0 (it reports and writes shared files)."""
        return self.rank == 0

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        """Run the block in every process; an error in one stops all of them with it."""
        if self.comm is None:
            yield
            return
        with self.comm.together(classes=(CLIError,)):
            yield

    def all_gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in process order."""
        return [obj] if self.comm is None else self.comm.all_gather(obj)

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj`` in process 0 (in process order); ``[]`` in the others."""
        return [obj] if self.comm is None else self.comm.gather(obj)

    def total(self, value: float) -> float:
        """The sum of ``value`` over the processes."""
        return float(self.sums([value])[0])

    def sums(self, values: Any) -> np.ndarray:
        """The element-wise sums of float ``values`` over the processes."""
        arr = np.asarray(values, dtype=np.float64)
        return arr if self.comm is None else self.comm.all_reduce(arr)


def everywhere(err: Exception, job: Job) -> Exception:
    """``err``, marked as raised alike by every process (process 0 alone reports it)."""
    if job.world > 1:
        err.synchronized = True  # type: ignore[attr-defined]
    return err


def one_process(run: Job, why: str) -> None:
    """Refuse, on every process, a command that runs in one process only (``why``: the
    reason, after "expected one process ")."""
    if run.world > 1:
        raise everywhere(
            CLIError(
                f"MODEL_DIR: expected one process {why}; found {run.world} processes (run it "
                "without torchrun)"
            ),
            run,
        )


def job() -> Job:
    """This command's processes (sets up the process group under torchrun)."""
    try:
        return Job(distributed.current())
    except GPVAEError as err:
        raise CLIError(str(err)) from err


@dataclass(frozen=True)
class Input:
    """What one process reads of DATA.

    Attributes:
        frame: its rows (all of them for ``fit`` on a file).
        folder: DATA is a folder of Parquet files.
        ordered: the frame's index holds the rows' positions in DATA (a file), so parts can
            be put back in DATA's order.
    """

    frame: pd.DataFrame
    folder: bool
    ordered: bool


def read_input(
    path: str, id_col: str | None, job: Job, *, share: bool, what: str = "DATA"
) -> Input:
    """This process's rows of DATA (a CSV / Parquet file, or a folder of Parquet files).

    Every process reads at once: an error reading DATA stops all of them, and process 0
    reports it once (naming the process when only some failed).

    Args:
        path: the file or folder.
        id_col: the series id column (None: one series, which process 0 handles).
        job: the processes.
        share: for a file, keep only this process's block of series (``impute``,
            ``forecast``, ``detect``); ``fit`` keeps every row of a file.
        what: the argument's name in messages.
    """
    read: Input | None = None
    with job.together():
        read = _read_input(Path(path), id_col, job, share, what)
    assert read is not None
    return read


def _read_input(p: Path, id_col: str | None, job: Job, share: bool, what: str) -> Input:
    if p.is_dir():
        if job.world > 1 and id_col is None and not share:
            raise CLIError(
                f"{what}: expected --id-col for a folder of Parquet files read by {job.world} "
                "processes (each reads its own series), found none"
            )
        try:
            if id_col is None:  # one series: process 0 reads it (as for a file)
                dataset = parquet.open_dataset(p, what)
                table = dataset.to_table() if job.is_main else dataset.schema.empty_table()
                frame = parquet.plain_index(table.to_pandas())
            else:
                frame = parquet.read_shard(p, id_col, job.rank, job.world, name=what)
        except GPVAEError as err:
            raise CLIError(str(err)) from err
        if frame.shape[0] == 0 and (id_col is not None or job.is_main):
            raise CLIError(f"{what}: expected at least one row, found none in {str(p)!r}")
        return Input(frame, folder=True, ordered=False)
    frame = read_table(p, what, text_col=id_col)
    if share and job.world > 1:
        frame = _own_rows(frame, id_col, job, what)
    return Input(frame, folder=False, ordered=True)


def _own_rows(frame: pd.DataFrame, id_col: str | None, job: Job, what: str) -> pd.DataFrame:
    """The rows of this process's block of series (ids in order of first appearance)."""
    if id_col is None:
        return frame if job.is_main else frame.iloc[:0]
    if id_col not in frame.columns:
        raise CLIError(f"--id-col: unknown column {id_col!r} in {what}")
    ids = pd.unique(frame[id_col])
    start, stop = shard_bounds(len(ids), job.rank, job.world)
    return frame[frame[id_col].isin(ids[start:stop])]


def is_folder(out: str) -> bool:
    """OUT names a folder of Parquet parts (no file extension, or an existing folder)."""
    p = Path(out)
    return p.is_dir() or p.suffix == ""


def check_output_path(out: str, job: Job, data: str | None = None) -> Path:
    """OUT checked before any work (by every process; process 0 reports a problem once),
    a Parquet file or folder also for a Parquet engine to write it with; for a folder,
    process 0 removes the parts of an earlier run. OUT may not be DATA
    (``data``) nor, for a folder, hold it: the output would replace the input; nor lie
    inside a DATA folder: it would become part of the input of the next command on DATA.
    (Nor may it be the model's training data: :func:`check_not_training_data`, once the
    model is loaded.)"""
    p = Path(out)
    with job.together():
        _check_output_path(p, out, data)
    if not is_folder(out):
        return p
    with job.together():
        if job.is_main and p.is_dir():
            for old in p.glob(f"{parquet.PART_PREFIX}*.parquet"):
                old.unlink()
    return p


def check_not_training_data(p: Path, out: str, trained_on: str | None) -> None:
    """Refuse OUT (``p``, as given ``out``) when it is the file or folder the model was
    fitted on (``trained_on``, recorded by fit; None for folders written before)."""
    if trained_on is not None and p.resolve() == Path(trained_on):
        raise CLIError(
            f"OUT: expected a path other than the model's training data (writing it would "
            f"replace the data 'gpvae fit' read, recorded in MODEL_DIR/cli.json), found {out!r}"
        )


def _check_output_path(p: Path, out: str, data: str | None) -> None:
    from gpvae.app.cli.tables import check_output, check_parquet_engine

    if data is not None:
        src, dst = Path(data).resolve(), p.resolve()
        if src == dst or (is_folder(out) and dst in src.parents):
            raise CLIError(
                f"OUT: expected a path other than DATA's (writing it would replace the input "
                f"data), found {out!r}, which is or holds DATA {data!r}"
            )
        if src.is_dir() and src in dst.parents:
            raise CLIError(
                f"OUT: expected a path outside the DATA folder {data!r} (its files would be "
                f"read as data by the next command on DATA), found {out!r}"
            )
    if not is_folder(out):
        check_output(out)
    elif p.exists() and not p.is_dir():
        raise CLIError(f"OUT: expected a folder for the parts, found the file {str(p)!r}")
    else:
        check_parquet_engine("OUT", "a folder of Parquet parts")


def write_output(table: pd.DataFrame, out: Path, job: Job, *, ordered: bool) -> int:
    """Write the parts of OUT; returns the number of rows written (by every process).

    A folder gets this process's part (none when it has no rows); a file gets every part,
    gathered by process 0 (in DATA's row order when ``ordered``).
    """
    if is_folder(str(out)):
        with job.together():
            if table.shape[0]:
                write_table(table, out / parquet.part_name(job.rank))
        return int(job.total(table.shape[0]))
    parts = job.gather(table)
    rows = 0
    with job.together():
        if job.is_main:
            whole = pd.concat([p for p in parts if p.shape[0]] or parts[:1])
            if ordered:
                whole = whole.sort_index(kind="stable")
            write_table(whole, out)
            rows = whole.shape[0]
    return int(job.total(rows))


def gather_values(values: np.ndarray, job: Job) -> np.ndarray:
    """Every process's 1-D float array, concatenated in process order."""
    parts = job.all_gather(np.asarray(values, dtype=np.float64).ravel())
    return np.concatenate(parts) if parts else np.zeros(0)


def check_series(frame: pd.DataFrame, id_col: str | None, series: str | None, job: Job) -> None:
    """``--series`` checked before any work: refused for DATA of one series (a model fitted
    on a wide file has no id column), and an id must be in DATA. Every process calls it
    right after :func:`read_input` (it gathers whether each holds the id, as
    :func:`plot_owner` does after the work)."""
    if series is None:
        return
    if id_col is None:
        raise everywhere(
            CLIError(
                f"--series: expected no --series for DATA of one series (the model was fitted "
                f"on a wide file, without --id-col), found {series!r}; leave it out"
            ),
            job,
        )
    if id_col not in frame.columns:  # the same in every process; series_set reports it
        return
    ids = frame[id_col].astype(str)
    parts = job.all_gather((bool((ids == str(series)).any()), list(pd.unique(ids)[:5])))
    if not any(here for here, _ in parts):
        seen = [i for _, some in parts for i in some][:5]
        raise everywhere(CLIError(f"--series: unknown id {series!r}; ids are e.g. {seen}"), job)


def plot_owner(frame: pd.DataFrame, id_col: str | None, series: str | None, job: Job) -> bool:
    """Whether this process draws ``--plot``: the one holding ``--series`` (process 0's
    first series when it is not given)."""
    if id_col is None or series is None:
        return job.is_main and frame.shape[0] > 0
    here = bool((frame[id_col].astype(str) == str(series)).any())
    holders = job.all_gather(here)
    if not any(holders):
        raise everywhere(CLIError(f"--series: unknown id {series!r}"), job)
    return here and holders.index(True) == job.rank


def record_times_all(spec: Any, frame: pd.DataFrame, series: SeriesSet, job: Job) -> None:
    """:func:`~gpvae.app.cli.columns.record_times` over every process's series (each
    holding its own): the median time step and the earliest time of all of them."""
    record_times(spec, frame, series)
    if job.world == 1:
        return
    with np.errstate(over="ignore", invalid="ignore"):
        steps = np.concatenate([np.diff(t) for t in series.times])
    values, counts = np.unique(steps, return_counts=True)
    parts = job.all_gather((spec.time_start, values, counts))
    all_counts = np.concatenate([c for _, _, c in parts])
    if all_counts.sum():
        spec.time_step = median_of_counts(np.concatenate([v for _, v, _ in parts]), all_counts)
    starts = [s for s, _, _ in parts]
    if spec.time_type == "datetime":
        spec.time_start = min(starts, key=pd.Timestamp)
    else:
        spec.time_start = min(float(s) for s in starts)
