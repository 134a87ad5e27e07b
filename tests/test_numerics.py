"""Numerical safety in float32 at extreme but valid settings.

With valid input, lengthscales from 1e-3 to 1e3 times the sampling interval and series of
1, 2 and 1000 points, the ELBO, its gradients, the imputation draws, the forecast draws and
prior samples are finite for both GP backends (dense and markov): at the model level (a
:class:`~gpvae.gp.GPPrior` built with a kernel directly) and through ``gpvae.GPVAE(...,
lengthscale=...)``.

Two failures found here were fixed at their source (tests kept below):

- posteriors/base.py ``markov_chain_cross_entropy`` (the O(N) KL of the banded and diagonal
  posteriors against a state-space prior) was NaN in float32 for smooth kernels with long
  lengthscales, and for nearly coincident times (now float64 with a 1e-14 jitter);
- kernels/matern.py: Matern-3/2 and 5/2 covariances, and the Matern-5/2 transition, were
  NaN in float32 at separations beyond ~1e19 lengthscales (inf * 0; now capped where the
  exponential is exactly 0).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import Tensor

from gpvae import GPVAE
from gpvae.batch import Batch
from gpvae.errors import NumericalError
from gpvae.gp import GPPrior
from gpvae.kernels import RBF, Kernel, Matern12, Matern32, Matern52
from gpvae.likelihoods import Gaussian
from gpvae.model import GPVAEModel
from gpvae.nets import MLPDecoder, MLPEncoder
from gpvae.posteriors import get_posterior

DT = 0.25  # the sampling interval of the synthetic series
LENGTHSCALES = (1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3)  # in sampling intervals
D, L = 3, 2


def _batch(N: int, B: int = 2, seed: int = 0) -> Batch:
    """B float32 series on a grid of step DT, ~30% missing; series 1 is half padding."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.arange(N, dtype=torch.float32) * DT)[None, :, None].repeat(B, 1, 1)
    y = torch.sin(x / (4 * DT)) + 0.1 * torch.randn(B, N, D, generator=g)
    observed = torch.rand(B, N, D, generator=g) > 0.3
    observed[:, 0, 0] = True
    valid = torch.ones(B, N, dtype=torch.bool)
    if N > 1 and B > 1:
        half = (N + 1) // 2
        valid[1, half:] = False
        observed[1, half:] = False
        x[1, half:] = x[1, half - 1]
    y = torch.where(observed, y, torch.zeros_like(y))
    return Batch(x, y, observed, valid)


def _model(kernel: Kernel, backend: str, posterior: str = "structured") -> GPVAEModel:
    torch.manual_seed(0)
    prior = GPPrior(kernel, latent_dim=L, backend=backend)
    family = get_posterior(posterior)
    enc = MLPEncoder(D, L, hidden=(8,), num_outputs=family.num_encoder_outputs)
    dec = MLPDecoder(L, D, hidden=(8,))
    return GPVAEModel(enc, family, prior, dec, Gaussian(num_features=D))


def _finite(t: Tensor) -> bool:
    return bool(torch.isfinite(t).all())


def _model_problems(kernel: Kernel, backend: str, N: int, posterior: str = "structured") -> list:
    """Which quantities are not finite (empty when all are)."""
    model = _model(kernel, backend, posterior)
    batch = _batch(N)
    bad = []
    res = model.elbo(batch, num_samples=2, generator=torch.Generator().manual_seed(1))
    for name, value in (("elbo", res.elbo), ("loglik", res.loglik), ("kl", res.kl)):
        if not _finite(value):
            bad.append(name)
    loss = -res.elbo.sum() / batch.observed.sum()
    loss.backward()
    for name, p in model.named_parameters():
        if p.grad is not None and not _finite(p.grad):
            bad.append(f"grad {name}")
    if posterior != "structured":
        return bad
    with torch.no_grad():
        q = model.encode(batch)
        m, v = q.marginals()
        if not (_finite(m) and _finite(v) and bool((v >= 0).all())):
            bad.append("marginals")
        gens = [torch.Generator().manual_seed(10 + b) for b in range(batch.y.shape[0])]
        z = q.series_sampler(gens).draw(4)  # impute's draws
        imputed = model.likelihood.mean(model.decode(z))
        if not (_finite(z) and _finite(imputed)):
            bad.append("imputation draws")
        x_new = batch.x[:, -1:, :] + DT * torch.arange(1, 4, dtype=torch.float32)[None, :, None]
        zf = q.gp.sample_at(x_new, 4, torch.Generator().manual_seed(2))  # forecast's draws
        if not _finite(zf):
            bad.append("forecast draws")
        zp = model.prior.sample(batch.x[:1], 4, torch.Generator().manual_seed(3))
        if not _finite(zp):
            bad.append("prior samples")
    return bad


KERNELS: dict[str, Callable[[float], Kernel]] = {
    "matern12": lambda ls: Matern12(lengthscale=ls),
    "matern32": lambda ls: Matern32(lengthscale=ls),
    "matern52": lambda ls: Matern52(lengthscale=ls),
    "rbf": lambda ls: RBF(lengthscale=ls),
}


def _sweep(backend: str, kernel: str, N: int, lengthscales: tuple[float, ...]) -> None:
    problems = {}
    for ls in lengthscales:
        k = KERNELS[kernel](ls * DT)
        assert math.isclose(float(k.lengthscale), ls * DT, rel_tol=1e-4)
        bad = _model_problems(k, backend, N)
        if bad:
            problems[ls] = bad
    print(f"\n[numerics] {backend} {kernel} N={N}: lengthscales {lengthscales} x dt, "
          f"non-finite: {problems or 'none'}")  # fmt: skip
    assert not problems, problems


@pytest.mark.parametrize("N", [1, 2, 1000])
@pytest.mark.parametrize("kernel", ["matern12", "matern32", "matern52"])
def test_markov_float32_extreme_lengthscales(kernel: str, N: int) -> None:
    _sweep("markov", kernel, N, LENGTHSCALES)


@pytest.mark.parametrize("N", [1, 2, 300])
@pytest.mark.parametrize("kernel", ["matern12", "matern32", "matern52", "rbf"])
def test_dense_float32_extreme_lengthscales(kernel: str, N: int) -> None:
    _sweep("dense", kernel, N, LENGTHSCALES)


@pytest.mark.slow
@pytest.mark.parametrize("kernel", ["matern12", "matern32", "matern52", "rbf"])
def test_dense_float32_extreme_lengthscales_1000_points(kernel: str) -> None:
    _sweep("dense", kernel, 1000, LENGTHSCALES)


# ---------------------------------------------------------------- through the estimator


def _series(seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Two series sampled every DT (times in seconds): 2 points and 1000 points."""
    rng = np.random.default_rng(seed)
    X, times = [], []
    for T in (2, 1000):
        t = 100.0 + DT * np.arange(T)
        x = np.stack([np.sin(t), np.cos(t / 3), 0.1 * rng.standard_normal(T)], axis=1)
        x[rng.random(x.shape) < 0.3] = np.nan
        x[0] = 0.5
        X.append(x)
        times.append(t)
    return X, times


def _estimator_check(backend: str, kernel: str, ls: float) -> None:
    X, times = _series()
    est = GPVAE(
        latent_dim=L, hidden=(8,), epochs=2, batch_size=2, progress=False, device="cpu",
        backend=backend, kernel=kernel, lengthscale=ls, seed=0,
    )  # fmt: skip
    start = est._build_model(D).prior.kernel_list[0].lengthscale
    assert math.isclose(float(start), ls, rel_tol=1e-4)  # in time steps (= DT seconds)
    est.fit(X, times)
    assert all(math.isfinite(h["loss"]) and math.isfinite(h["val_score"]) for h in est.history_)
    res = est.impute(X, times, num_samples=4)
    for m, lo, hi, x in zip(res.mean, res.lower, res.upper, X):
        for part in (m, lo, hi):
            assert np.isfinite(part).all()
        obs = ~np.isnan(x)
        assert m[obs].tobytes() == x[obs].tobytes()
    fc = est.forecast(X, times, horizon=3, num_samples=4)
    assert np.isfinite(fc.mean).all()
    assert np.isfinite(fc.lower).all()
    for T in (1, 2, 1000):
        assert np.isfinite(est.sample(100.0 + DT * np.arange(T), num_samples=2)).all()
    scores = est.anomaly_scores(X, times, num_samples=4)
    for e, x in zip(scores.entry, X):
        assert np.isfinite(e[~np.isnan(x)]).all()


@pytest.mark.parametrize(("kernel", "ls"), [("matern32", 1e-3), ("matern52", 1e3)])
def test_estimator_markov_extreme_lengthscale(kernel: str, ls: float) -> None:
    _estimator_check("markov", kernel, ls)


@pytest.mark.slow
@pytest.mark.parametrize("ls", [1e-3, 1e-1, 1e1, 1e3])
@pytest.mark.parametrize(("backend", "kernel"), [("dense", "matern32"), ("dense", "rbf"),
                                                 ("markov", "matern12"), ("markov", "matern32"),
                                                 ("markov", "matern52")])  # fmt: skip
def test_estimator_extreme_lengthscale_slow(backend: str, kernel: str, ls: float) -> None:
    _estimator_check(backend, kernel, ls)


def test_structured_posterior_nearly_coincident_times() -> None:
    """Times 1e-40 steps apart (a 1e45 outlier setting the time step) stay finite."""
    batch = _batch(6, B=1)
    x = batch.x.clone()
    x[0, 1:3, 0] = torch.tensor([x[0, 0, 0] + 1e-40, x[0, 0, 0] + 2e-40])
    near = Batch(x, batch.y, batch.observed, batch.valid)
    for backend in ("dense", "markov"):
        model = _model(Matern32(lengthscale=1.0), backend)
        res = model.elbo(near, generator=torch.Generator().manual_seed(0))
        assert _finite(res.elbo), backend


# ---------------------------------------------------------------- failures found and fixed


@pytest.mark.parametrize("backend", ["markov", "dense"])
def test_banded_and_diagonal_kl_long_lengthscales_float32(backend: str) -> None:
    for posterior in ("banded", "diagonal"):
        for name in ("matern32", "matern52"):
            for ls in (10.0, 30.0, 50.0, 100.0, 200.0, 500.0, 1000.0):
                bad = _model_problems(KERNELS[name](ls * DT), backend, 100, posterior)
                assert not bad, (posterior, name, ls, bad)


def test_banded_and_diagonal_kl_nearly_coincident_times() -> None:
    batch = _batch(6, B=1)
    x = batch.x.clone()
    x[0, 1:3, 0] = torch.tensor([x[0, 0, 0] + 1e-40, x[0, 0, 0] + 2e-40])
    near = Batch(x, batch.y, batch.observed, batch.valid)
    finite = []
    for posterior in ("banded", "diagonal"):
        model = _model(Matern32(lengthscale=1.0), "markov", posterior)
        finite.append(_finite(model.elbo(near, generator=torch.Generator().manual_seed(0)).elbo))
    assert all(finite)


@pytest.mark.parametrize("kernel", [Matern32, Matern52])
def test_dense_matern_covariance_far_apart(kernel: type[Kernel]) -> None:
    x = torch.tensor([[0.0], [1e20]])
    assert _finite(kernel(lengthscale=1.0)(x))


def test_markov_matern52_transition_far_apart() -> None:
    A, Q = Matern52(lengthscale=1.0).transition(torch.tensor([1e20]))
    assert _finite(A)
    assert _finite(Q)


def test_far_apart_points_fine_for_other_kernels() -> None:
    """The same separations are fine for Matern-1/2 (both forms) and RBF, and Matern-3/2's
    transition (so the default markov backend handles them)."""
    x = torch.tensor([[0.0], [1e20]])
    for k in (Matern12(), RBF()):
        assert _finite(k(x))
    for k in (Matern12(), Matern32()):
        A, Q = k.transition(torch.tensor([1e20, 1e37]))
        assert _finite(A)
        assert _finite(Q)


def test_a_failing_cholesky_in_training_is_rolled_back_and_the_error_names_lr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Audit A3 #3/#5: at lr=30 the markov backend's Cholesky failed in the forward pass
    and ended the fit at once with "try float64" (which GPVAE does not offer), naming
    neither lr nor the epoch; the documented rollback (halve the learning rate) never ran.
    Now each failure is rolled back (to weights whose validation did not fail, audit R #7)
    and the fit ends, warned that it is no use; a failure that every step repeats ends,
    past max_bad_steps, in an error naming the epoch and lr, saying nothing is kept."""
    rng = np.random.default_rng(0)
    t = np.arange(60)
    X = np.stack([np.stack([np.sin(t / 5 + i + j) + 0.1 * rng.standard_normal(60)
                            for j in range(3)], 1) for i in range(12)])  # fmt: skip
    est = GPVAE(latent_dim=2, epochs=6, batch_size=4, progress=False, lr=30.0)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        est.fit(X)
    texts = [str(w.message) for w in said]
    assert any(x.startswith("numerical failure of the model (markov backend") for x in texts)
    assert any(x.startswith("training: the kept weights") and "lr=30" in x for x in texts)
    assert est.is_fitted
    assert [h["lr"] for h in est.history_][-1] < 30.0  # halved on the way

    def fails(self: GPVAEModel, *args: object, **kwargs: object) -> None:
        raise NumericalError("markov backend: the Cholesky factorisation failed; try float64")

    monkeypatch.setattr(GPVAEModel, "elbo", fails)
    est = GPVAE(latent_dim=2, epochs=6, batch_size=4, progress=False, lr=30.0)
    with pytest.raises(NumericalError) as caught, pytest.warns(RuntimeWarning,
                       match=r"^numerical failure of the model \(markov backend"):  # fmt: skip
        est.fit(X)
    message = str(caught.value)
    assert message.startswith("training: the loss or its gradients were not finite, or the ")
    assert "(epoch " in message
    assert "Fit again with a smaller lr (it was lr=30; try lr=3)" in message
    assert message.endswith("; nothing of this fit is kept")
    assert "float64" not in message
    assert not est.is_fitted
