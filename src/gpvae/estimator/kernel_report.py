"""The learned kernels' hyper-parameters in the data's own units (:meth:`GPVAE.kernel_summary`).

The model computes in scaled time: a series' times ``t`` become ``x = (t - origin) / step``
(:class:`~gpvae.data.Scaler`), so a lengthscale of 3 in the model is 3 training steps: 1.5
hours for half-hourly dates. A spatial fit's index points are ``(east_km, north_km, steps)``
(:class:`~gpvae.estimator.spatial.SpatialSpec`). This module reads every kernel of a fitted
model (the prior's channel kernels and the noise kernels of ``likelihood="gaussian_gp"``),
term by term for sums and products, and gives each hyper-parameter back with its unit:

- ``lengthscale`` and ``period`` along time: times the training step, in hours for dates
  and durations, in steps of the grid for calendar data (``'MS'``: months), in the time
  column's own units for numbers (positions when no times were given);
- ``lengthscale`` over space: km;
- the lengthscale of a periodic kernel is relative to its period, and variances, ``alpha``
  and the like have no unit: given as they are, unit ``""``.

``likelihood="gaussian_gp"`` models feature d's deviation from the decoder as
``a_d g_d + eps_d`` with ``g_d`` a GP of unit variance (:mod:`gpvae.likelihoods.gp_noise`):
its kernel is listed like the others (source ``"noise of all features"`` when the features
share it, ``"noise of <feature>"`` with ``"gaussian_gp_per_feature"``; its ``variance`` is 1,
fixed), and every feature gets the rows ``amplitude`` (``a_d``) and ``white_sd`` (the
standard deviation ``sqrt(s2_d)`` of the white noise ``eps_d``), source
``"noise of <feature>"``, kernel ``"GPNoiseGaussian"``, term ``"scale"``: in the feature's
own units (unit ``"feature units"``: the model's standardised values times the feature's
standard deviation in training), or as the model has them (unit ``"standardised"``) when
no scaling is known.

Every row also gives the value its parameter started training from (:func:`with_initial`):
on a short fit a learned value often stays near its start, so a lengthscale that reads
what it started from says little about the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from torch.nn.functional import softplus

from gpvae.kernels import HarmonicPeriodic, Kernel, Periodic, Product, SpaceTime, Sum
from gpvae.likelihoods import GPNoiseGaussian

if TYPE_CHECKING:
    from gpvae.data import Scaler
    from gpvae.estimator.spatial import SpatialSpec
    from gpvae.model import GPVAEModel

__all__ = ["COLUMNS", "TimeUnit", "format_summary", "kernel_rows", "time_unit", "with_initial"]

#: The columns of :meth:`GPVAE.kernel_summary`'s table, in order.
COLUMNS = ("source", "term", "kernel", "parameter", "value", "unit", "learned", "initial")

#: Hyper-parameters measured along the index (time, or space for a spatial part).
_ALONG_INDEX = ("lengthscale", "period")


@dataclass(frozen=True)
class TimeUnit:
    """How one model step reads in the data: ``factor`` data units of ``name`` per step."""

    factor: float
    name: str


def time_unit(scaler: Scaler | None, spatial: SpatialSpec | None) -> TimeUnit:
    """The data's unit of one model time step (see the module docstring)."""
    if spatial is not None:
        axis = spatial.time_axis
        return TimeUnit(float(axis.step), "hours" if axis.datetime else "time units")
    assert scaler is not None
    form = scaler.time_form_ or (None, None)
    unit, freq = form
    if unit == "hours":
        name = "hours"
    elif unit == "steps":
        name = f"steps of {freq}"
    else:
        name = "time units"
    return TimeUnit(float(scaler.time_step_), name)


def _leaves(kernel: Kernel, label: str, space: bool) -> list[tuple[str, Kernel, bool]]:
    """Every leaf kernel under ``kernel`` with its term label (``"1.0"``: the first factor
    of the second term) and whether it acts on space (a :class:`SpaceTime`'s spatial part)."""
    if isinstance(kernel, SpaceTime):
        out = _leaves(kernel.spatial, f"{label}.space" if label else "space", True)
        out += _leaves(kernel.temporal, f"{label}.time" if label else "time", False)
        return out
    if isinstance(kernel, Sum | Product):
        out = []
        for i, k in enumerate(kernel.terms):
            out += _leaves(k, f"{label}.{i}" if label else str(i), space)
        return out
    return [(label or "0", kernel, space)]


def _values(raw: Any) -> list[float]:
    return [float(v) for v in softplus(raw.detach()).reshape(-1).tolist()]


def kernel_rows(
    model: GPVAEModel,
    unit: TimeUnit,
    feature_names: tuple[str, ...] | list[str],
    feature_scale: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """One row per hyper-parameter of every kernel of ``model`` (columns :data:`COLUMNS`).

    Args:
        model: a fitted model.
        unit: the data's unit of one model time step (:func:`time_unit`).
        feature_names: the D feature names (sources of per-feature noise kernels).
        feature_scale: (D,) each feature's standard deviation in training (the scaler's),
            which turns the per-feature noise levels of ``"gaussian_gp"`` into the
            feature's units; None: they are given standardised.

    Returns:
        Rows in the order latent channel 0, 1, ..., then the noise kernels, then the
        per-feature noise levels of ``"gaussian_gp"`` (``amplitude``, ``white_sd``; see the
        module docstring); within a source, terms in order and each term's parameters by
        name. An ARD parameter (one value per spatial direction) gives one row per
        direction, named ``lengthscale[0]``, ...
    """
    sources: list[tuple[str, Kernel]] = [
        (f"latent {i}", k) for i, k in enumerate(model.prior.kernel_list)
    ]
    gp = getattr(model.likelihood, "gp", None)
    if gp is not None:
        noise = gp.kernel_list
        names = list(feature_names) if len(noise) == len(feature_names) else ["all features"]
        sources += [(f"noise of {n}", k) for n, k in zip(names, noise)]
    rows: list[dict[str, Any]] = []
    for source, kernel in sources:
        for term, leaf, space in _leaves(kernel, "", False):
            relative = isinstance(leaf, HarmonicPeriodic | Periodic)
            for raw_name, raw in sorted(leaf.raw_parameters().items()):
                name = raw_name.removeprefix("raw_")
                values = _values(raw)
                if name in _ALONG_INDEX and not (name == "lengthscale" and relative):
                    factor, label = (1.0, "km") if space else (unit.factor, unit.name)
                else:
                    factor, label = 1.0, ""
                for j, v in enumerate(values):
                    rows.append(
                        {
                            "source": source,
                            "term": term,
                            "kernel": type(leaf).__name__,
                            "parameter": name if len(values) == 1 else f"{name}[{j}]",
                            "value": v * factor,
                            "unit": label,
                            "learned": bool(raw.requires_grad),
                        }
                    )
    if isinstance(model.likelihood, GPNoiseGaussian):
        rows += _noise_level_rows(model.likelihood, list(feature_names), feature_scale)
    return rows


def _noise_level_rows(
    likelihood: GPNoiseGaussian, names: list[str], scale: np.ndarray | None
) -> list[dict[str, Any]]:
    """Each feature's ``amplitude`` a_d and ``white_sd`` sqrt(s2_d) (module docstring)."""
    amplitude = likelihood.amplitude().detach().double().cpu().numpy()
    white_sd = likelihood.feature_variance().detach().double().sqrt().cpu().numpy()
    if scale is None:
        factor, label = np.ones(len(amplitude)), "standardised"
    else:
        factor, label = np.asarray(scale, dtype=np.float64).reshape(-1), "feature units"
    params = (
        ("amplitude", amplitude, likelihood.raw_amplitude),
        ("white_sd", white_sd, likelihood.raw_variance),
    )
    rows: list[dict[str, Any]] = []
    for d, name in enumerate(names):
        for parameter, values, raw in params:
            rows.append(
                {
                    "source": f"noise of {name}",
                    "term": "scale",
                    "kernel": type(likelihood).__name__,
                    "parameter": parameter,
                    "value": float(values[d] * factor[d]),
                    "unit": label,
                    "learned": bool(raw.requires_grad),
                }
            )
    return rows


def with_initial(
    rows: list[dict[str, Any]], starts: list[list[dict[str, Any]]] | None
) -> list[dict[str, Any]]:
    """``rows`` with the column ``initial``: the value each hyper-parameter started training
    from, read from ``starts`` (the :func:`kernel_rows` of two freshly built models of the
    same settings whose stand-ins for what the data decide at fit, the periods found in the
    data's spectrum and the training span, differ; matched by source, term and parameter);
    a fixed one's own value; NaN where the two differ (a learned period found in the data, a
    quasi-periodic decay set from it, a trend lengthscale set from the span: starts taken from
    the data and not kept) or when ``starts`` is None (spatial fits)."""
    known = [{(r["source"], r["term"], r["parameter"]): r for r in start} for start in starts or []]
    out = []
    for row in rows:
        key = (row["source"], row["term"], row["parameter"])
        firsts = [k.get(key) for k in known]
        if not row["learned"]:
            initial = row["value"]
        elif (
            not firsts
            or any(f is None or f["kernel"] != row["kernel"] for f in firsts)
            or any(f["value"] != firsts[0]["value"] for f in firsts)  # type: ignore[index]
        ):
            initial = float("nan")
        else:
            initial = firsts[0]["value"]  # type: ignore[index]
        out.append({**row, "initial": initial})
    return out


def _readable(value: float, unit: str) -> str:
    text = f"{value:.4g}"
    if unit == "hours" and value >= 48:
        return f"{text} hours ({value / 24:.3g} days)"
    return f"{text} {unit}" if unit else text


def format_summary(rows: list[dict[str, Any]]) -> list[str]:
    """One line per source: ``latent 0: Matern32 lengthscale 1.5 hours, variance 0.98``
    (terms of a sum or product in order, ``(fixed)`` after a parameter not learned)."""
    lines: list[str] = []
    by_source: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)
    for source, items in by_source.items():
        terms: dict[str, list[dict[str, Any]]] = {}
        for row in items:
            terms.setdefault(row["term"], []).append(row)
        parts = []
        for group in terms.values():
            params = ", ".join(
                f"{r['parameter']} {_readable(r['value'], r['unit'])}"
                + ("" if r["learned"] else " (fixed)")
                for r in group
            )
            parts.append(f"{group[0]['kernel']} {params}")
        lines.append(f"{source}: " + "; ".join(parts))
    return lines
