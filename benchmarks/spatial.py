"""BeijingAir leave-one-station-out: predict every feature at a station from the other 11.

For each held-out station (12 folds): gpvae (``GPVAE.fit(..., coords=["lat", "lon"])``,
SpaceTime prior, spacetime backend) is trained on the other 11 stations over the training
period; then, over the test period (which the held-out station never contributed to), every
feature at the held-out station is predicted from the other 11 stations' observations of
that period (``GPVAE.predict_sites``). Baselines on the same folds and entries:

- ``station_mean``: the mean of the other stations at the same hour;
- ``idw``: inverse distance weighting, power 2, over the stations observed at that hour;
- ``idw_picked``: the same with each feature's power picked on the training period by
  leave-one-station-out MAE (``gpvae.estimator.spatial_validation.pick_space_power``, the
  rule gpvae's fusion uses for its spatial base);
- ``kriging``: ordinary kriging per feature and hour (constant unknown mean, Matern 3/2
  covariance with a nugget), its sill, range and nugget fitted by maximum likelihood (mean
  profiled out per hour) on the training period's hours, pooled over hours; 90% intervals
  from the kriging variance (observation noise included).

Scores: MAE in standardised units (each feature divided by its standard deviation over the
other stations' training period) per feature and overall (all scored entries), and the share
of held-out values inside the 90% interval (gpvae, kriging). Writes JSON; ``--table`` writes
the table of ``docs/benchmarks.md`` from it.

Usage::

    PYTHONPATH=src python benchmarks/spatial.py --data-dir ../shared/data \
        [--stations Dongsi,Tiantan] [--epochs 30] [--out benchmarks/results/spatial.json]
    PYTHONPATH=src python benchmarks/spatial.py --data-dir ../shared/data --cells point,block \
        --out benchmarks/results/spatial_imputation.json
    python benchmarks/spatial.py --table [--out ...]

``--cells`` runs the imputation cells (do neighbours help?) instead of the folds: 10% of
the test period's observed entries hidden at every station as random points or blocks,
imputed by the spatial gpvae and by the time-only gpvae.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "spatial.json"
DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- spatial-table -->", "<!-- /spatial-table -->"
BEGIN_CELLS, END_CELLS = "<!-- spatial-cells-table -->", "<!-- /spatial-cells-table -->"
Z90 = 1.6448536269514722

__all__ = ["beijing_long", "idw", "main", "ordinary_kriging", "render", "render_cells", "run_cells"]


# ----------------------------------------------------------------------------------------
# data


def beijing_long(data_dir: str | None) -> pd.DataFrame:
    """The 12 stations as one long frame: station, time, lat, lon and the 11 features."""
    from gpvae.datasets.beijing_air import BEIJING_STATION_COORDINATES, load_beijing_air

    d = load_beijing_air(None if data_dir is None else Path(data_dir) / "beijing_air")
    stations, D = d.info["stations"], 11
    X = np.asarray(d.X)[0]
    times = pd.to_datetime(d.info["datetimes"])
    frames = []
    for i, s in enumerate(stations):
        names = [f.split("/")[-1] for f in d.features[i * D : (i + 1) * D]]
        df = pd.DataFrame(X[:, i * D : (i + 1) * D], columns=names)
        lat, lon = BEIJING_STATION_COORDINATES[s]
        df.insert(0, "station", s)
        df.insert(1, "time", times)
        df.insert(2, "lat", lat)
        df.insert(3, "lon", lon)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _cube(frame: pd.DataFrame, stations: list[str], features: list[str]) -> np.ndarray:
    """(T, S, D) values of ``frame`` in station order (rows sorted by time)."""
    return np.stack(
        [frame[frame.station == s].sort_values("time")[features].to_numpy() for s in stations], 1
    )


# ----------------------------------------------------------------------------------------
# baselines


def idw(values: np.ndarray, xy: np.ndarray, target: np.ndarray, power: float = 2.0) -> np.ndarray:
    """Inverse distance weighting: (T, S, D) values at sites xy (S, 2) -> (T, D) at target."""
    w = 1.0 / np.sqrt(((xy - target) ** 2).sum(-1)) ** power  # (S,)
    obs = ~np.isnan(values)
    num = np.where(obs, values, 0.0) * w[None, :, None]
    den = obs * w[None, :, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return num.sum(1) / den.sum(1)


def _matern32(d: np.ndarray, rng: float) -> np.ndarray:
    r = math.sqrt(3.0) * d / rng
    return (1.0 + r) * np.exp(-r)


def _fit_kriging(y: np.ndarray, dist: np.ndarray) -> tuple[float, float, float]:
    """ML (sill, range, nugget) of a Matern 3/2 field with an unknown constant mean per hour,
    from hours (H, S) with every site observed."""
    H, S = y.shape
    ones = np.ones(S)

    def nll(p: np.ndarray) -> float:
        sill, rng, nug = np.exp(p)
        K = sill * _matern32(dist, rng) + nug * np.eye(S)
        try:
            L = np.linalg.cholesky(K)
        except np.linalg.LinAlgError:
            return 1e12
        Ki1 = np.linalg.solve(K, ones)
        mu = (y @ Ki1) / (ones @ Ki1)  # (H,) GLS mean per hour
        r = y - mu[:, None]
        a = np.linalg.solve(L, r.T)  # (S, H)
        return float(0.5 * (a**2).sum() + H * np.log(np.diag(L)).sum())

    best = None
    for rng0 in (5.0, 20.0, 60.0):
        res = minimize(
            nll,
            np.log([1.0, rng0, 0.1]),
            method="L-BFGS-B",
            bounds=[(-6, 4), (np.log(0.5), np.log(2000.0)), (-9, 3)],
        )
        if best is None or res.fun < best.fun:
            best = res
    assert best is not None
    sill, rng, nug = np.exp(best.x)
    return float(sill), float(rng), float(nug)


def ordinary_kriging(
    train: np.ndarray, test: np.ndarray, xy: np.ndarray, target: np.ndarray, max_hours: int = 2000
) -> tuple[np.ndarray, np.ndarray, list[dict[str, float]]]:
    """Ordinary kriging per feature and hour.

    Args:
        train: (T1, S, D) standardised training values of the S stations (fit).
        test: (T2, S, D) standardised test values (the data of each hour).
        xy: (S, 2) km; target: (2,) km.

    Returns:
        mean and standard deviation (T2, D) at the target, and the fitted parameters.
    """
    S, D = xy.shape[0], train.shape[-1]
    dist = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))
    d_t = np.sqrt(((xy - target) ** 2).sum(-1))
    mean = np.full(test.shape[::2], np.nan)
    sd = np.full(test.shape[::2], np.nan)
    params = []
    for j in range(D):
        full = train[:, :, j][~np.isnan(train[:, :, j]).any(1)]
        full = full[np.linspace(0, len(full) - 1, min(max_hours, len(full))).astype(int)]
        sill, rng, nug = _fit_kriging(full, dist)
        params.append({"sill": sill, "range_km": rng, "nugget": nug})
        K = sill * _matern32(dist, rng) + nug * np.eye(S)
        k = sill * _matern32(d_t, rng)
        for t in range(test.shape[0]):
            obs = ~np.isnan(test[t, :, j])
            if obs.sum() == 0:
                continue
            Ko, ko, yo = K[np.ix_(obs, obs)], k[obs], test[t, obs, j]
            one = np.ones(obs.sum())
            a, b = np.linalg.solve(Ko, np.stack([ko, one], 1)).T
            lam = a + b * (1.0 - one @ a) / (one @ b)
            mean[t, j] = lam @ yo
            var = sill + nug - ko @ a + (1.0 - one @ a) ** 2 / (one @ b)
            sd[t, j] = math.sqrt(max(var, 0.0))
    return mean, sd, params


# ----------------------------------------------------------------------------------------
# one fold


def run_fold(long: pd.DataFrame, held: str, args: argparse.Namespace) -> dict[str, Any]:
    from gpvae.data.spatial import Projection
    from gpvae.estimator.spatial_validation import pick_space_power

    features = [c for c in long.columns if c not in ("station", "time", "lat", "lon")]
    t_train, t_end = pd.Timestamp(args.train_start), pd.Timestamp(args.train_end)
    t_test = pd.Timestamp(args.test_end)
    train = long[(long.time >= t_train) & (long.time < t_end) & (long.station != held)]
    test = long[(long.time >= t_end) & (long.time < t_test)]
    others = [s for s in long.station.unique() if s != held]
    coords = long.groupby("station")[["lat", "lon"]].first()
    proj = Projection.infer(["lat", "lon"], coords.loc[others].to_numpy())
    xy = proj.to_km(coords.loc[others].to_numpy())
    target = proj.to_km(coords.loc[[held]].to_numpy())[0]
    tr_cube = _cube(train, others, features)
    te_cube = _cube(test[test.station != held], others, features)
    truth = _cube(test[test.station == held], [held], features)[:, 0]  # (T2, D)
    mu = np.nanmean(tr_cube.reshape(-1, len(features)), 0)
    sd = np.nanstd(tr_cube.reshape(-1, len(features)), 0)
    z = lambda a: (a - mu) / sd  # noqa: E731
    scored = ~np.isnan(truth)

    def scores(
        pred: np.ndarray, lo: np.ndarray | None = None, hi: np.ndarray | None = None
    ) -> dict[str, Any]:
        err = np.abs(z(pred) - z(truth))
        ok = scored & ~np.isnan(pred)
        out: dict[str, Any] = {
            "mae": float(err[ok].mean()),
            "mae_per_feature": {
                f: float(err[:, j][ok[:, j]].mean()) for j, f in enumerate(features)
            },
            "scored": int(ok.sum()),
            "missing_predictions": int((scored & np.isnan(pred)).sum()),
        }
        if lo is not None and hi is not None:
            inside = (truth >= lo) & (truth <= hi)
            out["coverage90"] = float(inside[ok].mean())
        return out

    result: dict[str, Any] = {"station": held}
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # hours with no other station
        result["station_mean"] = scores(np.nanmean(te_cube, 1))
    result["idw"] = scores(idw(te_cube, xy, target))
    power = pick_space_power(tr_cube, xy)
    picked = [idw(te_cube[:, :, [j]], xy, target, p)[:, 0] for j, p in enumerate(power)]
    result["idw_picked"] = scores(np.stack(picked, 1))
    result["idw_picked"]["power"] = dict(zip(features, power.tolist(), strict=True))
    t0 = time.perf_counter()
    k_mean, k_sd, k_params = ordinary_kriging(z(tr_cube), z(te_cube), xy, target)
    k_mean_raw = mu + sd * k_mean
    result["kriging"] = scores(
        k_mean_raw, mu + sd * (k_mean - Z90 * k_sd), mu + sd * (k_mean + Z90 * k_sd)
    )
    result["kriging"]["params"] = k_params
    result["kriging"]["seconds"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    candidates = []  # one fit per likelihood; the lowest validation score is kept
    for likelihood in args.likelihoods.split(","):
        # with --mask-rate: whole sites hidden in training
        est = _estimator(args, pattern="site", likelihood=likelihood)
        est.fit(
            train,
            id="station",
            time="time",
            coords=["lat", "lon"],
            window=args.window,
            inducing=args.inducing,
        )
        score = min(h["val_score"] for h in est.history_)
        candidates.append((score, likelihood, est))
    fit_s = time.perf_counter() - t0
    _, likelihood, est = min(candidates, key=lambda c: c[0])
    site = test[test.station == held][["station", "lat", "lon"]].iloc[:1]
    res = est.predict_sites(test[test.station != held], site, num_samples=args.num_samples)
    order = np.argsort(res.mean["time"].to_numpy())
    g = [r.iloc[order][features].to_numpy() for r in (res.mean, res.lower, res.upper)]
    result["gpvae"] = scores(*g)
    if args.plots:
        _fold_plots(args.plots, held, others, coords, te_cube, features, res, g, truth)
    result["gpvae"].update(
        likelihood=likelihood,
        val_scores={name: float(v) for v, name, _ in candidates},
        **_fit_record(est, fit_s, args.epochs),
        interval_scale=[float(v) for v in est.interval_scale_],
    )
    fusion = est.model_.interp_fusion
    for key in ("space_power", "new_site_residual"):  # the fusion's per-feature choices
        if hasattr(fusion, key):
            chosen = getattr(fusion, key).tolist()
            result["gpvae"][key] = dict(zip(features, chosen, strict=True))
    return result


def _estimator(
    args: argparse.Namespace,
    batch_size: int | None = None,
    pattern: str | None = None,
    likelihood: str = "gaussian",
) -> Any:
    """The benchmark's GPVAE; with ``--mask-rate`` and a ``pattern`` (a cell's ``point`` or
    ``block``, or ``site`` for the leave-one-station-out folds), trained with artificial
    missingness of that shape (as the imputation benchmark's gpvae)."""
    from gpvae import GPVAE

    masks: dict[str, Any] = {}
    if pattern in ("point", "block"):  # validation entries of the cell's shape
        masks["val_pattern"] = f"{pattern}s"
        masks["block_lengths"] = (5, 24)
    if pattern is not None and args.mask_rate > 0:  # keeps the validation pattern above
        masks.update(mask_rate=args.mask_rate, mask_pattern=f"{pattern}s")
        if pattern == "block":
            masks["block_lengths"] = (5, 24)
    return GPVAE(
        latent_dim=args.latent_dim,
        epochs=args.epochs,
        batch_size=args.batch_size if batch_size is None else batch_size,
        patience=args.patience,
        lr=args.lr,
        hidden=(args.hidden, args.hidden),
        val_fraction=args.val_fraction,
        seed=args.seed,
        progress=args.progress,
        interp_skip=args.interp_skip,
        likelihood=likelihood,
        **masks,
    )


def _fit_record(est: Any, seconds: float, cap: int) -> dict[str, Any]:
    hist = est.history_
    return {
        "fit_seconds": seconds,
        "epochs_run": len(hist),
        "best_epoch": int(np.nanargmin([h["val_score"] for h in hist]) + 1) if hist else None,
        "epoch_cap": cap,
    }


def _linear_in_time(Xh: np.ndarray) -> np.ndarray:
    """(S, T, D): each station's feature interpolated linearly in time between its observed
    entries (held flat before the first and after the last)."""
    out = Xh.copy()
    steps = np.arange(Xh.shape[1])
    for i in range(Xh.shape[0]):
        for j in range(Xh.shape[2]):
            obs = ~np.isnan(Xh[i, :, j])
            if obs.any():
                out[i, :, j] = np.interp(steps, steps[obs], Xh[i, obs, j])
    return out


def _idw_in_space(Xh: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(S, T, D): each station's entries by inverse distance weighting of the *other*
    stations' observed values at the same hour."""
    cube = Xh.transpose(1, 0, 2)  # (T, S, D)
    out = np.empty_like(Xh)
    for i in range(Xh.shape[0]):
        others = [k for k in range(Xh.shape[0]) if k != i]
        out[i] = idw(cube[:, others], xy[others], xy[i])
    return out


def run_cells(long: pd.DataFrame, patterns: list[str], args: argparse.Namespace) -> list[dict]:
    """Random 10% points or blocks (5-24 h of one feature) hidden at all 12 stations over the
    test period; imputed by the spatial gpvae (neighbouring stations in every conditioning)
    and by the time-only gpvae (each station a separate series, same settings; trained on
    windows of the same length, ``batch_size x stations`` windows per step so that a step
    sees as much data as a spatial step), and by two simple baselines: linear interpolation
    in time (each station alone) and IDW in space (the other stations at the same hour).
    Each model is fitted once per pattern: its validation entries (and with ``--mask-rate``
    its training mask) take the pattern's shape, blocks of 5-24 steps as in the protocol.
    MAE in standardised units (the observed training entries' std, as in the imputation
    benchmark's protocol) over the hidden entries, overall and per feature; 90% interval
    coverage."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _protocol import BLOCK_LENGTHS, HIDE_RATE

    from gpvae.data.spatial import Projection
    from gpvae.datasets import hide_blocks, hide_points

    features = [c for c in long.columns if c not in ("station", "time", "lat", "lon")]
    stations = sorted(long.station.unique())
    t_train, t_end = pd.Timestamp(args.train_start), pd.Timestamp(args.train_end)
    t_test = pd.Timestamp(args.test_end)
    train = long[(long.time >= t_train) & (long.time < t_end)]
    test = long[(long.time >= t_end) & (long.time < t_test)]
    W = args.window
    times = np.sort(test.time.unique())
    test = test[test.time.isin(times[: len(times) // W * W])]  # whole windows only
    tr = _cube(train, stations, features)  # (T1, S, D)
    X = _cube(test, stations, features).transpose(1, 0, 2)  # (S, T2, D)
    sd = np.nanstd(tr.reshape(-1, len(features)), 0)
    coords = long.groupby("station")[["lat", "lon"]].first().loc[stations].to_numpy()
    xy = Projection.infer(["lat", "lon"], coords).to_km(coords)

    def windows(cube: np.ndarray) -> np.ndarray:  # (S, T, D) -> (S * T // W, W, D)
        n = cube.shape[1] // W
        return cube[:, : n * W].reshape(cube.shape[0] * n, W, cube.shape[2])

    fitted: dict[str | None, tuple[Any, dict[str, Any], Any, dict[str, Any]]] = {}

    def models(pattern: str) -> tuple[Any, dict[str, Any], Any, dict[str, Any]]:
        """(spatial, its record, time-only, its record), fitted once per pattern (the
        validation entries, and with --mask-rate the training mask, take its shape)."""
        key = pattern
        if key not in fitted:
            est = _estimator(args, pattern=key)
            t0 = time.perf_counter()
            est.fit(
                train,
                id="station",
                time="time",
                coords=["lat", "lon"],
                window=W,
                inducing=args.inducing,
            )
            rec = _fit_record(est, time.perf_counter() - t0, args.epochs)
            est_t = _estimator(args, batch_size=args.batch_size * len(stations), pattern=key)
            t0 = time.perf_counter()
            est_t.fit(windows(tr.transpose(1, 0, 2)))
            fitted[key] = (
                est,
                rec,
                est_t,
                _fit_record(est_t, time.perf_counter() - t0, args.epochs),
            )
        return fitted[key]

    cells = []
    for pattern in patterns:
        rng = np.random.default_rng([args.seed, {"point": 1, "block": 2}[pattern], 18])
        if pattern == "point":
            Xh, hidden = hide_points(X, HIDE_RATE, rng)
        else:
            Xh, hidden = hide_blocks(X, HIDE_RATE, rng, *BLOCK_LENGTHS)

        def scores(
            mean: np.ndarray,
            lo: np.ndarray | None = None,
            hi: np.ndarray | None = None,
            hidden: np.ndarray = hidden,
        ) -> dict[str, Any]:
            err = np.abs((mean - X) / sd)
            ok = hidden & ~np.isnan(mean)
            out: dict[str, Any] = {
                "mae": float(err[ok].mean()),
                "mae_per_feature": {
                    f: float(err[..., j][ok[..., j]].mean()) for j, f in enumerate(features)
                },
                "missing_predictions": int((hidden & np.isnan(mean)).sum()),
            }
            if lo is not None and hi is not None:
                out["coverage90"] = float(((lo <= X) & (hi >= X))[hidden].mean())
            return out

        cell: dict[str, Any] = {
            "pattern": pattern,
            "hidden": int(hidden.sum()),
            "hidden_rate": float(hidden.sum() / (~np.isnan(X)).sum()),
            "test_steps": int(X.shape[1]),
            "linear": scores(_linear_in_time(Xh)),
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # hours with no other station
            cell["idw"] = scores(_idw_in_space(Xh, xy))

        est, spatial_fit, est_t, time_fit = models(pattern)
        frames = []
        for i, s in enumerate(stations):
            f = test[test.station == s].sort_values("time").copy()
            f[features] = Xh[i]
            frames.append(f)
        res = est.impute(pd.concat(frames, ignore_index=True), num_samples=args.num_samples)
        cubes = [
            np.stack([r[r.station == s].sort_values("time")[features].to_numpy() for s in stations])
            for r in (res.mean, res.lower, res.upper)
        ]
        if not np.array_equal(cubes[0][~np.isnan(Xh)], Xh[~np.isnan(Xh)]):
            raise AssertionError("spatial imputation altered an observed value")
        cell["spatial"] = {**scores(*cubes), **spatial_fit}

        r = est_t.impute(windows(Xh), num_samples=args.num_samples)
        back = [np.asarray(v).reshape(X.shape) for v in (r.mean, r.lower, r.upper)]
        cell["time_only"] = {**scores(*back), **time_fit}
        cells.append(cell)
    return cells


def _fold_plots(
    folder: str,
    held: str,
    others: list[str],
    coords: pd.DataFrame,
    te_cube: np.ndarray,
    features: list[str],
    res: Any,
    g: list[np.ndarray],
    truth: np.ndarray,
) -> None:
    """Map (stations coloured by the test period's mean PM2.5, observed or predicted, and by
    the interval width; the held-out station a star) and the held-out station's series."""
    from gpvae.app.spatial_plots import plot_site_map, plot_site_series

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    names = [*others, held]
    lonlat = coords.loc[names][["lon", "lat"]].to_numpy()
    j = features.index("PM2.5")
    value = [*np.nanmean(te_cube[:, :, j], 0), float(np.nanmean(g[0][:, j]))]
    width = [*[np.nan] * len(others), float(np.nanmean(g[2][:, j] - g[1][:, j]))]
    plot_site_map(
        lonlat, value, width, names, [len(others)], "PM2.5", save=out / f"spatial_map_{held}.png"
    )
    times = np.sort(res.mean["time"].to_numpy())
    plot_site_series(
        times,
        g[0][:, :4],
        g[1][:, :4],
        g[2][:, :4],
        truth[:, :4],
        features[:4],
        title=f"{held} (held out; predicted from the other 11 stations)",
        save=out / f"spatial_series_{held}.png",
    )


def _summary(folds: list[dict[str, Any]]) -> dict[str, Any]:
    methods = ["station_mean", "idw", "idw_picked", "kriging", "gpvae"]
    out: dict[str, Any] = {}
    for m in methods:
        maes = [f[m]["mae"] for f in folds]
        out[m] = {"mean_mae": float(np.mean(maes)), "std_mae": float(np.std(maes))}
        covs = [f[m]["coverage90"] for f in folds if "coverage90" in f[m]]
        if covs:
            out[m]["mean_coverage90"] = float(np.mean(covs))
    return out


def render(data: dict[str, Any]) -> str:
    """Markdown table of the JSON written by :func:`main`."""
    folds, summary = data["folds"], data["summary"]
    cmd = data["command"]
    picked = "idw_picked" in folds[0]  # records before it have no such baseline
    lines = [
        "### Geospatial: BeijingAir, leave one station out",
        "",
        f"Training {data['config']['train_start']} to {data['config']['train_end']}, test to "
        f"{data['config']['test_end']}; MAE in standardised units over every hidden entry of "
        "the held-out station (11 features), and the share of them inside the 90% interval. "
        "IDW (picked p): each feature's power picked on the training period by "
        "leave-one-station-out MAE, the rule gpvae's spatial base uses.",
        "",
        "| held-out station | station mean | IDW (p = 2) | "
        + ("IDW (picked p) | " if picked else "")
        + "kriging | kriging cov. | gpvae | gpvae cov. | gpvae epochs (best / run / cap) |",
        "|---|---|---|---|---|---|---|---|" + ("---|" if picked else ""),
    ]
    for f in folds:
        g = f["gpvae"]
        extra = f"{f['idw_picked']['mae']:.3f} | " if picked else ""
        lines.append(
            f"| {f['station']} | {f['station_mean']['mae']:.3f} | {f['idw']['mae']:.3f} | "
            f"{extra}{f['kriging']['mae']:.3f} | {f['kriging']['coverage90']:.2f} | "
            f"{g['mae']:.3f} | {g['coverage90']:.2f} | "
            f"{g['best_epoch']} / {g['epochs_run']} / {g['epoch_cap']} |"
        )
    s = summary
    extra = f"{s['idw_picked']['mean_mae']:.4f} | " if picked else ""
    lines.append(
        f"| **mean** | {s['station_mean']['mean_mae']:.4f} | {s['idw']['mean_mae']:.4f} | "
        f"{extra}{s['kriging']['mean_mae']:.4f} | {s['kriging']['mean_coverage90']:.3f} | "
        f"{s['gpvae']['mean_mae']:.4f} | {s['gpvae']['mean_coverage90']:.3f} | |"
    )
    below = [
        f"{sum(f['gpvae']['mae'] < f[m]['mae'] for f in folds)} of {len(folds)} below {name}"
        for m, name in (("idw", "IDW"), ("idw_picked", "IDW (picked p)"), ("kriging", "kriging"))
        if m in folds[0]
    ]
    lines += ["", "gpvae by station: " + ", ".join(below) + ".", ""]
    lines += _per_feature(folds)
    lines += ["", f"Reproduce: `{cmd}`", ""]
    return "\n".join(lines)


def _per_feature(folds: list[dict[str, Any]]) -> list[str]:
    """Per feature: each method's MAE (mean over the folds) and the fusion's picked power."""
    methods = [m for m in ("idw", "idw_picked", "kriging", "gpvae") if m in folds[0]]
    names = {"idw": "IDW (p = 2)", "idw_picked": "IDW (picked p)"}
    lines = [
        "| feature | "
        + " | ".join(names.get(m, m) for m in methods)
        + " | gpvae's IDW power (per fold) | residual kept at new sites |",
        "|---|" + "---|" * (len(methods) + 2),
    ]
    for name in folds[0]["gpvae"]["mae_per_feature"]:
        mae = [float(np.mean([f[m]["mae_per_feature"][name] for f in folds])) for m in methods]
        powers = [f["gpvae"].get("space_power", {}).get(name) for f in folds]
        shown = "-" if None in powers else ", ".join(f"{p:g}" for p in powers)
        gates = [f["gpvae"].get("new_site_residual", {}).get(name) for f in folds]
        kept = "-" if None in gates else f"{int(sum(gates))} of {len(gates)} folds"
        lines.append(
            f"| {name} | " + " | ".join(f"{v:.3f}" for v in mae) + f" | {shown} | {kept} |"
        )
    return lines


def render_cells(data: dict[str, Any]) -> str:
    """Markdown table of the imputation cells (``--cells``)."""
    c = data["config"]
    lines = [
        "### Geospatial: do neighbours help imputation? (BeijingAir, 12 stations)",
        "",
        f"Training {c['train_start']} to {c['train_end']}; 10% of the observed entries of the "
        f"test period (to {c['test_end']}, every station) hidden as random points or blocks "
        "(5-24 h of one feature); MAE in standardised units (std of the observed training "
        "entries) over the hidden entries, share inside the 90% interval. Spatial: one field "
        "of the 12 stations (SpaceTime prior). Time-only: every station its own series (the "
        "same settings, windows of the same length). Linear: each station's feature "
        "interpolated in time. IDW: the other stations at the same hour (power 2). Both "
        f"gpvae models: latent {c['latent_dim']}, hidden {c['hidden']}, lr {c['lr']}, "
        f"windows of {c['window']} h, interp_skip {c.get('interp_skip', False)}, training "
        f"mask rate {c.get('mask_rate', 0.0)} in the cell's pattern.",
        "",
        "| pattern | spatial MAE (cov.) | time-only MAE (cov.) | linear | IDW | "
        "epochs spatial (best / run / cap) | epochs time-only |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in data["cells"]:
        a, b = r["spatial"], r["time_only"]
        lines.append(
            f"| {r['pattern']} | {a['mae']:.3f} ({a['coverage90']:.2f}) | "
            f"{b['mae']:.3f} ({b['coverage90']:.2f}) | {r['linear']['mae']:.3f} | "
            f"{r['idw']['mae']:.3f} | {a['best_epoch']} / {a['epochs_run']} / {a['epoch_cap']} "
            f"| {b['best_epoch']} / {b['epochs_run']} / {b['epoch_cap']} |"
        )
    feats = list(data["cells"][0]["spatial"]["mae_per_feature"])
    lines += [
        "",
        "MAE per feature:",
        "",
        "| pattern | method | " + " | ".join(feats) + " |",
        "|---|---|" + "---|" * len(feats),
    ]
    for r in data["cells"]:
        for m in ("spatial", "time_only", "linear", "idw"):
            per = r[m]["mae_per_feature"]
            lines.append(
                f"| {r['pattern']} | {m} | " + " | ".join(f"{per[f]:.3f}" for f in feats) + " |"
            )
    lines += ["", f"Reproduce: `{data['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--stations", default=None, help="comma-separated held-out stations")
    p.add_argument("--train-start", default="2013-03-01")
    p.add_argument("--train-end", default="2013-06-01")
    p.add_argument("--test-end", default="2013-07-01")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--patience", type=int, default=8)
    p.add_argument("--latent-dim", type=int, default=12)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--window", type=int, default=24)
    p.add_argument("--inducing", type=int, default=None)
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument("--interp-skip", action="store_true", help="gpvae's interp_skip (both models)")
    p.add_argument(
        "--likelihoods",
        default="gaussian",
        help="folds: gpvae fitted with each of these likelihoods (comma-separated), the one "
        "with the lowest validation score kept",
    )
    p.add_argument(
        "--mask-rate",
        type=float,
        default=0.0,
        help="train with this share hidden: in the cell's pattern (cells), whole sites (folds)",
    )
    p.add_argument("--num-samples", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", action="store_true")
    p.add_argument("--plots", default=None, help="folder for each fold's map and series plots")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument(
        "--cells", default=None, help="point,block: the imputation cells instead of the folds"
    )
    p.add_argument("--table", action="store_true", help="write the docs table from --out")
    args = p.parse_args(argv)
    command = "PYTHONPATH=src python benchmarks/spatial.py " + " ".join(
        a for a in (argv if argv is not None else sys.argv[1:]) if a
    )
    config = {k: v for k, v in vars(args).items() if k not in ("table", "progress")}
    if args.table:
        data = json.loads(Path(args.out).read_text())
        text = DOCS.read_text() if DOCS.exists() else ""
        begin, end = (BEGIN_CELLS, END_CELLS) if "cells" in data else (BEGIN, END)
        body = render_cells(data) if "cells" in data else render(data)
        region = f"{begin}\n{body}\n{end}"
        start, stop = text.find(begin), text.find(end)
        if start != -1 and stop > start:
            text = text[:start] + region + text[stop + len(end) :]
        else:
            text = text.rstrip("\n") + "\n\n" + region + "\n"
        DOCS.write_text(text)
        return 0
    import torch

    torch.set_num_threads(1)
    long = beijing_long(args.data_dir)
    if args.cells:
        cells = run_cells(long, args.cells.split(","), args)
        for r in cells:
            print(
                f"{r['pattern']}: spatial {r['spatial']['mae']:.3f} "
                f"({r['spatial']['coverage90']:.2f}) time-only {r['time_only']['mae']:.3f} "
                f"({r['time_only']['coverage90']:.2f}) linear {r['linear']['mae']:.3f} "
                f"idw {r['idw']['mae']:.3f}",
                flush=True,
            )
        data = {"command": command, "config": config, "cells": cells}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(data, indent=1))
        return 0
    stations = args.stations.split(",") if args.stations else sorted(long.station.unique())
    folds = []
    for s in stations:
        t0 = time.perf_counter()
        folds.append(run_fold(long, s, args))
        f = folds[-1]
        print(
            f"{s}: mean {f['station_mean']['mae']:.3f} idw {f['idw']['mae']:.3f} "
            f"idw_picked {f['idw_picked']['mae']:.3f} "
            f"kriging {f['kriging']['mae']:.3f} ({f['kriging']['coverage90']:.2f}) gpvae "
            f"{f['gpvae']['mae']:.3f} ({f['gpvae']['coverage90']:.2f}) "
            f"[{time.perf_counter() - t0:.0f} s]",
            flush=True,
        )
        data = {
            "command": command,
            "config": config,
            "folds": folds,
            "summary": _summary(folds),
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(data, indent=1))
    print(json.dumps(_summary(folds), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
