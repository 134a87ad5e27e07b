"""Parquet datasets read in parts: each process of a distributed job reads only its series.

A Parquet dataset is a folder of ``.parquet`` files (any depth) in the long layout: one row
per (series, time), an id column, a time column and feature columns; typically partitioned
by the id (``id=17/part-0.parquet``, hive style) or sorted by it, so that the rows of a block
of consecutive ids sit in few files or row groups. The series are the distinct ids in sorted
order; process ``rank`` of ``world_size`` takes the contiguous block
:func:`gpvae.data.batching.shard_bounds` gives it, and reads only rows whose id lies between
the block's first and last id: pyarrow skips the files (partition keys) and row groups (min /
max statistics) outside that range, so a process never holds more than its part.

Files end in ``.parquet`` or ``.pq``. A hive partition key that is the id column is read as
the text of the folder name (``id=007/`` is the id ``"007"``, as a CSV id column is read;
pyarrow alone would make it the integer 7), or with the files' type when the files keep the
id column too; other keys are typed as pyarrow infers them (int32 when every value is an
integer, else text).

Use :func:`read_shard` for a process's rows, :func:`series_ids` for the sorted ids, and
:func:`part_name` for the file a process writes its part of an output into.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import pandas as pd

from gpvae.data.batching import shard_bounds
from gpvae.errors import ValidationError

if TYPE_CHECKING:  # pyarrow is imported where a dataset is read: the command line imports
    # this module, and reads CSV files (and says which engine is missing for a Parquet
    # file) without pyarrow
    import pyarrow as pa
    import pyarrow.dataset as ds

__all__ = [
    "EXTENSIONS",
    "PART_PREFIX",
    "is_dataset",
    "open_dataset",
    "parquet_files",
    "part_name",
    "plain_index",
    "read_shard",
    "series_ids",
]

#: Output parts are ``part-00000.parquet``, ``part-00001.parquet``, ... (one per process).
PART_PREFIX = "part-"
#: The extensions of Parquet files (any case), in a folder as for a single file.
EXTENSIONS = (".parquet", ".pq")
#: The folder name of a hive partition whose key is null.
_NULL_KEY = "__HIVE_DEFAULT_PARTITION__"


def parquet_files(path: str | os.PathLike[str]) -> list[Path]:
    """The Parquet files (``.parquet`` or ``.pq``) in folder ``path``, at any depth, sorted."""
    return sorted(
        f for f in Path(path).rglob("*") if f.suffix.lower() in EXTENSIONS and f.is_file()
    )


def is_dataset(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder holding at least one Parquet file (``.parquet`` or
    ``.pq``, at any depth)."""
    p = Path(path)
    return p.is_dir() and any(f.suffix.lower() in EXTENSIONS and f.is_file() for f in p.rglob("*"))


def open_dataset(
    path: str | os.PathLike[str], name: str = "DATA", *, id_col: str | None = None
) -> ds.Dataset:
    """The Parquet dataset in folder ``path`` (hive partitions such as ``id=3/`` become
    columns).

    Args:
        path: the folder.
        name: the argument's name in error messages.
        id_col: the series id column: as a hive partition key, it is read as the folder
            names' text (``id=007/`` is ``"007"``), or with the files' type when the files
            hold the column too.

    Raises:
        ValidationError: naming ``name`` when the folder holds no Parquet file or cannot be
            read, or pyarrow (which reads a folder) does not import.
    """
    _need_pyarrow(path, name)
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    p = Path(path)
    if not is_dataset(p):
        raise ValidationError(
            f"{name}: expected a folder of .parquet files, found {str(p)!r} without any"
        )
    files = [str(f) for f in parquet_files(p)]
    try:
        _check_same_columns(files, p, name)
        partitioning = _hive_partitioning(files, p, pq.read_schema(files[0]), id_col)
        return ds.dataset(
            files, format="parquet", partitioning=partitioning, partition_base_dir=str(p)
        )
    except (pa.ArrowException, OSError) as err:
        raise ValidationError(
            f"{name}: could not read the Parquet files in {str(p)!r}: {err}"
        ) from err


def _need_pyarrow(path: object, name: str) -> None:
    """Raise naming ``name`` when pyarrow does not import: a folder of Parquet files is read
    by pyarrow alone (pandas reads a single file with pyarrow or fastparquet, and says so
    when neither is installed), and the bare ``ModuleNotFoundError`` did not say which
    argument needed it nor what to install."""
    try:
        import pyarrow
        import pyarrow.dataset
        import pyarrow.parquet  # noqa: F401
    except ImportError as err:
        raise ValidationError(
            f"{name}: could not read {str(path)!r} as PARQUET: a folder of Parquet files is "
            f"read with pyarrow, which does not import ({err}); install pyarrow (pip install "
            "pyarrow)"
        ) from err


_INTEGER = re.compile(r"-?[0-9]+")


def _hive_partitioning(
    files: list[str], folder: Path, schema: pa.Schema, id_col: str | None
) -> ds.Partitioning | None:
    """The hive partitioning of the ``key=value`` folders above ``files`` (None: there are
    none), each key typed: the files' type when the files hold the column too; text for
    ``id_col``; otherwise as pyarrow infers it (int32 when every value is an integer that
    fits, text otherwise)."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    values: dict[str, set[str]] = {}
    for f in files:
        for segment in Path(f).relative_to(folder).parent.parts:
            key, eq, value = segment.partition("=")
            if eq and key:
                values.setdefault(unquote(key), set()).add(unquote(value))
    if not values:
        return None
    fields = []
    for key, seen in values.items():
        if key in schema.names:
            typ = schema.field(key).type
        elif key == id_col:
            typ = pa.string()
        else:
            known = [v for v in seen if v != _NULL_KEY]
            fits = all(_INTEGER.fullmatch(v) and -(2**31) <= int(v) < 2**31 for v in known)
            typ = pa.int32() if known and fits else pa.string()
        fields.append(pa.field(key, typ))
    return ds.partitioning(pa.schema(fields), flavor="hive")


def plain_index(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a plain 0..n-1 index: the named levels of an index that pandas stored
    in a Parquet file (``df.to_parquet()`` of a frame indexed by ``date``) become columns
    again, as the same frame written to CSV has them; an unnamed index of dates, durations
    or text becomes a column named ``index``; unnamed integer ones (row numbers) are
    dropped."""
    if _is_plain(frame.index):
        return frame
    named = [n for n in frame.index.names if n is not None and n not in frame.columns]
    if named:
        frame = frame.reset_index(level=named)
    index = frame.index
    if index.nlevels == 1 and index.name is None and index.dtype.kind in "MmO":
        # unnamed dates (df.to_parquet() of a frame indexed by pd.date_range) are data, not
        # row numbers: a column named 'index', as pandas' reset_index names it
        name = next(f"index{k or ''}" for k in range(len(frame.columns) + 1)
                    if f"index{k or ''}" not in frame.columns)  # fmt: skip
        return frame.rename_axis(name).reset_index()
    return frame if _is_plain(frame.index) else frame.reset_index(drop=True)


def _is_plain(index: pd.Index) -> bool:
    return isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1


def _check_same_columns(files: list[str], folder: Path, name: str) -> None:
    """Raise naming ``name`` unless every file has the first file's columns (the dataset
    takes the first file's schema: a column only in a later file was dropped, and a
    renamed one read as missing, without a word). Reads the files' footers only."""
    import pyarrow.parquet as pq

    first = pq.read_schema(files[0]).names
    for f in files[1:]:
        cols = pq.read_schema(f).names
        if set(cols) != set(first):
            raise ValidationError(
                f"{name}: expected the same columns in every Parquet file of {str(folder)!r}, "
                f"found {first} in {Path(files[0]).relative_to(folder)} and {cols} in "
                f"{Path(f).relative_to(folder)}"
            )


def _check_column(dataset: ds.Dataset, column: str, name: str) -> None:
    names = list(dataset.schema.names)
    if column not in names:
        raise ValidationError(f"{name}: expected an id column {column!r}, found columns {names}")


def series_ids(dataset: ds.Dataset, id_col: str, name: str = "DATA") -> pa.Array:
    """The distinct series ids of ``dataset``, sorted (each once).

    Ids that are hive partition keys are read from the folder names alone; otherwise the id
    column is scanned batch by batch (memory grows with the number of series, not of rows).

    Raises:
        ValidationError: naming ``name`` for a missing id column or a row without an id.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    _check_column(dataset, id_col, name)
    keys: list[Any] = []
    for fragment in dataset.get_fragments():
        value = ds.get_partition_keys(fragment.partition_expression).get(id_col)
        if value is None:
            keys = []
            break
        keys.append(value)
    if keys:  # one key per file: an id with several files (or sub-folders) is listed once
        ids = pc.unique(pa.array(keys, type=dataset.schema.field(id_col).type))
    else:
        parts = []
        for batch in dataset.to_batches(columns=[id_col]):
            col = batch.column(0)
            if col.null_count:
                raise ValidationError(
                    f"{name}: expected an id in every row of column {id_col!r}, found "
                    f"{col.null_count} empty id(s)"
                )
            parts.append(pc.unique(col))
        if not parts:
            raise ValidationError(f"{name}: expected at least one row, found none")
        ids = pc.unique(pa.chunked_array(parts).combine_chunks())
    return ids.take(pc.sort_indices(ids))


def read_shard(
    path: str | os.PathLike[str] | ds.Dataset,
    id_col: str,
    rank: int = 0,
    world_size: int = 1,
    *,
    columns: list[str] | None = None,
    ids: pa.Array | None = None,
    name: str = "DATA",
) -> pd.DataFrame:
    """The rows of process ``rank``'s series (all rows when ``world_size`` is 1).

    Args:
        path: the dataset's folder, or an opened dataset.
        id_col: the series id column.
        rank: this process, in ``[0, world_size)``.
        world_size: the number of processes.
        columns: the columns to read (None: all).
        ids: the sorted distinct ids (:func:`series_ids`), if known.
        name: the argument's name in error messages.

    Returns:
        A DataFrame of the rows whose id is in the process's block, in the dataset's order,
        with a plain index (see :func:`plain_index`).

    Raises:
        ValidationError: naming ``name`` when there are fewer series than processes, or the
            data cannot be read (or pyarrow does not import).
    """
    _need_pyarrow(path, name)
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    dataset = path if isinstance(path, ds.Dataset) else open_dataset(path, name, id_col=id_col)
    if ids is None:
        ids = series_ids(dataset, id_col, name)
    if len(ids) < world_size:
        raise ValidationError(
            f"{name}: expected at least one series per process ({world_size}), found "
            f"{len(ids)} series"
        )
    start, stop = shard_bounds(len(ids), rank, world_size)
    lo: Any = ids[start].as_py()
    hi: Any = ids[stop - 1].as_py()
    field = pc.field(id_col)
    where = (field >= lo) & (field <= hi) if world_size > 1 else None
    if columns is not None and id_col not in columns:
        columns = [id_col, *columns]
    try:
        table = dataset.to_table(columns=columns, filter=where)
    except (pa.ArrowException, OSError) as err:
        raise ValidationError(
            f"{name}: could not read the rows of series {lo!r}..{hi!r}: {err}"
        ) from err
    return plain_index(table.to_pandas())


def part_name(rank: int) -> str:
    """The file name of process ``rank``'s part of a partitioned output."""
    return f"{PART_PREFIX}{int(rank):05d}.parquet"
