"""Property-based fuzzing of gpvae.GPVAE's inputs: fit, impute, forecast, anomaly_scores,
latent and sample.

Every generated case records the arguments it breaks on purpose (``faults``). A case with no
fault must work: finite outputs in the input's form, observed entries returned bit for bit.
A case with faults must raise a :class:`~gpvae.errors.GPVAEError` whose message starts with
one of the broken arguments (``X``, ``X[2]``, ``X['time']``, ``times[0]``, ``quantiles``...).
Whatever happens, the module's fitted models are left exactly as they were.

Inputs: arrays, ragged lists, tuples, torch tensors, PyPOTS dicts, long and wide DataFrames;
float64/32/16, int, bool, object and string dtypes; NaN patterns (missing entries, all-missing
time steps, features and series), constant features, per-feature magnitudes from 1e-30 to
1e30; sorted, unsorted, irregular, datetime, duplicate and non-finite times; empty inputs,
wrong feature counts, ragged lists with mismatched feature counts.

The default run uses ``FAST`` examples per test, the slow suite (``-m slow``) ``SLOW`` per
test; ``GPVAE_FUZZ_SCALE`` multiplies both. ``pytest -s`` prints the number of cases run.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from _fuzz import FUZZ, case_report, scaled
from gpvae import GPVAE
from gpvae.errors import GPVAEError

FAST = scaled(40)
SLOW = scaled(500)
TINY = {"latent_dim": 2, "hidden": (8,), "batch_size": 4, "progress": False, "device": "cpu"}
D_FIT = 2  # features of the module's fitted models
LIKELIHOODS = ("gaussian", "student_t", "gaussian_gp")  # of the module's fitted models

COUNTS: Counter[str] = Counter()
_report = case_report("fuzz estimator", COUNTS)


# ---------------------------------------------------------------- generated inputs


@dataclass
class Inputs:
    """X and times in one of the accepted forms, and the arguments broken on purpose."""

    X: Any
    times: Any
    form: str
    dtype: str
    faults: set[str] = field(default_factory=set)
    n: int = 0
    dates: bool = False
    end: float = 0.0  # the latest finite time (numeric times): future times come after it


_DTYPES = ["float64", "float64", "float32", "float16", "int", "bool", "object", "str", "tensor"]
_FAULTS_X = [
    "unobserved_feature",
    "inf",
    "all_missing_series",
    "single_step",
    "empty",
    "wrong_D",
    "bad_value",
    "complex",
    "ragged_rows",
]
_FAULTS_T = ["dup", "nan", "inf", "length", "word", "mixed_kinds", "huge"]


def _nothing_to_fit(xs: list[np.ndarray], D: int) -> bool:
    """True when fit must fail: no series with an observed entry, or a feature never
    observed."""
    if all(np.isnan(x).all() for x in xs):
        return True
    return any(all(np.isnan(x[:, j]).all() for x in xs) for j in range(D))


def _cast(x: np.ndarray, dtype: str) -> Any:
    if dtype in ("int", "bool"):
        x = np.clip(np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0), -1e15, 1e15)
        return x.astype(np.int64) if dtype == "int" else x > (np.median(x) if x.size else 0)
    if dtype == "str":
        return x.astype(str)
    if dtype == "object":
        return x.astype(object)
    if dtype == "tensor":
        return torch.from_numpy(x.copy())
    with np.errstate(over="ignore"):
        return x.astype(dtype)


@st.composite
def inputs(draw: st.DrawFn, D: int | None = None, fit: bool = False) -> Inputs:
    """Random X / times; ``D`` the feature count to give (None: random 1..3)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    form = draw(st.sampled_from(["array", "list", "tuple", "dict", "long", "wide"]))
    dtype = draw(st.sampled_from(_DTYPES))
    if form in ("long", "wide") or (dtype == "tensor" and form != "array"):
        dtype = draw(st.sampled_from(["float64", "float32", "int", "object"]))
    fault_x = draw(st.sampled_from(["none"] * 20 + _FAULTS_X))
    fault_t = draw(st.sampled_from(["none"] * 24 + _FAULTS_T))
    faults: set[str] = set()
    if D is None:
        D = draw(st.integers(1, 3))
    n = 1 if form == "wide" else draw(st.integers(1, 4))
    equal = form == "array" or draw(st.booleans())
    lengths = (
        [draw(st.integers(2, 9))] * n if equal else [draw(st.integers(2, 9)) for _ in range(n)]
    )

    # values: per-feature magnitude 1e-30..1e30 and offset, NaN patterns, constant features
    scale = 10.0 ** np.array([draw(st.integers(-30, 30)) for _ in range(D)])
    offset = scale * rng.choice([0.0, 1.0, -3.0, 100.0], size=D)
    missing = draw(st.sampled_from([0.0, 0.0, 0.2, 0.5, 0.9]))
    xs = []
    for T in lengths:
        x = rng.standard_normal((T, D)) * scale + offset
        x[rng.random((T, D)) < missing] = np.nan
        if draw(st.booleans()):
            x[rng.integers(T)] = np.nan  # an all-missing time step
        if D > 1 and draw(st.integers(0, 4)) == 0:
            x[:, rng.integers(D)] = np.nan  # a feature missing in this series
        if draw(st.integers(0, 4)) == 0:
            j = rng.integers(D)
            x[:, j] = np.where(np.isnan(x[:, j]), np.nan, offset[j] + scale[j])  # constant
        if np.isnan(x).all():
            x[rng.integers(T), rng.integers(D)] = offset[0] + 1.0
        xs.append(x)
    if fit:  # every feature observed somewhere (unless broken on purpose below)
        for j in range(D):
            if all(np.isnan(x[:, j]).all() for x in xs):
                xs[0][0, j] = offset[j] + scale[j]

    # faults in X (blamed on "X")
    int_like = dtype in ("int", "bool")
    if fault_x == "inf" and not int_like:
        xs[rng.integers(n)][rng.integers(lengths[0] if equal else 2), 0] = draw(
            st.sampled_from([np.inf, -np.inf])
        )
        faults.add("X")
    elif fault_x == "all_missing_series" and not int_like:
        # accepted (left out of training with a warning; imputed at the prior level), unless
        # nothing is left to fit
        xs[rng.integers(n)][:] = np.nan
        if fit and _nothing_to_fit(xs, D):
            faults.add("X")
    elif fault_x == "single_step" and form not in ("wide",):
        # accepted, unless nothing is left to fit
        if equal:
            xs = [x[:1] for x in xs]
            lengths = [1] * n
        else:
            i = rng.integers(n)
            xs[i] = xs[i][:1]
            lengths[i] = 1
            if np.isnan(xs[i]).all():
                xs[i][0, 0] = 1.0
        # an int or bool cast observes every entry (NaN becomes 0), so nothing is missing then
        if fit and not int_like and _nothing_to_fit(xs, D):
            faults.add("X")
    elif fault_x == "empty" and form in ("array", "list"):
        kind = draw(st.sampled_from(["n", "T", "D"]))
        if kind == "n":
            n, xs, lengths = 0, [], []
        elif kind == "T":
            xs = [x[:0] for x in xs]
            lengths = [0] * n
        else:
            xs = [x[:, :0] for x in xs]
            D = 0
        faults.add("X")
    elif fault_x == "wrong_D" and form in ("list", "tuple", "dict") and n > 1:
        i = int(rng.integers(1, n))
        xs[i] = np.concatenate([xs[i], xs[i][:, :1]], axis=1)  # one feature too many
        faults.add("X")
    elif fault_x == "wrong_D" and not fit:
        xs = [np.concatenate([x, x[:, :1]], axis=1) for x in xs]  # D + 1 vs the fit's D
        D += 1
        faults.add("X")
    elif fault_x == "bad_value" and form in ("array", "list", "dict") and not int_like:
        dtype = "object"
        faults.add("X")
    elif fault_x == "complex" and form in ("array", "list") and dtype == "float64":
        dtype = "complex"
        faults.add("X")
    elif fault_x == "ragged_rows" and form == "list":
        faults.add("X")
    elif fault_x == "unobserved_feature" and fit and not int_like:
        for x in xs:
            x[:, D - 1] = np.nan  # a feature never observed in the training data
            if np.isnan(x).all():
                x[0, 0] = 1.0 if D > 1 else np.nan  # D == 1: the series is all-missing too
        faults.add("X")
    else:
        fault_x = "none"

    # times
    times_kind = draw(st.sampled_from(["none", "sorted", "unsorted", "datetime", "strings"]))
    if form in ("long", "wide") and times_kind in ("none", "strings"):
        times_kind = "sorted"
    toff = draw(st.sampled_from([0.0, 0.0, 1e6, -1e3, 1.7e9]))
    if times_kind == "datetime":  # seconds; gaps of at least 50 us (ns resolution)
        toff = min(toff, 1e6)
        tscale = 10.0 ** draw(st.integers(-3, 6))
    else:  # gaps far above the float64 resolution at the offset
        tscale = 10.0 ** draw(st.integers(-6, 6)) * max(1.0, abs(toff) * 1e-6)
    ts = []
    for T in lengths:
        t = toff + np.cumsum(rng.exponential(size=T) + 0.05) * tscale
        if times_kind == "unsorted":
            t = t[rng.permutation(T)]
        ts.append(t)
    blame_t = "X" if form in ("long", "wide") else "times"
    if fault_t != "none" and lengths and max(lengths) >= 2 and times_kind != "none":
        i = int(np.argmax(lengths))
        T = lengths[i]
        if fault_t == "dup":
            ts[i][-1] = ts[i][0]
        elif fault_t == "nan":
            ts[i][rng.integers(T)] = np.nan
        elif fault_t == "inf":
            ts[i][rng.integers(T)] = draw(st.sampled_from([np.inf, -np.inf]))
        elif fault_t == "huge":
            ts[i][rng.integers(T)] = 1e45 * draw(st.sampled_from([1.0, -1.0]))
        elif fault_t == "length" and form not in ("long", "wide"):
            ts[i] = ts[i][:-1]
        elif fault_t == "word" and form not in ("long", "wide") and times_kind != "datetime":
            times_kind = "strings"
        elif fault_t == "mixed_kinds" and form in ("list", "tuple", "dict") and n > 1:
            times_kind = "mixed"
        else:
            fault_t = "none"
        if fault_t == "huge" and fit:  # a fault only beyond float32 in median time steps
            srt = [np.sort(t) for t in ts]
            step = float(np.median(np.concatenate([np.diff(t) for t in srt])))
            origin = min(float(t[0]) for t in srt)
            if max(float(np.abs(t - origin).max()) for t in srt) / step < 3.4e38:
                # 1e45 sets the time step and the other steps are ~1e-45 of it: the banded
                # and diagonal KLs are then NaN (test_numerics, xfail: posteriors/base.py)
                times_kind = "datetime" if times_kind == "datetime" else "no_huge"
        if fault_t == "huge" and times_kind in ("datetime", "no_huge"):
            fault_t = "none"
            times_kind = "sorted" if times_kind == "no_huge" else times_kind
            ts[i] = toff + np.cumsum(np.ones(T)) * tscale
        if fault_t != "none":
            faults.add(blame_t)
    else:
        fault_t = "none"

    def as_times(t: np.ndarray, k: int) -> Any:
        if times_kind == "datetime" or (times_kind == "mixed" and k == 0):
            finite = np.isfinite(t) & (np.abs(t) < 1e9)
            ns = (np.where(finite, t, 0.0) * 1e9).astype(np.int64).astype("timedelta64[ns]")
            out = np.datetime64("2020-01-01T00:00:00", "ns") + ns
            return np.where(finite, out, np.datetime64("NaT"))
        if times_kind == "strings":
            s = t.astype(str)
            if fault_t == "word":
                s[0] = "noon"
            return s
        return t

    # build the form
    cast = (
        [_cast(x, dtype) for x in xs]
        if dtype not in ("complex",)
        else [x.astype(complex) for x in xs]
    )
    if fault_x == "bad_value":
        for c in cast:
            c.flat[0] = draw(st.sampled_from(["abc", [1, 2], "1,5"]))  # (None is NaN)
    if dtype == "float16" and any(np.isinf(c.astype(np.float64)).any() for c in cast):
        faults.add("X")  # 1e30 is Inf in float16: an X fault made by the cast
    times: Any = None
    if form == "array":
        if n == 0:
            X: Any = np.zeros((0, 3, D))
        else:
            X = np.stack([np.asarray(c) for c in cast]) if dtype != "tensor" else torch.stack(cast)
        if times_kind != "none" and n > 0:
            shared = times_kind in ("sorted", "unsorted") and draw(st.booleans())
            shared = shared and fault_t == "none"
            if shared:
                times = as_times(ts[0], 0)
            elif draw(st.booleans()) and len({len(t) for t in ts}) == 1:
                times = np.stack([as_times(t, k) for k, t in enumerate(ts)])
            else:
                times = [as_times(t, k) for k, t in enumerate(ts)]
    elif form in ("list", "tuple", "dict"):
        seq: Any = list(cast)
        if fault_x == "ragged_rows":
            seq[0] = [list(r) for r in np.asarray(cast[0], dtype=object)]
            seq[0][-1] = seq[0][-1][:-1] if len(seq[0][-1]) > 1 else [*seq[0][-1], 1.0]
        if form == "tuple":
            seq = tuple(seq)
        if times_kind != "none":
            times = [as_times(t, k) for k, t in enumerate(ts)]
        if form == "dict":
            X = {"X": seq}
            if times is not None and draw(st.booleans()):
                X["times"], times = times, None
        else:
            X = seq
    else:  # DataFrames: long (id, time, f0..) or wide (time column, one series)
        rows = []
        for i, (c, t) in enumerate(zip(cast, ts)):
            c = np.asarray(c)
            tt = as_times(t, i)
            for k in range(len(tt)):
                rows.append({"id": f"s{i}", "time": tt[k], **{f"f{j}": c[k, j] for j in range(D)}})
        frame = pd.DataFrame(rows, columns=["id", "time", *[f"f{j}" for j in range(D)]])
        frame = frame.sample(frac=1.0, random_state=int(rng.integers(1000))).reset_index(drop=True)
        if form == "wide":
            frame = frame.drop(columns="id")
        X = frame
    finite = [float(v) for t in ts for v in np.asarray(t, dtype=np.float64) if abs(v) < 1e40]
    end = max(lengths, default=1) - 1.0 if times_kind == "none" else max(finite, default=0.0)
    return Inputs(
        X=X,
        times=times,
        form=form,
        dtype=dtype,
        faults=faults,
        n=n,
        dates=times_kind == "datetime",
        end=end,
    )


# ---------------------------------------------------------------- checks


def _names_argument(message: str, names: set[str]) -> bool:
    """Whether ``message`` starts with one of ``names`` (``X``, ``X[2]``, ``X['t']``, ...)."""
    alternatives = "|".join(re.escape(n) for n in sorted(names))
    return re.match(rf"(?:{alternatives})(?:\[[^\]]*\]|\.index)*: expected", message) is not None


def _series_values(X: Any) -> list[np.ndarray]:
    """The input's values per series (T_i, D) as float64, in input order (arrays / lists)."""
    inner = X["X"] if isinstance(X, dict) else X
    if isinstance(inner, torch.Tensor):
        return list(inner.double().numpy())
    if isinstance(inner, np.ndarray):
        return list(inner.astype(np.float64))
    return [np.asarray(x).astype(np.float64) for x in inner]


def _expected_dtype(inp: Inputs) -> np.dtype:
    if inp.dtype in ("float32", "float16"):
        return np.dtype(np.float32)
    if inp.dtype == "tensor":
        return np.dtype(np.float64)  # the tensors are made from float64 arrays
    return np.dtype(np.float64)


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def check_imputation(inp: Inputs, res: Any, return_samples: bool) -> None:
    """Finite outputs in the input's form; observed entries returned bit for bit."""
    if inp.form in ("long", "wide"):
        frame: pd.DataFrame = inp.X
        feats = [c for c in frame.columns if str(c).startswith("f")]
        for part in (res.mean, res.lower, res.upper):
            assert isinstance(part, pd.DataFrame)
            assert list(part.columns) == list(frame.columns)
            assert len(part) == len(frame)
            vals = part[feats].to_numpy(dtype=np.float64)
            assert np.isfinite(vals).all()
        orig = frame[feats].apply(pd.to_numeric).to_numpy(dtype=np.float64)
        obs = ~np.isnan(orig)
        got = res.mean[feats].to_numpy(dtype=np.float64)
        assert _same_bits(got[obs], orig[obs])
        full = res.to_frame()
        assert np.isfinite(full[[f"{f}_lower" for f in feats]].to_numpy(dtype=np.float64)).all()
        return
    per = _series_values(inp.X)
    dtype = _expected_dtype(inp)
    means = list(res.mean)
    assert len(means) == len(per)
    for part in (res.mean, res.lower, res.upper):
        for got, ref in zip(list(part), per):
            got = np.asarray(got)
            assert got.shape == ref.shape
            assert got.dtype == dtype, (got.dtype, dtype)
            assert np.isfinite(got).all()
            obs = ~np.isnan(ref)
            assert _same_bits(got[obs], ref[obs].astype(dtype))
    for lo, hi in zip(list(res.lower), list(res.upper)):
        assert (np.asarray(lo) <= np.asarray(hi)).all()
    for m, ref in zip(list(res.observed), per):
        np.testing.assert_array_equal(np.asarray(m), ~np.isnan(ref))
    if return_samples:
        draws = res.samples
        per_draws = list(np.moveaxis(draws, 1, 0)) if isinstance(draws, np.ndarray) else draws
        for d, ref in zip(per_draws, per):
            assert np.isfinite(d).all()
            obs = np.broadcast_to(~np.isnan(ref), d.shape)
            assert _same_bits(d[obs], np.broadcast_to(ref, d.shape)[obs].astype(dtype))


def _state(est: GPVAE) -> dict[str, Any]:
    return {
        "model": {k: v.clone() for k, v in est.model_.state_dict().items()},
        "scaler": est.scaler_.state_dict(),
        "history": [dict(h) for h in est.history_],
        "seed": est.seed,
    }


def assert_unchanged(est: GPVAE, before: dict[str, Any]) -> None:
    """Nothing computed or saved is lost: weights, scaler, history and seed as before."""
    after = _state(est)
    assert after["scaler"] == before["scaler"]
    assert after["history"] == before["history"]
    assert after["seed"] == before["seed"]
    assert after["model"].keys() == before["model"].keys()
    for k, v in before["model"].items():
        assert torch.equal(after["model"][k], v), k


def _outcome(case: str, faults: set[str], call: Any) -> Any:
    """Run ``call``; a GPVAEError must name a broken argument, and faults must raise."""
    COUNTS[f"{case}:cases"] += 1
    try:
        out = call()
    except GPVAEError as err:
        error: GPVAEError | None = err
    else:
        error = None
    if error is not None:
        COUNTS[f"{case}:error"] += 1
        message = f"{type(error).__name__}: {error}"
        assert faults, f"valid input rejected: {message}"
        assert _names_argument(str(error), faults), f"{sorted(faults)} not named in: {message}"
        assert "\n" not in message
        return None
    assert not faults, f"faults {sorted(faults)} were accepted"
    COUNTS[f"{case}:ok"] += 1
    return out


# ---------------------------------------------------------------- the fitted model


def _clean_data(n: int = 6, T: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(T)[None, :, None]
    X = np.sin(t / 3.0 + rng.uniform(0, 6, size=(n, 1, 1))) * np.array([1.0, 2.0]) + 0.1 * (
        rng.standard_normal((n, T, D_FIT))
    )
    X[rng.random(X.shape) < 0.2] = np.nan
    X[:, 0, :] = 0.5
    return X


@pytest.fixture(scope="module")
def models() -> dict[str, tuple[GPVAE, dict[str, Any]]]:
    """Fitted models by likelihood, with their state (to check that nothing changes)."""
    out = {}
    for likelihood in LIKELIHOODS:
        est = GPVAE(**TINY, epochs=2, seed=3, likelihood=likelihood).fit(_clean_data())
        out[likelihood] = (est, _state(est))
    return out


@pytest.fixture(scope="module")
def fitted(
    models: dict[str, tuple[GPVAE, dict[str, Any]]],
) -> tuple[GPVAE, dict[str, Any]]:
    return models["gaussian"]


# ---------------------------------------------------------------- prediction inputs


@st.composite
def predict_cases(draw: st.DrawFn) -> tuple[Inputs, str, dict[str, Any], set[str], str]:
    inp = draw(inputs(D=D_FIT))
    likelihood = draw(st.sampled_from(["gaussian", *LIKELIHOODS]))
    method = draw(st.sampled_from(["impute", "impute", "forecast", "anomaly_scores", "latent"]))
    kwargs: dict[str, Any] = {}
    faults = set(inp.faults)
    bad_arg = draw(st.integers(0, 7)) == 0
    if method in ("impute", "forecast", "anomaly_scores"):
        kwargs["num_samples"] = draw(st.integers(1, 6))
        if bad_arg and draw(st.booleans()):
            kwargs["num_samples"] = draw(st.sampled_from([0, -2, 2.5, True, "3"]))
            faults.add("num_samples")
            bad_arg = False
        elif method != "anomaly_scores" and kwargs["num_samples"] == 1:  # no interval
            faults.add("num_samples")
    if method in ("impute", "forecast"):
        if bad_arg and draw(st.booleans()):
            kwargs["quantiles"] = draw(
                st.sampled_from([(0.9, 0.1), (0.0, 0.5), (0.5, 1.0), "ab", (0.1,), (math.nan, 0.5)])
            )
            faults.add("quantiles")
            bad_arg = False
        else:
            lo = draw(st.floats(0.01, 0.45))
            kwargs["quantiles"] = (lo, 1.0 - lo)
    if method == "impute":
        kwargs["return_samples"] = draw(st.booleans())
        if bad_arg:
            kwargs["return_samples"] = draw(st.sampled_from(["yes", 1, None]))
            faults.add("return_samples")
    if method == "forecast":
        H = draw(st.integers(1, 4))
        how = draw(st.sampled_from(["horizon", "horizon", "future", "future_list"]))
        if bad_arg:
            how = draw(st.sampled_from(["bad_horizon", "both", "bad_future"]))
        if how == "horizon":
            kwargs["horizon"] = H
        elif how == "future":
            kwargs["future_times"] = np.cumsum(np.ones(H)) * 0.7 + inp.end
        elif how == "future_list":
            ahead = [np.arange(H) * 1.5 + 1.0 + i for i in range(max(inp.n, 1))]
            kwargs["future_times"] = [a + inp.end for a in ahead]
        elif how == "bad_horizon":
            kwargs["horizon"] = draw(st.sampled_from([0, -1, 2.5, None]))
            faults.add("horizon")
        elif how == "both":
            kwargs["horizon"], kwargs["future_times"] = H, np.arange(H) + 20.0
            faults.add("horizon")
        else:
            kwargs["future_times"] = draw(
                st.sampled_from([[20.0, 20.0], [20.0, math.nan], [], [[1.0, 2.0, 3.0]], [1e45]])
            )
            faults.add("future_times")
    if method == "anomaly_scores":
        kwargs["num_folds"] = draw(st.integers(2, 5))
        if bad_arg:
            kwargs["num_folds"] = draw(st.sampled_from([0, -1, "2", 2.0]))  # 1: no fold hidden
            faults.add("num_folds")
    if method == "forecast" and inp.dates and "future_times" in kwargs and how != "bad_future":
        kwargs.pop("future_times")  # numeric future times for datetime inputs: a type error
        kwargs["horizon"] = H
        faults.discard("horizon")
    return inp, method, kwargs, faults, likelihood


def _check_predict(models: dict[str, tuple[GPVAE, dict[str, Any]]], case: Any) -> None:
    inp, method, kwargs, faults, likelihood = case
    est, before = models[likelihood]
    call = getattr(est, method)
    out = _outcome(method, faults, lambda: call(inp.X, inp.times, **kwargs))
    if out is not None:
        if method == "impute":
            check_imputation(inp, out, bool(kwargs.get("return_samples")))
        elif method == "forecast":
            for part in (out.mean, out.lower, out.upper):
                assert part.shape[0] == inp.n
                assert part.shape[2] == D_FIT
                assert np.isfinite(part).all()
            assert (out.lower <= out.upper).all()
        elif method == "anomaly_scores":
            entry = out.entry
            if isinstance(entry, pd.DataFrame):
                feats = [c for c in entry.columns if str(c).startswith("f")]
                vals = entry[feats].to_numpy(dtype=np.float64)
                orig = inp.X[feats].apply(pd.to_numeric).to_numpy(dtype=np.float64)
                obs = ~np.isnan(orig)
                assert np.isfinite(vals[obs]).all()
                assert np.isnan(vals[~obs]).all()
            else:
                for e, ref in zip(list(entry), _series_values(inp.X)):
                    obs = ~np.isnan(ref)
                    assert np.isfinite(np.asarray(e)[obs]).all()
                    assert np.isnan(np.asarray(e)[~obs]).all()
        else:
            mean, var = out
            for m, v in zip(list(mean), list(var)):
                assert np.isfinite(m).all()
                assert np.isfinite(v).all()
                assert (np.asarray(v) >= 0).all()
    assert_unchanged(est, before)


@settings(FUZZ, max_examples=FAST)
@given(case=predict_cases())
def test_fuzz_predict(models: dict[str, tuple[GPVAE, dict[str, Any]]], case: Any) -> None:
    _check_predict(models, case)


@pytest.mark.slow
@settings(FUZZ, max_examples=SLOW)
@given(case=predict_cases())
def test_fuzz_predict_many(models: dict[str, tuple[GPVAE, dict[str, Any]]], case: Any) -> None:
    _check_predict(models, case)


# ---------------------------------------------------------------- sample


@st.composite
def sample_cases(draw: st.DrawFn) -> tuple[Any, Any, set[str], str]:
    faults: set[str] = set()
    T = draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = 10.0 ** draw(st.integers(-30, 30))
    t = rng.permutation(np.cumsum(rng.exponential(size=T) + 0.01)) * scale
    t = t + draw(st.sampled_from([0.0, 0.0, -1e3, 1e9, 1e9 * scale]))
    if len(np.unique(t)) < T:  # a huge offset swallowed tiny steps: duplicates
        faults.add("times")
    if np.abs(t).max() >= 3.4e38:  # beyond float32 (the model's time step is 1)
        faults.add("times")
    kind = draw(st.sampled_from(["list", "array", "array32", "int", "bool"] + ["bad"] * 2))
    times: Any = t
    if kind == "list":
        times = t.tolist()
    elif kind == "array32":
        times = t.astype(np.float32)
        if len(np.unique(times)) < T or not np.isfinite(times).all():
            faults.add("times")
    elif kind == "int":
        times = np.arange(T) * draw(st.integers(1, 1000))
        faults.discard("times")
    elif kind == "bool":
        times = np.array([False, True][:T])
        faults.discard("times")
    elif kind == "bad":
        bad = draw(st.sampled_from(["empty", "nan", "inf", "dup", "2d", "words", "none", "huge"]))
        times = {
            "empty": [],
            "nan": np.r_[t, np.nan],
            "inf": np.r_[t, -np.inf],
            "dup": np.r_[t, t[:1]],
            "2d": np.stack([t, t]),
            "words": ["a"] * T,
            "none": None,
            "huge": np.r_[t[:1], 1e39 * draw(st.sampled_from([1.0, -1.0]))],
        }[bad]
        faults.add("times")
    num_samples: Any = draw(st.integers(1, 5))
    if draw(st.integers(0, 6)) == 0:
        num_samples = draw(st.sampled_from([0, -1, 1.5, True, "2", None]))
        faults.add("num_samples")
    return times, num_samples, faults, draw(st.sampled_from(LIKELIHOODS))


def _check_sample(models: dict[str, tuple[GPVAE, dict[str, Any]]], case: Any) -> None:
    times, num_samples, faults, likelihood = case
    est, before = models[likelihood]
    out = _outcome("sample", faults, lambda: est.sample(times, num_samples=num_samples))
    if out is not None:
        T = len(np.asarray(times))
        assert out.shape == (num_samples, T, D_FIT)
        assert out.dtype == np.float64
        assert np.isfinite(out).all()
    assert_unchanged(est, before)


@settings(FUZZ, max_examples=FAST)
@given(case=sample_cases())
def test_fuzz_sample(models: dict[str, tuple[GPVAE, dict[str, Any]]], case: Any) -> None:
    _check_sample(models, case)


@pytest.mark.slow
@settings(FUZZ, max_examples=SLOW // 2)
@given(case=sample_cases())
def test_fuzz_sample_many(models: dict[str, tuple[GPVAE, dict[str, Any]]], case: Any) -> None:
    _check_sample(models, case)


# ---------------------------------------------------------------- fit


@st.composite
def fit_cases(draw: st.DrawFn) -> tuple[Inputs, dict[str, Any], Any, set[str]]:
    inp = draw(inputs(fit=True))
    faults = set(inp.faults)
    options = {
        "epochs": draw(st.integers(1, 2)),
        "seed": draw(st.integers(0, 2**31)),
        "kernel": draw(st.sampled_from(["matern32", "matern32", "matern12", "matern52", "rbf"])),
        "posterior": draw(st.sampled_from(["structured", "structured", "banded", "diagonal"])),
        "val_fraction": draw(st.sampled_from([0.0, 0.1, 0.3])),
        "likelihood": draw(
            st.sampled_from(["gaussian", "gaussian", "student_t", "gaussian_hetero", "gaussian_gp"])
        ),
        "encoder": draw(st.sampled_from(["mlp", "mlp", "partial", "conv"])),
    }
    if options["encoder"] == "partial" and options["posterior"] != "structured":
        faults.add("encoder")  # 'partial' needs the structured posterior
    ell = draw(st.sampled_from(["none", "none", "one", "per_channel", "count", "value"]))
    L = TINY["latent_dim"]
    if ell == "one":
        options["lengthscale"] = draw(st.floats(0.5, 50.0))
    elif ell == "per_channel":  # a bank of time scales, one per latent channel
        options["lengthscale"] = [draw(st.floats(0.5, 50.0)) for _ in range(L)]
    elif ell == "count":
        options["lengthscale"] = [2.0] * (L + draw(st.sampled_from([-1, 1])))
        faults.add("lengthscale")
    elif ell == "value":
        bad = draw(st.sampled_from([0.0, -1.0, float("nan"), float("inf")]))
        options["lengthscale"] = [2.0] * (L - 1) + [bad]
        faults.add("lengthscale")
    X_val = None
    if draw(st.integers(0, 4)) == 0 and inp.form == "array" and not inp.faults:
        rng = np.random.default_rng(draw(st.integers(0, 1000)))
        D = np.asarray(inp.X).shape[-1] if not isinstance(inp.X, torch.Tensor) else inp.X.shape[-1]
        X_val = rng.standard_normal((2, 5, D))
        bad = draw(st.sampled_from(["none", "none", "D", "nan", "inf"]))
        if bad == "D":
            X_val = X_val[..., :0] if D == 1 else X_val[..., :1]
            faults.add("X_val")
        elif bad == "nan":
            X_val[1] = np.nan  # an empty validation series is accepted (it scores nothing)
        elif bad == "inf":
            X_val[0, 0, 0] = np.inf
            faults.add("X_val")
    return inp, options, X_val, faults


def _check_fit(case: Any) -> None:
    inp, options, X_val, faults = case
    made: list[GPVAE] = []

    def run() -> GPVAE:
        made.append(GPVAE(**TINY, **options))
        return made[0].fit(inp.X, inp.times, X_val=X_val)

    out = _outcome("fit", faults, run)
    if out is None:
        assert not made or not made[0].is_fitted  # a failed fit leaves no half-fitted model
        return
    est = made[0]
    losses = [h["loss"] for h in est.history_]
    assert len(losses) == options["epochs"]
    assert all(math.isfinite(v) for v in losses), est.history_
    res = est.impute(inp.X, inp.times, num_samples=3)
    check_imputation(inp, res, return_samples=False)
    draws = est.sample(np.arange(4.0), num_samples=2)
    assert np.isfinite(draws).all()
    if options["posterior"] == "structured":
        fc = est.forecast(inp.X, inp.times, horizon=2, num_samples=3)
        assert np.isfinite(fc.mean).all()
        assert np.isfinite(fc.lower).all()
        assert np.isfinite(fc.upper).all()


@settings(FUZZ, max_examples=FAST)
@given(case=fit_cases())
def test_fuzz_fit(case: Any) -> None:
    _check_fit(case)


@pytest.mark.slow
@settings(FUZZ, max_examples=SLOW)
@given(case=fit_cases())
def test_fuzz_fit_many(case: Any) -> None:
    _check_fit(case)


# ---------------------------------------------------------------- a bad call keeps the model


def test_bad_calls_keep_the_fitted_model_usable(fitted: tuple[GPVAE, dict[str, Any]]) -> None:
    """A fitted model gives the same results before and after a string of rejected calls,
    including a failed re-fit."""
    est, before = fitted
    X = _clean_data(n=3, seed=5)
    ref = est.impute(X, num_samples=5)
    bad_calls = [
        lambda: est.impute(X, quantiles=(0.9, 0.1)),
        lambda: est.impute(np.full((1, 4, D_FIT + 1), 1.0)),
        lambda: est.forecast(X, horizon=0),
        lambda: est.sample([1.0, 1.0]),
        lambda: est.anomaly_scores(X[..., :1]),
        lambda: est.fit(np.full((2, 5, D_FIT), np.inf)),
        lambda: est.fit(X, times=np.zeros(X.shape[1])),
    ]
    for call in bad_calls:
        with pytest.raises(GPVAEError):
            call()
    assert_unchanged(est, before)
    again = est.impute(X, num_samples=5)
    assert _same_bits(again.mean, ref.mean)
    assert _same_bits(again.upper, ref.upper)
