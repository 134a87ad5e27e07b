"""PhysioNet/Computing in Cardiology Challenge 2012, set A: 4,000 ICU stays.

Source: Silva et al., "Predicting in-hospital mortality of ICU patients: the PhysioNet/CinC
Challenge 2012" (Open Data Commons Attribution 1.0). One file per stay,
``set-a/<RecordID>.txt``, with rows ``Time,Parameter,Value`` (``Time`` is ``HH:MM`` since
admission; ``-1`` marks an unknown value), and ``Outcomes-a.txt`` with the
``In-hospital_death`` label.

The loader returns the **raw** values. The files hold known corrupted entries (for example
pH 735 for 7.35, body temperature -17.8 or 0, weight 0): they are kept, because cleaning is
a modelling choice. ``physionet_plausibility_filter`` (or ``plausibility_filter=True`` in
the loader) removes physiologically implausible values with the bounds in
``PHYSIONET_PLAUSIBLE_RANGES``; it is off by default.
"""

from __future__ import annotations

import io
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from gpvae.datasets._paths import TimeSeriesData, dataset_dir
from gpvae.datasets.splits import split_sizes
from gpvae.errors import InputTypeError, ShapeError, ValidationError, invalid

__all__ = [
    "PHYSIONET_PLAUSIBLE_RANGES",
    "PHYSIONET_STATIC",
    "PHYSIONET_TIME_VARYING",
    "load_physionet2012",
    "physionet_plausibility_filter",
    "random_split",
]

PHYSIONET_TIME_VARYING: tuple[str, ...] = (
    "ALP",
    "ALT",
    "AST",
    "Albumin",
    "BUN",
    "Bilirubin",
    "Cholesterol",
    "Creatinine",
    "DiasABP",
    "FiO2",
    "GCS",
    "Glucose",
    "HCO3",
    "HCT",
    "HR",
    "K",
    "Lactate",
    "MAP",
    "MechVent",
    "Mg",
    "NIDiasABP",
    "NIMAP",
    "NISysABP",
    "Na",
    "PaCO2",
    "PaO2",
    "Platelets",
    "RespRate",
    "SaO2",
    "SysABP",
    "Temp",
    "TroponinI",
    "TroponinT",
    "Urine",
    "WBC",
    "Weight",
    "pH",
)
"""The 37 time-varying parameters, in column order (D = 37).

``Weight`` is recorded both as a general descriptor at 00:00 and later as a time series; as
in PyPOTS / TSI-Bench it is treated as time-varying (the 00:00 descriptor lands in hour 0).
``MechVent`` is only ever recorded as 1; its absence is missing, not 0.
"""

PHYSIONET_STATIC: tuple[str, ...] = ("Age", "Gender", "Height", "ICUType")
"""Static descriptors returned in ``static`` (``RecordID`` is returned as ``ids``)."""

PHYSIONET_PLAUSIBLE_RANGES: dict[str, tuple[float, float]] = {
    "pH": (6.5, 8.0),
    "Temp": (25.0, 45.0),
    "Weight": (20.0, 350.0),
    "Height": (100.0, 250.0),
    "HR": (1.0, 300.0),
    "DiasABP": (1.0, 300.0),
    "SysABP": (1.0, 300.0),
    "MAP": (1.0, 300.0),
    "NIDiasABP": (1.0, 300.0),
    "NISysABP": (1.0, 300.0),
    "NIMAP": (1.0, 300.0),
    "PaCO2": (5.0, 200.0),
    "PaO2": (10.0, 800.0),
    "SaO2": (20.0, 100.0),
    "FiO2": (0.21, 1.0),
    "GCS": (3.0, 15.0),
}
"""Inclusive plausible range [low, high] per parameter (units as in the files).

Values outside are physiologically impossible for a monitored living patient or are unit /
typing errors: pH 735 (7.35), temperature -17.8 or 0 degC, weight 0 kg, height 431.8 cm,
blood pressure or heart rate 0 (line flush / disconnection), PaCO2 0.3 mmHg. Parameters not
listed are left unchanged.
"""

_EXPECTED_HEADER = "Time,Parameter,Value"


def _read_stay_files(folder: Path) -> tuple[np.ndarray, pd.DataFrame]:
    """Read every ``<RecordID>.txt`` of ``folder`` into one long table.

    Returns:
        ids: (n,) int64 record ids (file stems), sorted.
        rows: long table with columns stay (index into ids), minutes, parameter, value.
    """
    paths = [p for p in folder.glob("*.txt") if p.stem.isdigit()]
    if not paths:
        raise ValidationError(
            f"data_dir: expected <RecordID>.txt files in {str(folder)!r}, found none"
        )
    paths.sort(key=lambda p: int(p.stem))
    ids = np.array([int(p.stem) for p in paths], dtype=np.int64)
    bodies: list[str] = []
    counts = np.zeros(len(paths), dtype=np.int64)
    for i, path in enumerate(paths):
        text = path.read_text()
        if "\r" in text:
            text = text.replace("\r", "")
        header, _, body = text.partition("\n")
        if header.strip() != _EXPECTED_HEADER:
            raise ValidationError(
                f"data_dir: expected the header {_EXPECTED_HEADER!r} in {str(path)!r}, "
                f"found {header[:60]!r}"
            )
        body = body.rstrip("\n")
        if body:
            bodies.append(body)
            bodies.append("\n")
            counts[i] = body.count("\n") + 1
    # "HH:MM" -> two numeric columns, so that the C parser does all the work.
    joined = "".join(bodies).replace(":", ",")
    rows = pd.read_csv(
        io.StringIO(joined),
        header=None,
        names=["hours", "mins", "parameter", "value"],
        skip_blank_lines=False,
        dtype={"parameter": str},
        engine="c",
    )
    if len(rows) != int(counts.sum()):
        raise ValidationError(
            f"data_dir: expected {int(counts.sum())} parseable rows in {str(folder)!r}, "
            f"found {len(rows)} (malformed file?)"
        )
    stay = np.repeat(np.arange(len(paths), dtype=np.int64), counts)
    hours = pd.to_numeric(rows["hours"], errors="coerce").to_numpy(dtype=float)
    mins = pd.to_numeric(rows["mins"], errors="coerce").to_numpy(dtype=float)
    value = pd.to_numeric(rows["value"], errors="coerce").to_numpy(dtype=float)
    table = pd.DataFrame(
        {
            "stay": stay,
            "minutes": hours * 60.0 + mins,
            "parameter": rows["parameter"].to_numpy(),
            "value": value,
        }
    )
    return ids, table


def _apply_bounds(values: np.ndarray, names: np.ndarray | list[str], columns: bool) -> None:
    """Set values outside ``PHYSIONET_PLAUSIBLE_RANGES`` to NaN, in place.

    Args:
        values: (..., D) array when ``columns`` (names are the D column names), else (R,)
            values with (R,) per-row parameter names.
        names: column names, or per-row names.
        columns: which of the two layouts ``values`` has.
    """
    names_arr = np.asarray(names)
    for name, (low, high) in PHYSIONET_PLAUSIBLE_RANGES.items():
        if columns:
            where = np.flatnonzero(names_arr == name)
            for j in where:
                col = values[..., j]
                col[(col < low) | (col > high)] = np.nan
        else:
            rows = names_arr == name
            bad = rows & ((values < low) | (values > high))
            values[bad] = np.nan


def load_physionet2012(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    hourly: bool = True,
    num_hours: int | None = 48,
    plausibility_filter: bool = False,
) -> TimeSeriesData:
    """Load PhysioNet 2012 set A: 4,000 ICU stays, 37 time-varying parameters, mortality.

    Values are returned **raw**: known corrupted entries (pH 735, temperature -17.8, weight 0,
    ...) are kept unless ``plausibility_filter=True``. ``-1`` (unknown) becomes NaN for
    every parameter. Stays are ordered by RecordID.

    Time-varying parameters are ``PHYSIONET_TIME_VARYING`` (D = 37, ``Weight`` included as a
    time series, as in PyPOTS / TSI-Bench). ``RecordID`` becomes ``ids``; ``Age``, ``Gender``,
    ``Height`` and ``ICUType`` become ``static``.

    With ``hourly=True`` the values are averaged within each hour: a row at ``m`` minutes
    goes to step ``floor(m / 60)``; rows at exactly ``num_hours * 60`` minutes (48:00) go to
    the last step (they would otherwise form a 49th step holding 41 values in set A); rows
    later than that are dropped. With ``hourly=False`` each stay keeps its own irregular
    times: one row per distinct minute with an observed value (repeated measurements of a
    parameter at the same minute are averaged), times in hours, rows later than
    ``num_hours * 60`` minutes dropped (``num_hours=None`` keeps all).

    Args:
        data_dir: the shared data directory or its ``physionet2012`` folder; None resolves
            it with ``resolve_data_dir`` (``GPVAE_DATA`` or ``../shared/data``).
        hourly: regular hourly grid (True) or the raw irregular times (False).
        num_hours: length of the window since admission, in hours (48 in the challenge).
            Required (not None) when ``hourly``.
        plausibility_filter: set values outside ``PHYSIONET_PLAUSIBLE_RANGES`` to NaN before
            averaging (off by default; see ``physionet_plausibility_filter``).

    Returns:
        ``TimeSeriesData`` with ``X`` (n, num_hours, 37) and ``times`` (n, num_hours) = 0..47
        hours when ``hourly``, else lists of (T_i, 37) and (T_i,) arrays; ``ids`` (n,) int64
        RecordIDs; ``labels`` (n,) int64 In-hospital_death (None when ``Outcomes-a.txt`` is
        absent); ``static`` (n, 4) float.

    Raises:
        ValidationError: missing or malformed files, or a bad ``num_hours``.
    """
    if num_hours is not None and (
        isinstance(num_hours, bool) or not isinstance(num_hours, int) or num_hours < 1
    ):
        raise invalid("num_hours", "a positive int or None", repr(num_hours))
    if hourly and num_hours is None:
        raise invalid("num_hours", "a positive int when hourly=True", "None")
    folder = dataset_dir(data_dir, "physionet2012", "set-a")
    ids, table = _read_stay_files(folder / "set-a")
    n = len(ids)
    features = list(PHYSIONET_TIME_VARYING)
    n_feat = len(features)

    value = table["value"].to_numpy(dtype=float, copy=True)
    value[value == -1.0] = np.nan
    codes, uniques = pd.factorize(table["parameter"])
    param_names = np.asarray(uniques, dtype=object)
    if plausibility_filter:
        _apply_bounds(value, param_names[codes], columns=False)
    stay = table["stay"].to_numpy()
    minutes = table["minutes"].to_numpy()

    # Static descriptors: the first record of each at any time (they are written at 00:00).
    static = np.full((n, len(PHYSIONET_STATIC)), np.nan)
    for j, name in enumerate(PHYSIONET_STATIC):
        hits = np.flatnonzero(param_names == name)
        if len(hits) == 0:
            continue
        rows = np.flatnonzero(codes == hits[0])
        first_stays, first = np.unique(stay[rows], return_index=True)
        static[first_stays, j] = value[rows[first]]

    # Time-varying rows.
    feature_of_code = np.full(len(param_names) + 1, -1, dtype=np.int64)
    known = {name: k for k, name in enumerate(features)}
    for c, name in enumerate(param_names):
        feature_of_code[c] = known.get(str(name), -1)
    feat = feature_of_code[codes]  # code -1 (NaN parameter) maps to the sentinel -1
    keep = (feat >= 0) & ~np.isnan(value) & ~np.isnan(minutes)
    limit = None if num_hours is None else num_hours * 60.0
    if limit is not None:
        keep &= minutes <= limit
    stay_k, minute_k, feat_k, value_k = stay[keep], minutes[keep], feat[keep], value[keep]
    ignored = sorted(
        {str(p) for p in param_names} - set(features) - set(PHYSIONET_STATIC) - {"RecordID"}
    )

    info: dict[str, object] = {
        "name": "physionet2012",
        "source": str(folder),
        "units": "raw values as in the files; times in hours since admission",
        "plausibility_filter": plausibility_filter,
        "ignored_parameters": ignored,
        "num_rows_used": int(keep.sum()),
    }
    if hourly and num_hours is not None:  # hourly with None was rejected above
        step = np.minimum(np.floor(minute_k / 60.0).astype(np.int64), num_hours - 1)
        flat = (stay_k * num_hours + step) * n_feat + feat_k
        size = n * num_hours * n_feat
        sums = np.bincount(flat, weights=value_k, minlength=size)
        counts = np.bincount(flat, minlength=size)
        with np.errstate(invalid="ignore", divide="ignore"):
            X_flat = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        X: np.ndarray | list[np.ndarray] = X_flat.reshape(n, num_hours, n_feat)
        times: np.ndarray | list[np.ndarray] = np.tile(np.arange(num_hours, dtype=float), (n, 1))
        info["aggregation"] = (
            "mean within each hour; hour = floor(minutes / 60); rows at exactly "
            f"{num_hours}:00 go to the last step"
        )
    else:
        X, times = _ragged(stay_k, minute_k, feat_k, value_k, n, n_feat)
        info["aggregation"] = "irregular; repeated measurements at the same minute averaged"

    labels = _read_labels(folder, ids)
    info["labels"] = "In-hospital_death" if labels is not None else None
    return TimeSeriesData(
        X=X,
        times=times,
        ids=ids,
        features=features,
        labels=labels,
        static=static,
        static_features=list(PHYSIONET_STATIC),
        info=info,
    )


def _ragged(
    stay: np.ndarray,
    minutes: np.ndarray,
    feat: np.ndarray,
    value: np.ndarray,
    n: int,
    n_feat: int,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One (T_i, D) array per stay: a row per distinct observation minute, duplicates averaged."""
    span = int(minutes.max()) + 1 if len(minutes) else 1
    key = stay * span + minutes.astype(np.int64)
    uniq, row = np.unique(key, return_inverse=True)
    n_rows = len(uniq)
    flat = row * n_feat + feat
    sums = np.bincount(flat, weights=value, minlength=n_rows * n_feat)
    counts = np.bincount(flat, minlength=n_rows * n_feat)
    with np.errstate(invalid="ignore", divide="ignore"):
        table = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    table = table.reshape(n_rows, n_feat)
    row_stay = uniq // span
    row_hours = (uniq % span) / 60.0
    bounds = np.searchsorted(row_stay, np.arange(n + 1))
    X = [table[bounds[i] : bounds[i + 1]] for i in range(n)]
    times = [row_hours[bounds[i] : bounds[i + 1]] for i in range(n)]
    return X, times


def _read_labels(folder: Path, ids: np.ndarray) -> np.ndarray | None:
    """In-hospital_death aligned with ``ids``, or None when ``Outcomes-a.txt`` is absent."""
    path = folder / "Outcomes-a.txt"
    if not path.is_file():
        return None
    outcomes = pd.read_csv(path)
    for column in ("RecordID", "In-hospital_death"):
        if column not in outcomes.columns:
            raise ValidationError(
                f"data_dir: expected a {column!r} column in {str(path)!r}, "
                f"found columns {list(outcomes.columns)}"
            )
    by_id = outcomes.set_index("RecordID")["In-hospital_death"]
    missing = np.setdiff1d(ids, by_id.index.to_numpy())
    if len(missing):
        raise ValidationError(
            f"data_dir: expected an outcome for every stay in {str(path)!r}, "
            f"found none for {len(missing)} RecordIDs (first: {missing[:5].tolist()})"
        )
    return by_id.loc[ids].to_numpy(dtype=np.int64)


def physionet_plausibility_filter(data: TimeSeriesData) -> TimeSeriesData:
    """Set physiologically implausible values to NaN (optional; not applied by default).

    Applies the inclusive bounds ``PHYSIONET_PLAUSIBLE_RANGES`` (pH 6.5-8.0, Temp 25-45 degC,
    Weight 20-350 kg, Height 100-250 cm, HR and blood pressures 1-300, PaCO2 5-200 mmHg,
    PaO2 10-800 mmHg, SaO2 20-100 %, FiO2 0.21-1, GCS 3-15) to ``X`` and ``static``.
    On hourly data a corrupted value has already been averaged with the valid values of its
    hour; ``load_physionet2012(..., plausibility_filter=True)`` filters the raw rows before
    averaging and is preferable.

    Args:
        data: the result of ``load_physionet2012`` (hourly or irregular).

    Returns:
        A new ``TimeSeriesData``; the input is not modified. ``info`` gains
        ``"plausibility_filter_removed"``: the number of values set to NaN per parameter.

    Raises:
        InputTypeError: ``data`` is not a ``TimeSeriesData``.
    """
    if not isinstance(data, TimeSeriesData):
        raise InputTypeError(
            f"data: expected a TimeSeriesData from load_physionet2012, found {type(data)}"
        )
    removed: dict[str, int] = {}

    def _filter(arr: np.ndarray, names: list[str]) -> np.ndarray:
        if arr.shape[-1] != len(names):
            raise ShapeError(
                f"data: expected the last axis of X to have {len(names)} features, "
                f"found shape {arr.shape}"
            )
        out = np.array(arr, dtype=float, copy=True)
        before = np.isnan(out).reshape(-1, len(names)).sum(axis=0)
        _apply_bounds(out, names, columns=True)
        after = np.isnan(out).reshape(-1, len(names)).sum(axis=0)
        for name, b, a in zip(names, before, after):
            if a > b:
                removed[name] = removed.get(name, 0) + int(a - b)
        return out

    if isinstance(data.X, np.ndarray):
        X: np.ndarray | list[np.ndarray] = _filter(data.X, data.features)
    else:
        X = [_filter(a, data.features) for a in data.X]
    static = data.static
    if static is not None and data.static_features is not None:
        static = _filter(static, data.static_features)
    info = dict(data.info)
    info["plausibility_filter_removed"] = removed
    return replace(data, X=X, static=static, info=info)


def random_split(
    n: int,
    fractions: tuple[float, ...] = (0.64, 0.16, 0.20),
    seed: int = 0,
) -> tuple[np.ndarray, ...]:
    """Seeded random partition of ``range(n)`` (PhysioNet protocol: 64/16/20).

    Part sizes are ``floor(f * n)`` for all parts but the last, which takes the remainder.

    Args:
        n: number of items.
        fractions: non-negative part sizes summing to 1.
        seed: seed of the ``numpy.random.Generator`` that draws the permutation.

    Returns:
        One sorted int64 index array per fraction; together a partition of ``range(n)``.

    Raises:
        ValidationError: bad ``n``, ``fractions`` or ``seed``.
    """
    sizes = split_sizes(n, fractions)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise invalid("seed", "an int", repr(seed))
    perm = np.random.default_rng(int(seed)).permutation(n)
    edges = np.cumsum((0, *sizes))
    return tuple(np.sort(perm[edges[i] : edges[i + 1]]) for i in range(len(sizes)))
