"""The Parquet dataset reader of distributed jobs (:mod:`gpvae.data.parquet`): every process
reads disjoint series that together are all of them, every row of a series goes to the one
process that holds it, for plain folders (several files, many row groups, ids in any order)
and hive-partitioned ones, integer and text ids; bad folders fail naming the argument."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from gpvae.data import parquet
from gpvae.errors import ValidationError


def _long(n: int, seed: int, text_ids: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        sid = f"patient-{i:03d}" if text_ids else int(1000 + 7 * i)
        for t in range(int(rng.integers(1, 6))):
            rows.append((sid, float(t), float(rng.normal())))
    return pd.DataFrame(rows, columns=["id", "t", "x"])


def _plain(frame: pd.DataFrame, path: Path, shuffle: bool) -> Path:
    """Three files with small row groups; rows sorted by id, or shuffled."""
    path.mkdir()
    if shuffle:
        frame = frame.sample(frac=1.0, random_state=0)
    for k, part in enumerate(np.array_split(np.arange(len(frame)), 3)):
        table = pa.Table.from_pandas(frame.iloc[part], preserve_index=False)
        pq.write_table(table, path / f"f{k}.parquet", row_group_size=7)
    return path


def _hive(frame: pd.DataFrame, path: Path) -> Path:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    ds.write_dataset(table, path, format="parquet", partitioning=["id"], partitioning_flavor="hive")
    return path


@pytest.mark.parametrize("layout", ["sorted", "shuffled", "hive"])
@pytest.mark.parametrize("text_ids", [False, True], ids=["int-ids", "text-ids"])
def test_processes_read_disjoint_series_that_cover_all(
    tmp_path: Path, layout: str, text_ids: bool
) -> None:
    frame = _long(23, seed=1, text_ids=text_ids)
    if layout == "hive":
        path = _hive(frame, tmp_path / "data")
    else:
        path = _plain(frame, tmp_path / "data", shuffle=layout == "shuffled")
    want = frame.groupby("id")["x"].apply(lambda s: sorted(s.tolist())).to_dict()
    dataset = parquet.open_dataset(path)
    ids = parquet.series_ids(dataset, "id")
    assert sorted(str(i) for i in ids.to_pylist()) == sorted(str(i) for i in want)
    for world in (1, 2, 3, 4, 23):
        seen: dict[str, list[float]] = {}
        sizes = []
        for rank in range(world):
            part = parquet.read_shard(path, "id", rank, world)
            groups = part.groupby(part["id"].astype(str))["x"]
            got = groups.apply(lambda s: sorted(s.tolist())).to_dict()
            assert not set(got) & set(seen), (world, rank)  # disjoint
            seen.update(got)
            sizes.append(len(got))
        assert seen == {str(k): v for k, v in want.items()}  # together: every row of all
        assert max(sizes) - min(sizes) <= 1  # balanced


def test_a_process_reads_only_its_row_groups(tmp_path: Path) -> None:
    """With rows sorted by id, a process's filter skips other processes' row groups."""
    frame = _long(40, seed=2, text_ids=False).sort_values("id")
    path = _plain(frame, tmp_path / "data", shuffle=False)
    dataset = parquet.open_dataset(path)
    ids = parquet.series_ids(dataset, "id")
    lo, hi = ids[0].as_py(), ids[9].as_py()  # the first of 4 processes
    expr = (ds.field("id") >= lo) & (ds.field("id") <= hi)
    groups = [rg for f in dataset.get_fragments() for rg in f.split_by_row_group(expr)]
    total = sum(f.metadata.num_row_groups for f in dataset.get_fragments())
    assert len(groups) < total / 2  # row groups outside the range are not even opened
    assert len(parquet.read_shard(path, "id", 0, 4)) == int(frame["id"].between(lo, hi).sum())


def test_bad_folders_name_the_argument(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValidationError, match=r"^DATA: expected a folder of \.parquet files"):
        parquet.read_shard(empty, "id")
    frame = _long(3, seed=3, text_ids=False)
    path = _plain(frame, tmp_path / "three", shuffle=False)
    with pytest.raises(ValidationError, match=r"^DATA: expected at least one series per process"):
        parquet.read_shard(path, "id", 0, 4)
    with pytest.raises(ValidationError, match="DATA: expected an id column 'station'"):
        parquet.read_shard(path, "station", 0, 2)
    holes = tmp_path / "holes"
    holes.mkdir()
    bad = frame.astype({"id": "Int64"})
    bad.loc[1, "id"] = pd.NA
    bad.to_parquet(holes / "a.parquet", index=False)
    with pytest.raises(ValidationError, match="expected an id in every row"):
        parquet.read_shard(holes, "id", 0, 2)


@pytest.mark.parametrize("change", ["extra", "renamed"])
def test_files_with_other_columns_are_refused(change: str, tmp_path: Path) -> None:
    """The folder took the first file's columns: a column only in a later file was dropped
    and a renamed one read as missing, without a word."""
    frame = pd.DataFrame({"id": np.repeat(["a", "b"], 5), "t": np.tile(np.arange(5.0), 2),
                          "x": np.arange(10.0)})  # fmt: skip
    folder = tmp_path / "data"
    folder.mkdir()
    frame.iloc[:5].to_parquet(folder / "p0.parquet", index=False)
    later = frame.iloc[5:].copy()
    later = later.assign(y=1.0) if change == "extra" else later.rename(columns={"x": "X"})
    later.to_parquet(folder / "p1.parquet", index=False)
    with pytest.raises(ValidationError, match=r"DATA: expected the same columns .* in p1\.parquet"):
        parquet.open_dataset(folder)


@pytest.mark.parametrize("nested", [False, True], ids=["files", "sub-folders"])
def test_an_id_with_several_files_is_one_series(tmp_path: Path, nested: bool) -> None:
    """A hive folder where an id has several files (data appended by day, or ``id=A/day=1/``
    sub-folders) listed the id once per file: the processes' blocks overlapped and a series
    was read by two processes."""
    frame = _long(5, seed=4, text_ids=True)
    frame["day"] = frame.groupby("id").cumcount() % 2  # two files for most ids
    path = tmp_path / "data"
    for (sid, day), rows in frame.groupby(["id", "day"]):
        folder = path / f"id={sid}" / (f"day={day}" if nested else "")
        folder.mkdir(parents=True, exist_ok=True)
        name = "part.parquet" if nested else f"day{day}.parquet"
        rows.drop(columns=["id", "day"]).to_parquet(folder / name, index=False)
    ids = parquet.series_ids(parquet.open_dataset(path), "id")
    assert ids.to_pylist() == sorted(frame["id"].unique())
    for world in (2, 3):
        parts = [parquet.read_shard(path, "id", rank, world) for rank in range(world)]
        held = [set(p["id"]) for p in parts]
        assert sum(len(h) for h in held) == 5  # each series in one process
        assert sum(len(p) for p in parts) == len(frame)  # every row read once


def test_hive_ids_keep_their_text(tmp_path: Path) -> None:
    """``id=007/`` was the integer 7 (pyarrow types partition keys); as a CSV id column is
    read, the id is the folder name's text, and files that keep the id column too could
    not be read at all ("incompatible types")."""
    ids = np.repeat(["007", "010", "042"], 4)
    frame = pd.DataFrame({"id": ids, "t": np.tile(np.arange(4.0), 3), "x": np.arange(12.0)})
    frame["year"] = 2013
    bare, kept = tmp_path / "bare", tmp_path / "kept"
    for (sid, year), rows in frame.groupby(["id", "year"]):
        folder = bare / f"id={sid}" / f"year={year}"
        folder.mkdir(parents=True)
        rows.drop(columns=["id", "year"]).to_parquet(folder / "a.parquet")
        (kept / f"id={sid}").mkdir(parents=True)
        rows.to_parquet(kept / f"id={sid}" / "a.parquet", index=False)
    for path in (bare, kept):
        part = parquet.read_shard(path, "id", 1, 2)
        assert sorted(set(part["id"])) == ["042"]
        assert part["year"].tolist() == [2013] * 4  # other keys: typed as before (int32)
        whole = parquet.read_shard(path, "id")
        assert whole["id"].tolist() == frame["id"].tolist()


def test_a_folder_of_pq_files_is_a_dataset(tmp_path: Path) -> None:
    """``.pq`` is a Parquet extension for a file; a folder of them was "without any"."""
    frame = _long(4, seed=5, text_ids=True)
    path = tmp_path / "data"
    path.mkdir()
    frame.iloc[:7].to_parquet(path / "a.pq", index=False)
    frame.iloc[7:].to_parquet(path / "b.PQ", index=False)
    assert parquet.is_dataset(path)
    whole = parquet.read_shard(path, "id")
    pd.testing.assert_frame_equal(whole, frame, check_dtype=False)


def test_a_stored_index_is_a_column_again(tmp_path: Path) -> None:
    """Files written by ``df.to_parquet()`` from a frame indexed by ``date`` hold the column,
    but pandas read it back as the index, which the reader dropped (the same frame as CSV
    has it); unnamed stored indexes (row numbers) are left out."""
    dates = pd.date_range("2024-01-01", periods=6, freq="D", name="date")
    frame = pd.DataFrame({"id": ["a"] * 3 + ["b"] * 3, "x": np.arange(6.0)}, index=dates)
    path = tmp_path / "data"
    path.mkdir()
    frame.iloc[:3].to_parquet(path / "a.parquet")
    frame.iloc[3:].to_parquet(path / "b.parquet")
    part = parquet.read_shard(path, "id", 0, 2)
    assert list(part.columns) == ["date", "id", "x"]  # where the CSV has it
    assert part["date"].tolist() == list(dates[:3])
    assert isinstance(part.index, pd.RangeIndex)
    numbers = tmp_path / "numbers"
    numbers.mkdir()
    frame.reset_index().iloc[::-1].to_parquet(numbers / "a.parquet")  # an Int64 index
    part = parquet.read_shard(numbers, "id", 1, 2)
    assert list(part.columns) == ["date", "id", "x"]
    assert part.index.tolist() == [0, 1, 2]
    # an unnamed index of dates is data, not row numbers: a column named 'index'
    unnamed = tmp_path / "unnamed.parquet"
    frame.rename_axis(None).to_parquet(unnamed)
    got = parquet.plain_index(pd.read_parquet(unnamed))
    assert list(got.columns) == ["index", "id", "x"]
    assert got["index"].tolist() == list(dates)
