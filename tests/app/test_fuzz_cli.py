"""Property-based fuzzing of the command line's files and options.

Random CSV / Parquet files (long and wide; numeric or date times; sorted or shuffled rows;
missing cells, constant, int and bool columns, magnitudes 1e-30..1e30) go through
``gpvae fit``, ``impute``, ``forecast``, ``detect`` and ``sample`` in process, via
:func:`gpvae.app.cli.main`. Every case records what it breaks on purpose (duplicate, empty,
infinite or text times; Inf or text values; all-missing series or features; missing ids or
columns; header-only, ragged or binary files; bad options). A case
with nothing broken must exit 0 with finite outputs and the observed values unchanged bit
for bit; a broken one must exit 1 (2 for usage errors) with exactly one ``error: ...`` line
on stderr that names the argument or option (``DATA``, ``--features``, ``--level``, ...),
and no traceback.

``FAST`` examples per test in the default run, ``SLOW`` in the slow suite; the environment
variable ``GPVAE_FUZZ_SCALE`` multiplies both. ``pytest -s`` prints the number of cases.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _fuzz import FUZZ, case_report, scaled
from gpvae.app.cli import main
from gpvae.app.cli.tables import read_table

FAST = scaled(30)
SLOW = scaled(250)
FIT = ["--epochs", "1", "--latent-dim", "2", "--hidden", "8", "--batch-size", "2", "--quiet"]
FEATURES = ["a", "b"]

COUNTS: Counter[str] = Counter()
_report = case_report("fuzz cli", COUNTS)


def run(*args: Any) -> tuple[int, str, str]:
    """``gpvae ARGS`` in process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def check_outcome(case: str, blame: set[str], result: tuple[int, str, str]) -> bool:
    """True on success; on failure check the single named ``error:`` line."""
    code, _, err = result
    COUNTS[f"{case}:cases"] += 1
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert "Traceback" not in err
    assert all(ln.startswith(("error: ", "warning: ")) for ln in lines), err
    if code == 0:
        assert not errors, err
        assert not blame, f"broken {sorted(blame)} accepted"
        COUNTS[f"{case}:ok"] += 1
        return True
    COUNTS[f"{case}:error"] += 1
    assert blame, f"valid input rejected (exit {code}): {err}"
    assert code in (1, 2), code
    assert len(errors) == 1, err
    assert len(lines) == 1, err
    line = errors[0]
    assert "--debug" not in line, f"unexpected exception: {line}"  # not a GPVAEError/usage
    named = [n for n in blame if line.startswith(f"error: {n}") or f"'{n}'" in line]
    assert named, f"{sorted(blame)} not named in: {line}"
    return False


# ---------------------------------------------------------------- files


@dataclass
class File:
    """A data file to write, and what it breaks on purpose."""

    frame: pd.DataFrame | None
    suffix: str
    long: bool
    blame: set[str] = field(default_factory=set)
    raw: bytes | None = None  # written as is instead of the frame
    n: int = 1

    def write(self, directory: Path) -> Path:
        path = Path(tempfile.mkstemp(suffix=self.suffix, dir=directory)[1])
        if self.raw is not None:
            path.write_bytes(self.raw)
        elif self.suffix.endswith(".parquet"):
            assert self.frame is not None
            frame = self.frame.copy()
            for c in frame.columns:  # Parquet columns hold one type: text for mixed ones
                kinds = {type(v) for v in frame[c] if not pd.isna(v)}
                if frame[c].dtype == object and len(kinds) > 1:
                    frame[c] = [None if pd.isna(v) else str(v) for v in frame[c]]
            frame.to_parquet(path, index=False)
        else:
            assert self.frame is not None
            self.frame.to_csv(path, index=False)
        return path


_DATA_FAULTS = [
    "dup_time",
    "nan_time",
    "inf_time",
    "word_time",
    "huge_time",
    "inf_value",
    "word_value",
    "all_missing_series",
    "all_missing_feature",
    "single_step",
    "missing_id",
    "header_only",
    "no_feature_column",
    "ragged_line",
    "binary",
    "extension",
]


@st.composite
def files(draw: st.DrawFn, fit: bool = False) -> File:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    long = draw(st.booleans())
    n = draw(st.integers(1, 3)) if long else 1
    lengths = [draw(st.integers(2, 7)) for _ in range(n)]
    fault = draw(st.sampled_from(["none"] * 20 + _DATA_FAULTS))
    blame: set[str] = set()
    dates = draw(st.integers(0, 3)) == 0
    tscale = 10.0 ** draw(st.integers(-3, 6))
    toff = draw(st.sampled_from([0.0, 0.0, -50.0, 1e6]))
    scales = 10.0 ** np.array([draw(st.integers(-30, 30)) for _ in FEATURES])
    missing = draw(st.sampled_from([0.0, 0.2, 0.5]))
    rows = []
    for i, T in enumerate(lengths):
        t = toff + np.cumsum(rng.exponential(size=T) + 0.1) * tscale
        vals = rng.standard_normal((T, len(FEATURES))) * scales
        vals[rng.random(vals.shape) < missing] = np.nan
        if np.isnan(vals).all():
            vals[0, 0] = scales[0]
        for k in range(T):
            rows.append({"id": f"s{i}", "t": t[k], **dict(zip(FEATURES, vals[k]))})
    frame = pd.DataFrame(rows)
    col_kind = draw(st.sampled_from(["float", "float", "const", "int", "bool"]))
    if col_kind == "const":
        frame["b"] = np.where(frame["b"].isna(), np.nan, 7.5)
    elif col_kind == "int":
        frame["b"] = np.arange(len(frame)) % 5
    elif col_kind == "bool":
        frame["b"] = np.arange(len(frame)) % 3 == 0
    if dates:
        base = pd.Timestamp("2021-06-01")
        steps = pd.to_timedelta(np.round((frame["t"] - toff) / tscale * 3600.0), unit="s")
        frame["t"] = (base + steps).dt.strftime("%Y-%m-%dT%H:%M:%S")
        if frame.groupby("id")["t"].apply(lambda s: s.duplicated().any()).any():
            blame.add("DATA")  # rounding to seconds merged two times
    if draw(st.booleans()):
        frame["note"] = "x"  # a text column, not a feature
    if not long:
        frame = frame[frame["id"] == "s0"].drop(columns="id")
    if fit:  # every feature observed somewhere
        for f, scale in zip(FEATURES, scales):
            if frame[f].isna().all():
                frame.loc[frame.index[0], f] = scale
    frame = frame.sample(frac=1.0, random_state=int(rng.integers(1000))).reset_index(drop=True)

    def s0_rows() -> pd.Index:
        return frame.index[frame["id"] == "s0"] if long else frame.index

    target = int(s0_rows()[0])

    def set_cell(col: str, value: Any) -> None:
        frame[col] = frame[col].astype(object)
        frame.loc[target, col] = value

    raw = None
    suffix = draw(st.sampled_from([".csv", ".csv", ".parquet", ".csv.gz"]))
    if fault == "dup_time":
        rows = s0_rows()
        frame.loc[rows[1], "t"] = frame.loc[rows[0], "t"]
        blame.add("DATA")
    elif fault == "nan_time":
        frame.loc[target, "t"] = None
        blame.add("DATA")
    elif fault == "inf_time" and not dates:
        frame.loc[target, "t"] = np.inf
        blame.add("DATA")
    elif fault == "word_time":
        set_cell("t", "soon")
        blame.add("DATA")
    elif fault == "huge_time" and not dates and not fit:
        frame.loc[target, "t"] = 1e45  # beyond float32 in the model's time steps
        blame.add("DATA")
    elif fault == "inf_value":
        frame.loc[target, "a"] = -np.inf
        blame.add("DATA")
    elif fault == "word_value":
        set_cell("a", "n.a.")
        # fit without --features: a word among numbers names DATA and its column; a column
        # of written-out missing values only (and empty cells) is blamed on --features
        blame.update(("DATA", "--features") if fit else ("DATA",))
    elif fault == "all_missing_series" and fit:  # impute, forecast, detect take it
        for f in FEATURES:
            frame[f] = frame[f].astype(float)
            frame.loc[s0_rows(), f] = np.nan
        # fit leaves such a series out (with a warning) when others teach every feature
        if not all(pd.to_numeric(frame[f], errors="coerce").notna().any() for f in FEATURES):
            blame.add("DATA")
    elif fault == "all_missing_feature" and fit:
        frame["a"] = np.nan
        blame.add("DATA")
    elif fault == "single_step" and fit:  # every command takes it (README), fit too
        frame = frame.drop(index=s0_rows()[1:]).reset_index(drop=True)
        if frame.loc[s0_rows(), "a"].isna().all():
            frame.loc[s0_rows(), "a"] = 1.0
        # fit needs every feature observed somewhere (one row may leave one out)
        if not all(pd.to_numeric(frame[f], errors="coerce").notna().any() for f in FEATURES):
            blame.add("DATA")
    elif fault == "missing_id" and long:
        frame.loc[target, "id"] = None
        blame.add("DATA")
    elif fault == "header_only":
        frame = frame.iloc[:0]
        blame.add("DATA")
    elif fault == "no_feature_column" and not fit:
        frame = frame.drop(columns="b")
        blame.add("DATA")  # impute, forecast, detect take no --features
    elif fault == "ragged_line" and suffix == ".csv":
        text = frame.to_csv(index=False).splitlines()
        text[1] = text[1] + ",1,2"
        raw = ("\n".join(text) + "\n").encode()
        blame.add("DATA")
    elif fault == "binary":
        raw = bytes(rng.integers(0, 256, size=200, dtype=np.uint8))
        suffix = ".parquet"
        blame.add("DATA")
    elif fault == "extension":
        suffix = ".txt"
        blame.add("DATA")
    if raw is None and suffix == ".csv" and draw(st.integers(0, 5)) == 0:
        lines = frame.to_csv(index=False).splitlines()  # a delimiter ending every line
        raw = ("\n".join(ln + "," for ln in lines) + "\n").encode()
    return File(frame=frame, suffix=suffix, long=long, blame=blame, raw=raw, n=n)


# ---------------------------------------------------------------- the fitted model


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Path]:
    """A long-file model and a wide-file model (fit once for the module)."""
    d = tmp_path_factory.mktemp("fuzz_cli_models")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(3):
        t = np.cumsum(rng.uniform(0.5, 1.5, size=10))
        for k in range(10):
            rows.append({"id": f"s{i}", "t": t[k], "a": np.sin(t[k]), "b": 2 * np.cos(t[k])})
    frame = pd.DataFrame(rows)
    frame.to_csv(d / "long.csv", index=False)
    frame[frame["id"] == "s0"].drop(columns="id").to_csv(d / "wide.csv", index=False)
    out = {}
    for long in (True, False):
        model = d / ("long_model" if long else "wide_model")
        ids = ["--id-col", "id"] if long else []
        src = d / ("long.csv" if long else "wide.csv")
        code, _, err = run("fit", src, "--time-col", "t", *ids, "--features", "a,b", "-o", model,
                           *FIT)  # fmt: skip
        assert code == 0, err
        out[long] = model
    return out


# ---------------------------------------------------------------- checks of outputs


def _observed_unchanged(data: pd.DataFrame, out: pd.DataFrame, feats: list[str]) -> None:
    assert len(out) == len(data)
    for f in feats:
        orig = data[f].to_numpy(dtype=np.float64)
        got = out[f].to_numpy(dtype=np.float64)
        obs = ~np.isnan(orig)
        assert got[obs].tobytes() == orig[obs].tobytes(), f
        for part in ("", "_lower", "_upper"):
            assert np.isfinite(out[f + part].to_numpy(dtype=np.float64)).all(), f + part
        lo = out[f + "_lower"].to_numpy(dtype=np.float64)
        hi = out[f + "_upper"].to_numpy(dtype=np.float64)
        assert (lo <= hi).all()


def _check_command(
    model: Path,
    command: str,
    data: Path | None,
    file: File,
    tmp: Path,
    options: list[str],
    blame: set[str],
) -> None:
    out = Path(tempfile.mkstemp(suffix=".csv", dir=tmp)[1])
    args: list[Any] = [command, model] + ([data] if data is not None else []) + ["-o", out]
    ok = check_outcome(command, blame, run(*args, *options))
    if not ok:
        return
    result = read_table(out)
    feats = json.loads((model / "cli.json").read_text())["features"]
    if command == "impute":
        _observed_unchanged(read_table(data), result, feats)
    elif command == "forecast":
        horizon = int(options[options.index("--horizon") + 1])
        assert len(result) == file.n * horizon
        for f in feats:
            for part in ("", "_lower", "_upper"):
                assert np.isfinite(result[f + part].to_numpy(dtype=np.float64)).all()
    elif command == "detect":
        src = read_table(data)
        assert len(result) == len(src)
        any_obs = src[feats].notna().any(axis=1).to_numpy()
        score = result["score"].to_numpy(dtype=np.float64)
        assert np.isfinite(score[any_obs]).all()
        assert np.isnan(score[~any_obs]).all()
        for f in feats:
            obs = src[f].notna().to_numpy()
            s = result[f + "_score"].to_numpy(dtype=np.float64)
            assert np.isfinite(s[obs]).all()
            assert np.isnan(s[~obs]).all()
        assert result["anomaly"].dtype == bool
    else:  # sample
        length = int(options[options.index("--length") + 1])
        num = int(options[options.index("-n") + 1])
        assert len(result) == length * num
        for f in feats:
            assert np.isfinite(result[f].to_numpy(dtype=np.float64)).all()


@st.composite
def command_cases(draw: st.DrawFn) -> tuple[str, File, list[str], set[str]]:
    command = draw(st.sampled_from(["impute", "impute", "forecast", "detect", "sample"]))
    file = draw(files())
    blame = set(file.blame)
    options = ["--num-samples", str(draw(st.integers(1, 6)))]
    bad = draw(st.integers(0, 6)) == 0
    if command == "impute" and bad:
        options += ["--level", draw(st.sampled_from(["0", "1", "1.5", "-0.2", "nan"]))]
        blame.add("--level")
    elif command == "forecast":
        h = draw(st.sampled_from(["0", "-3"])) if bad else str(draw(st.integers(1, 4)))
        options += ["--horizon", h]
        if bad:
            blame.add("--horizon")
    elif command == "detect" and bad:
        option, value = draw(
            st.sampled_from([("--quantile", "1.5"), ("--quantile", "0"), ("--threshold", "nan")])
        )
        options += [option, value]
        blame.add(option)
    elif command == "sample":
        options = ["-n", str(draw(st.integers(1, 3)))]
        length = draw(st.sampled_from(["0", "-1"])) if bad else str(draw(st.integers(1, 30)))
        options += ["--length", length, "--seed", str(draw(st.integers(0, 99)))]
        blame = {"--length"} if bad else set()
    elif bad:
        options[1] = draw(st.sampled_from(["0", "-4"]))
        blame.add("--num-samples")
    if command in ("impute", "forecast") and options[1] == "1":  # one draw is no interval
        blame.add("--num-samples")
    return command, file, options, blame


def _check_commands(model_dirs: dict[bool, Path], case: Any) -> None:
    command, file, options, blame = case
    with tempfile.TemporaryDirectory() as tmp:
        data = None if command == "sample" else file.write(Path(tmp))
        model = model_dirs[file.long]
        _check_command(model, command, data, file, Path(tmp), options, blame)


@settings(FUZZ, max_examples=FAST)
@given(case=command_cases())
def test_fuzz_cli_commands(model_dirs: dict[bool, Path], case: Any) -> None:
    _check_commands(model_dirs, case)


@pytest.mark.slow
@settings(FUZZ, max_examples=SLOW)
@given(case=command_cases())
def test_fuzz_cli_commands_many(model_dirs: dict[bool, Path], case: Any) -> None:
    _check_commands(model_dirs, case)


# ---------------------------------------------------------------- fit


@st.composite
def fit_cases(draw: st.DrawFn) -> tuple[File, list[str], set[str]]:
    file = draw(files(fit=True))
    blame = set(file.blame)
    options = list(FIT)
    if draw(st.booleans()):
        options += ["--features", "a,b"]
        blame = {"DATA" if b == "--features" else b for b in blame}  # a text cell in 'a'
    if draw(st.integers(0, 3)) == 0:
        options += ["--window", str(draw(st.integers(2, 5)))]
    if draw(st.integers(0, 7)) == 0:
        option, value = draw(
            st.sampled_from(
                [("--epochs", "0"), ("--lr", "nan"), ("--hidden", "8,x"), ("--latent-dim", "0"),
                 ("--batch-size", "-1"), ("--window", "1")]
            )
        )  # fmt: skip
        options += [option, value]
        blame.add(option)
    return file, options, blame


def _check_fit(case: Any) -> None:
    file, options, blame = case
    with tempfile.TemporaryDirectory() as tmp:
        data = file.write(Path(tmp))
        model = Path(tmp) / "model"
        ids = ["--id-col", "id"] if file.long else []
        ok = check_outcome("fit", blame, run("fit", data, "--time-col", "t", *ids, "-o", model,
                                             *options))  # fmt: skip
        if ok:
            assert (model / "cli.json").is_file()
            _check_command(model, "impute", data, file, Path(tmp), ["--num-samples", "3"], set())


@settings(FUZZ, max_examples=max(1, FAST // 2))
@given(case=fit_cases())
def test_fuzz_cli_fit(case: Any) -> None:
    _check_fit(case)


@pytest.mark.slow
@settings(FUZZ, max_examples=SLOW)
@given(case=fit_cases())
def test_fuzz_cli_fit_many(case: Any) -> None:
    _check_fit(case)


def test_csv_rows_longer_than_the_header_are_rejected(
    model_dirs: dict[bool, Path], tmp_path: Path
) -> None:
    """pandas would turn extra fields into an index and shift every value one column."""
    ok = tmp_path / "trailing.csv"
    ok.write_text("t,a,b\n0,1.5,2.5,\n1,1.0,2.0,\n2,0.5,1.0,\n")
    assert run("impute", model_dirs[False], ok, "-o", tmp_path / "o.csv")[0] == 0
    out = pd.read_csv(tmp_path / "o.csv")
    assert out["t"].tolist() == [0, 1, 2]
    assert out["a"].tolist() == [1.5, 1.0, 0.5]
    bad = tmp_path / "long_rows.csv"
    bad.write_text("t,a,b\n0,1.5,2.5,9\n1,1.0,2.0,9\n2,0.5,1.0,9\n")
    code, _, err = run("impute", model_dirs[False], bad, "-o", tmp_path / "o.csv")
    assert code == 1
    assert err.startswith("error: DATA: expected at most as many fields per row"), err


def test_csv_headers_pandas_would_misread_are_rejected(
    model_dirs: dict[bool, Path], tmp_path: Path
) -> None:
    """A repeated column name became 'a.1' (a feature the model does not know, or a silent
    rename); a semicolon-separated file was one column named 't;a;b'."""
    twice = tmp_path / "twice.csv"
    twice.write_text("t,a,a\n0,1.5,2.5\n1,1.0,2.0\n")
    code, _, err = run("impute", model_dirs[False], twice, "-o", tmp_path / "o.csv")
    assert code == 1
    assert err.startswith("error: DATA: expected distinct column names in the header"), err
    assert "found 'a' more than once" in err
    semi = tmp_path / "semi.csv"
    semi.write_text("t;a;b\n0;1,5;2,5\n1;1,0;2,0\n")
    code, _, err = run("fit", semi, "--time-col", "t", "-o", tmp_path / "m", "--quiet")
    assert code == 1
    assert "found one column named 't;a;b'" in err, err
    assert "separated by semicolons" in err, err
    assert not (tmp_path / "m").exists()
    # a European CSV (';' and decimal commas) whose rows hold different numbers of decimal
    # commas, an empty cell among them: pandas' tokenizer error was shown as it came
    # ("Expected 2 fields in line 3, saw 3"), not the semicolons; the advice converts it
    euro = tmp_path / "euro.csv"
    euro.write_text("t;a;b\n0;1,5;\n1;1,0;2,0\n2;0,5;1,0\n")
    for args in (("fit", euro, "--time-col", "t", "-o", tmp_path / "m", "--quiet"),
                 ("impute", model_dirs[False], euro, "-o", tmp_path / "o.csv")):  # fmt: skip
        code, _, err = run(*args)
        assert code == 1
        assert "found one column named 't;a;b'" in err, err
        assert "separated by semicolons" in err, err
        assert "pd.read_csv(FILE, sep=';', decimal=',').to_csv(NEW_FILE, index=False)" in err
        assert "tokenizing" not in err, err
    # '.' decimals: converted without decimal=',' (which would read 1.5 as text)
    dots = tmp_path / "dots.csv"
    dots.write_text("t;a;b\n0;1.5;2.5\n1;1.0;2.0\n")
    code, _, err = run("impute", model_dirs[False], dots, "-o", tmp_path / "o.csv")
    assert code == 1
    assert "pd.read_csv(FILE, sep=';').to_csv(NEW_FILE, index=False)" in err, err
    # a compressed CSV: its header is read through pandas (the raw bytes looked like one
    # column separated by tabs, and valid .csv.gz files were refused)
    import gzip

    packed = tmp_path / "ok.csv.gz"
    with gzip.open(packed, "wt") as f:
        f.write("t,a,b\n0,1.5,2.5\n1,1.0,2.0\n2,0.5,1.0\n")
    assert run("impute", model_dirs[False], packed, "-o", tmp_path / "o.csv")[0] == 0
    with gzip.open(packed, "wt") as f:
        f.write("t,a,a\n0,1.5,2.5\n1,1.0,2.0\n")
    code, _, err = run("impute", model_dirs[False], packed, "-o", tmp_path / "o.csv")
    assert "found 'a' more than once" in err, err


def test_error_lines_name_the_option_for_estimator_errors(
    model_dirs: dict[bool, Path], tmp_path: Path
) -> None:
    """Errors raised inside the estimator reach the user naming DATA, not X or times."""
    frame = pd.DataFrame(
        {"id": ["s0"] * 3, "t": [0.0, 1.0, 1e45], "a": [1.0, 2, 3], "b": [1.0, 2, 3]}
    )
    frame.to_csv(tmp_path / "far.csv", index=False)
    code, _, err = run("impute", model_dirs[True], tmp_path / "far.csv", "-o", tmp_path / "o.csv")
    assert code == 1
    assert err.startswith("error: DATA['t']: expected times within"), err
    big = frame.assign(t=[0.0, 1.0, 2.0], a=[1.0, 1e300, 2.0])
    big.to_csv(tmp_path / "big.csv", index=False)
    code, _, err = run("impute", model_dirs[True], tmp_path / "big.csv", "-o", tmp_path / "o.csv")
    assert code == 1
    assert err.startswith("error: DATA: expected values within"), err
    assert "series 's0'" in err


def test_failed_refit_leaves_the_model_dir_as_it_was(
    model_dirs: dict[bool, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error after training (here in the threshold's scoring) writes nothing: the model
    and cli.json of the previous fit stay, and still load."""
    import shutil

    from gpvae.errors import NumericalError
    from gpvae.estimator import GPVAE

    model = tmp_path / "model"
    shutil.copytree(model_dirs[True], model)
    before = {p.relative_to(model): p.read_bytes() for p in model.rglob("*") if p.is_file()}
    src = tmp_path / "data.csv"
    rng = np.random.default_rng(1)
    pd.DataFrame(
        {"id": ["s0"] * 6 + ["s1"] * 6, "t": list(range(6)) * 2, "a": rng.normal(size=12),
         "b": rng.normal(size=12)}
    ).to_csv(src, index=False)  # fmt: skip

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise NumericalError("fit_threshold: failed on purpose")

    monkeypatch.setattr(GPVAE, "fit_threshold", fail)  # the step after training
    code, _, err = run("fit", src, "--time-col", "t", "--id-col", "id", "-o", model, *FIT)
    assert code == 1
    assert err.startswith("error: DATA: fit_threshold: failed on purpose"), err
    after = {p.relative_to(model): p.read_bytes() for p in model.rglob("*") if p.is_file()}
    assert {k: v for k, v in after.items() if k.parts[0] != "checkpoints"} == {
        k: v for k, v in before.items() if k.parts[0] != "checkpoints"
    }
    monkeypatch.undo()
    assert run("sample", model, "--length", "3", "-o", tmp_path / "s.csv")[0] == 0
