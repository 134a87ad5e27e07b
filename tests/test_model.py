"""GPVAEModel: exactness in the linear-Gaussian case, IWAE, imputation end to end, bad input."""

from __future__ import annotations

import itertools
import math
import time

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import MultivariateNormal

from gpvae.batch import Batch
from gpvae.errors import GPVAEError, InputTypeError, ShapeError, ValidationError
from gpvae.gp import GPPrior
from gpvae.kernels import Matern32, White
from gpvae.likelihoods import Bernoulli, Gaussian, StudentT
from gpvae.likelihoods import base as likelihood_base
from gpvae.model import ELBOResult, GPVAEModel, core, sorted_quantiles
from gpvae.nets import ConvEncoder, MLPDecoder, MLPEncoder, PartialEncoder
from gpvae.posteriors import BandedPosterior, DiagonalPosterior, StructuredPosterior

# --------------------------------------------------------------------------------------
# linear-Gaussian model: z ~ GP, y = W z + N(0, s2), log p(y) in closed form


class ExactEncoder(nn.Module):
    """Pseudo-observations (y, s2) of a 1-D latent: q is then the exact posterior."""

    def __init__(self, likelihood: Gaussian) -> None:
        super().__init__()
        self.likelihood = likelihood

    def forward(self, y: Tensor, observed: Tensor) -> tuple[Tensor, Tensor]:
        var = self.likelihood.feature_variance().expand_as(y)
        return y, var


def linear_gaussian_batch(
    num_features: int, latent_dim: int, weight: Tensor, noise: float, seed: int = 0
) -> tuple[Batch, GPPrior]:
    g = torch.Generator().manual_seed(seed)
    B, N = 2, 30
    x = torch.sort(torch.rand(B, N, generator=g, dtype=torch.float64) * 15, dim=1).values
    prior = GPPrior(Matern32(lengthscale=2.0), latent_dim, backend="dense").double()
    with torch.no_grad():
        z = prior.sample(x, 1, generator=g)[0]  # (B, N, L)
    y = z @ weight.T + math.sqrt(noise) * torch.randn(B, N, num_features, generator=g).double()
    observed = torch.rand(B, N, num_features, generator=g) < 0.7
    observed[0, 4] = False
    return Batch.from_tensors(torch.where(observed, y, 0.0), observed=observed, x=x), prior


def exact_log_evidence(batch: Batch, prior: GPPrior, weight: Tensor, noise: float) -> Tensor:
    """(B,) log N(y_obs | 0, (W (x) I) K (W (x) I)^T + s2 I) over the observed entries."""
    K = prior.covariance(batch.x)  # (B, L, N, N)
    out = []
    for b in range(batch.y.shape[0]):
        # cov of vec(y) with index (n, d): sum_l W[d, l] W[d', l] K_l[n, n']
        cov = torch.einsum("dl,el,lnm->ndme", weight, weight, K[b])
        N, D = batch.y.shape[1:]
        cov = cov.reshape(N * D, N * D) + noise * torch.eye(N * D, dtype=cov.dtype)
        obs = batch.observed[b].reshape(-1)
        y = batch.y[b].reshape(-1)[obs]
        mvn = MultivariateNormal(torch.zeros_like(y), cov[obs][:, obs])
        out.append(mvn.log_prob(y))
    return torch.stack(out)


def _one_dim_model(noise: float) -> tuple[GPVAEModel, Batch, Tensor]:
    weight = torch.ones(1, 1, dtype=torch.float64)
    batch, prior = linear_gaussian_batch(1, 1, weight, noise)
    lik = Gaussian(1, variance=noise, learn_variance=False).double()
    model = GPVAEModel(ExactEncoder(lik), StructuredPosterior(), prior, nn.Identity(), lik)
    exact_noise = float(lik.feature_variance())  # noise up to float32 rounding of the raw value
    return model, batch, exact_log_evidence(batch, prior, weight, exact_noise)


def test_elbo_is_exact_when_the_posterior_family_contains_the_true_posterior() -> None:
    noise = 0.3
    model, batch, log_py = _one_dim_model(noise)
    n_points = batch.valid.sum(-1).double()
    with torch.no_grad():
        # Without Monte Carlo noise: E_q log p(y | z) from q's marginals (identity decoder).
        q = model.encode(batch)
        m, v = q.marginals()
        s2 = model.likelihood.feature_variance()  # type: ignore[operator]
        terms = -0.5 * (math.log(2 * math.pi) + torch.log(s2) + ((batch.y - m) ** 2 + v) / s2)
        exact_elbo = torch.where(batch.observed, terms, 0.0).sum((1, 2)) - q.kl()
        torch.testing.assert_close(exact_elbo, log_py, rtol=1e-9, atol=1e-9)
        # The model's Monte Carlo ELBO: gap below 1e-3 nats per point.
        out = model.elbo(batch, num_samples=50_000, generator=torch.Generator().manual_seed(0))
        gap = (log_py - out.elbo) / n_points
        assert float(gap.abs().max()) < 1e-3
        # Every importance weight p(y, z) / q(z) equals p(y): the IWAE bound is exact.
        iw = model.elbo(batch, num_samples=3, iwae=4, generator=torch.Generator().manual_seed(1))
        assert iw.iwae is not None
        torch.testing.assert_close(iw.iwae, log_py, rtol=1e-8, atol=1e-8)


def test_elbo_is_below_the_evidence_for_a_wrong_posterior() -> None:
    noise = 0.3
    model, batch, log_py = _one_dim_model(noise)
    with torch.no_grad():
        for wrong in [
            GPVAEModel(
                ExactEncoder(model.likelihood),  # type: ignore[arg-type]
                DiagonalPosterior(),
                model.prior,
                nn.Identity(),
                model.likelihood,
            ),
            GPVAEModel(
                _Scaled(ExactEncoder(model.likelihood), 3.0),  # type: ignore[arg-type]
                StructuredPosterior(),
                model.prior,
                nn.Identity(),
                model.likelihood,
            ),
        ]:
            out = wrong.elbo(batch, num_samples=20_000, generator=torch.Generator().manual_seed(0))
            assert bool((out.elbo < log_py - 0.5).all())


class _Scaled(nn.Module):
    """Multiplies an encoder's variances by a factor (a deliberately wrong posterior)."""

    def __init__(self, encoder: nn.Module, factor: float) -> None:
        super().__init__()
        self.encoder, self.factor = encoder, factor

    def forward(self, y: Tensor, observed: Tensor) -> tuple[Tensor, Tensor]:
        mean, var = self.encoder(y, observed)
        return mean, var * self.factor


def test_linear_decoder_bounds_increase_with_importance_samples_and_stay_below_evidence() -> None:
    torch.manual_seed(0)
    weight = torch.tensor([[1.0, 0.5], [-0.3, 1.2], [0.8, -0.7]], dtype=torch.float64)
    noise = 0.2
    batch, prior = linear_gaussian_batch(3, 2, weight, noise, seed=1)
    decoder = nn.Linear(2, 3, bias=False).double()
    decoder.weight.data = weight.clone()
    decoder.requires_grad_(False)
    lik = Gaussian(3, variance=noise, learn_variance=False).double()
    log_py = exact_log_evidence(batch, prior, weight, float(lik.feature_variance()[0]))
    model = GPVAEModel(
        MLPEncoder(3, 2, hidden=(32,)).double(), StructuredPosterior(), prior, decoder, lik
    )
    prior.requires_grad_(False)
    opt = torch.optim.Adam(model.encoder.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(150):
        loss = -model.elbo(batch, num_samples=4, generator=gen).elbo.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        bounds = []
        for k in [1, 4, 16, 64]:
            out = model.elbo(batch, num_samples=max(1, 12_800 // k), iwae=k, generator=gen)
            bounds.append(out.bound.sum())
        total = log_py.sum()
    assert all(float(b) < float(total) for b in bounds)
    assert all(float(b1) < float(b2) for b1, b2 in itertools.pairwise(bounds))
    # the bound closes most of the gap with 64 importance samples
    assert float(total - bounds[-1]) < 0.5 * float(total - bounds[0])


# --------------------------------------------------------------------------------------
# end to end: imputation on data drawn from a GP-VAE


TRUE_LENGTHSCALE = 6.0
INIT_LENGTHSCALE = 2.0


def _gpvae_data(seed: int = 0) -> tuple[Batch, Tensor, Tensor]:
    """Matern-3/2 latents (lengthscale 6), a fixed random tanh decoder, noise sd 0.1; 20% of
    time steps missing entirely and half of the other entries: 60% of entries missing."""
    g = torch.Generator().manual_seed(seed)
    B, T, D, L = 64, 40, 8, 2
    x = torch.arange(T, dtype=torch.float32).expand(B, T)
    true_prior = GPPrior(Matern32(lengthscale=TRUE_LENGTHSCALE), L, backend="dense")
    with torch.no_grad():
        z = true_prior.sample(x, 1, generator=g)[0]  # (B, T, L)
        w1 = torch.randn(L, 16, generator=g)
        b1 = 0.5 * torch.randn(16, generator=g)
        w2 = torch.randn(16, D, generator=g) / 4
        f = torch.tanh(z @ w1 + b1) @ w2
        f = (f - f.mean((0, 1))) / f.std((0, 1))
        y = f + 0.1 * torch.randn(f.shape, generator=g)
    step_missing = torch.rand(B, T, generator=g) < 0.2
    observed = ~(step_missing[..., None] | (torch.rand(B, T, D, generator=g) < 0.5))
    batch = Batch.from_tensors(torch.where(observed, y, 0.0), observed=observed, x=x)
    return batch, y, step_missing


def _fit(model: GPVAEModel, batch: Batch, steps: int) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(2)
    n_obs = batch.observed.sum()
    for _ in range(steps):
        loss = -model.elbo(batch, generator=gen).elbo.sum() / n_obs
        opt.zero_grad()
        loss.backward()
        opt.step()


def _networks(D: int, L: int) -> tuple[MLPEncoder, MLPDecoder]:
    torch.manual_seed(1)
    return MLPEncoder(D, L, hidden=(64, 64)), MLPDecoder(L, D, hidden=(64, 64))


def test_gpvae_imputes_better_than_mean_and_plain_vae_and_learns_the_lengthscale() -> None:
    start = time.perf_counter()
    batch, y_true, _ = _gpvae_data()
    D, L = batch.num_features, 2
    missing = ~batch.observed
    mean_imp = batch.y.sum((0, 1)) / batch.observed.sum((0, 1))
    mae_mean = float((y_true - mean_imp)[missing].abs().mean())

    enc, dec = _networks(D, L)
    gp_prior = GPPrior(Matern32(lengthscale=INIT_LENGTHSCALE), L, backend="dense")
    gpvae = GPVAEModel(enc, StructuredPosterior(), gp_prior, dec, Gaussian(D, variance=0.1))
    _fit(gpvae, batch, steps=400)
    rec = gpvae.reconstruct(batch, num_samples=20, generator=torch.Generator().manual_seed(3))
    mae_gp = float((rec - y_true)[missing].abs().mean())

    enc, dec = _networks(D, L)
    plain_prior = GPPrior(White(1.0).freeze(), L)
    vae = GPVAEModel(enc, DiagonalPosterior(), plain_prior, dec, Gaussian(D, variance=0.1))
    _fit(vae, batch, steps=400)
    rec = vae.reconstruct(batch, num_samples=20, generator=torch.Generator().manual_seed(3))
    mae_vae = float((rec - y_true)[missing].abs().mean())

    lengthscales = [float(k.lengthscale.detach()) for k in gp_prior.kernels]  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    print(
        f"\nimputation MAE on missing entries: GP-VAE {mae_gp:.3f}, mean {mae_mean:.3f}, "
        f"plain VAE {mae_vae:.3f}; lengthscales {lengthscales} (init {INIT_LENGTHSCALE}, "
        f"true {TRUE_LENGTHSCALE}); {elapsed:.1f} s"
    )
    assert mae_gp <= 0.7 * mae_mean
    assert mae_gp <= 0.7 * mae_vae
    for ls in lengthscales:
        assert abs(ls - TRUE_LENGTHSCALE) < abs(INIT_LENGTHSCALE - TRUE_LENGTHSCALE) - 0.5


# --------------------------------------------------------------------------------------
# shapes, parts, and bad input


class _SingleOutput(nn.Module):
    """An encoder that wrongly returns one tensor."""

    def forward(self, y: Tensor, observed: Tensor) -> Tensor:
        return y[..., :2]


def _small_model(posterior: str = "structured", dtype: torch.dtype = torch.float32) -> GPVAEModel:
    torch.manual_seed(0)
    D, L = 3, 2
    fam = {
        "structured": StructuredPosterior(),
        "banded": BandedPosterior(),
        "diagonal": DiagonalPosterior(),
    }[posterior]
    outputs = 3 if posterior == "banded" else 2
    model = GPVAEModel(
        MLPEncoder(D, L, hidden=(16,), num_outputs=outputs),
        fam,
        GPPrior(Matern32(), L),
        MLPDecoder(L, D, hidden=(16,)),
        Gaussian(D),
        beta=0.5,
    )
    return model.to(dtype)


def _small_batch(dtype: torch.dtype = torch.float32) -> Batch:
    g = torch.Generator().manual_seed(0)
    y = torch.randn(4, 6, 3, generator=g, dtype=dtype)
    observed = torch.rand(4, 6, 3, generator=g) < 0.6
    valid = torch.ones(4, 6, dtype=torch.bool)
    valid[2, 4:] = False
    observed &= valid[..., None]
    return Batch.from_tensors(torch.where(observed, y, 0.0), observed=observed, valid=valid)


@pytest.mark.parametrize("posterior", ["structured", "banded", "diagonal"])
def test_elbo_parts_shapes_and_gradients(posterior: str) -> None:
    model = _small_model(posterior)
    batch = _small_batch()
    out = model.elbo(batch, num_samples=3, iwae=2, generator=torch.Generator().manual_seed(0))
    assert isinstance(out, ELBOResult)
    for t in (out.elbo, out.loglik, out.kl, out.iwae):
        assert t is not None
        assert t.shape == (4,)
        assert bool(torch.isfinite(t).all())
    torch.testing.assert_close(out.elbo, out.loglik - 0.5 * out.kl)
    out.bound.sum().backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, name
            assert bool(torch.isfinite(p.grad).all()), name
    assert model.elbo(batch).iwae is None


@pytest.mark.parametrize("beta", [1.0, 0.5, 0.0])
def test_elbo_is_loglik_minus_beta_kl_bit_for_bit(beta: float) -> None:
    """In training (no feature regression) the ELBO is ``loglik - beta * kl`` exactly; with
    beta = 1 the graph holds no product by beta nor a difference with a zero loss."""
    model = _small_model()
    model.beta = beta
    out = model.elbo(_small_batch(), generator=torch.Generator().manual_seed(3))
    assert torch.equal(out.elbo, out.loglik - beta * out.kl)
    ops = {type(out.elbo.grad_fn).__name__} | {
        type(f).__name__ for f, _ in out.elbo.grad_fn.next_functions if f is not None
    }
    assert ("MulBackward0" in ops) == (beta != 1.0)
    assert out.elbo.grad_fn.next_functions[0][0] is out.loglik.grad_fn


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_elbo_and_gradients_are_those_of_torch_where_bit_for_bit(
    dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The encoder's masked input and the likelihood's masked sum go through
    :func:`gpvae.batch.where_zero`: the same ELBO and parameter gradients, bit for bit, as
    with ``torch.where`` (junk values at unobserved entries included)."""
    batch = _small_batch(dtype)
    batch = Batch(batch.x, torch.where(batch.observed, batch.y, -3.0), batch.observed, batch.valid)

    def run() -> tuple[Tensor, list[Tensor]]:
        torch.manual_seed(0)
        model = _small_model(dtype=dtype)
        out = model.elbo(batch, num_samples=2, generator=torch.Generator().manual_seed(1))
        out.elbo.sum().backward()
        return out.elbo.detach(), [p.grad for p in model.parameters() if p.grad is not None]

    fast = run()
    for module in (core, likelihood_base):
        monkeypatch.setattr(
            module, "where_zero", lambda m, t: torch.where(m, t, torch.zeros_like(t))
        )
    ref = run()
    assert torch.equal(fast[0], ref[0])
    assert len(fast[1]) == len(ref[1]) > 0
    for a, b in zip(fast[1], ref[1]):
        assert torch.equal(a, b)


def test_padding_and_unobserved_values_do_not_change_the_elbo() -> None:
    model = _small_model()
    batch = _small_batch()
    junk = torch.where(batch.observed, batch.y, 7.0)
    x = batch.x.clone()
    x[2, 4:] = 100.0
    other = Batch(x=x, y=junk, observed=batch.observed, valid=batch.valid)
    a = model.elbo(batch, generator=torch.Generator().manual_seed(0))
    b = model.elbo(other, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a.kl, b.kl)
    torch.testing.assert_close(a.loglik, b.loglik)


def test_bad_input_raises_errors_naming_the_argument() -> None:
    model = _small_model()
    batch = _small_batch()
    B, N, _D = batch.y.shape
    with pytest.raises(ShapeError, match="y: expected 3 features"):
        model.elbo(Batch.from_tensors(torch.zeros(B, N, 4)))
    y_nan = batch.y.clone()
    y_nan[0, 0, 0] = math.nan
    with pytest.raises(ValidationError, match="y: expected finite"):
        model.elbo(Batch(x=batch.x, y=y_nan, observed=batch.observed, valid=batch.valid))
    with pytest.raises(ShapeError, match="observed"):
        model.elbo(Batch(x=batch.x, y=batch.y, observed=batch.observed[:, :4], valid=batch.valid))
    with pytest.raises(InputTypeError, match="observed"):
        model.elbo(Batch(x=batch.x, y=batch.y, observed=batch.observed.float(), valid=batch.valid))
    with pytest.raises(ShapeError, match="valid"):
        model.elbo(Batch(x=batch.x, y=batch.y, observed=batch.observed, valid=batch.valid[:2]))
    with pytest.raises(ShapeError, match="x"):
        model.elbo(Batch(x=batch.x[:, :3], y=batch.y, observed=batch.observed, valid=batch.valid))
    with pytest.raises(InputTypeError, match="y: expected dtype"):
        model.elbo(batch.to(dtype=torch.float64))
    with pytest.raises(InputTypeError, match="batch"):
        model.elbo(batch.y)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="num_samples"):
        model.elbo(batch, num_samples=0)
    with pytest.raises(InputTypeError, match="iwae"):
        model.elbo(batch, iwae=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="beta"):
        model.beta = -1.0
    with pytest.raises(InputTypeError, match="prior"):
        GPVAEModel(model.encoder, model.posterior, White(), model.decoder, model.likelihood)  # type: ignore[arg-type]
    bad_decoder = GPVAEModel(
        model.encoder, model.posterior, model.prior, MLPDecoder(2, 5), Gaussian(3)
    )
    with pytest.raises(ShapeError, match="params"):
        bad_decoder.elbo(batch)
    single = GPVAEModel(
        _SingleOutput(), model.posterior, model.prior, model.decoder, model.likelihood
    )
    with pytest.raises(GPVAEError, match="encoder"):
        single.elbo(batch)


@pytest.mark.parametrize("likelihood", ["gaussian-heteroscedastic", "student-t", "bernoulli"])
def test_other_likelihoods_and_encoders_train(likelihood: str) -> None:
    """A few Adam steps raise the ELBO with every likelihood (and the conv/partial encoders)."""
    torch.manual_seed(0)
    D, L = 3, 2
    batch = _small_batch()
    if likelihood == "bernoulli":
        y = (batch.y > 0).float()
        batch = Batch(x=batch.x, y=y, observed=batch.observed, valid=batch.valid)
        lik, encoder = Bernoulli(D), ConvEncoder(D, L, channels=16)
    elif likelihood == "student-t":
        lik, encoder = StudentT(D), PartialEncoder(D, L, hidden=(16,))
    else:
        lik, encoder = Gaussian(heteroscedastic=True), MLPEncoder(D, L, hidden=(16,))
    decoder = MLPDecoder(L, D, hidden=(16,), num_params=lik.num_params)
    model = GPVAEModel(encoder, StructuredPosterior(), GPPrior(Matern32(), L), decoder, lik)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def bound() -> float:
        with torch.no_grad():
            out = model.elbo(batch, num_samples=64, generator=torch.Generator().manual_seed(0))
        return float(out.elbo.sum())

    before = bound()
    gen = torch.Generator().manual_seed(1)
    for _ in range(30):
        loss = -model.elbo(batch, num_samples=2, generator=gen).elbo.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert bound() > before


def _quantiles_by_full_sort(samples: Tensor, probs: list[float]) -> list[Tensor]:
    """The reference: every draw sorted, then linear interpolation between neighbours."""
    s = samples.sort(dim=0).values
    S = s.shape[0]
    out = []
    for p in probs:
        lo = math.floor(p * (S - 1))
        hi = min(lo + 1, S - 1)
        frac = p * (S - 1) - lo
        out.append(s[lo] * (1 - frac) + s[hi] * frac)
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("S", [1, 2, 7, 64, 100])
def test_sorted_quantiles_equal_a_full_sort_bit_for_bit(dtype: torch.dtype, S: int) -> None:
    """The partial sort gives the full sort's quantiles exactly (ties, NaN and infinities
    included), and torch.quantile's linear interpolation up to rounding."""
    gen = torch.Generator().manual_seed(S)
    x = torch.randn((S, 6, 5, 3), generator=gen, dtype=dtype)
    x[:, 0] = torch.round(x[:, 0])  # many ties
    x[: S // 2, 1, 0] = float("nan")
    x[:1, 2, 1] = float("inf")
    x[-1:, 2, 2] = -float("inf")
    probs = [0.0, 0.025, 0.05, 0.5, 0.9, 0.95, 0.975, 1.0]
    got = sorted_quantiles(x, probs)
    want = _quantiles_by_full_sort(x, probs)
    for g, w in zip(got, want):
        assert g.dtype == dtype
        assert g.shape == x.shape[1:]
        torch.testing.assert_close(g, w, rtol=0, atol=0, equal_nan=True)
    finite = x[:, 3:]  # no NaN or infinities there
    ref = torch.quantile(finite, torch.tensor(probs, dtype=dtype), dim=0)
    for g, r in zip(sorted_quantiles(finite, probs), ref):
        torch.testing.assert_close(g, r)
    # with gradients the full sort is kept, and the quantiles are differentiable
    w = x[:, 4:].clone().requires_grad_(True)
    sorted_quantiles(w, [0.5])[0].sum().backward()
    assert w.grad is not None
    assert torch.isfinite(w.grad).all()


@pytest.mark.parametrize("S", [1, 5, 19, 21, 20, 64])
def test_predictive_quantile_positions_cover_a_new_draw_at_the_nominal_rate(S: int) -> None:
    """Between the "predictive" 5% and 95% quantiles of S draws, a new draw of the same
    distribution falls about 90% of the time whatever S: exactly where the positions are
    whole (S = 19), about so between them (S = 20, 64), (S - 1) / (S + 1) below S = 19 (the
    extremes). Between the linear ones 0.9 (S - 1) / (S + 1) of the time where those are
    whole (S = 1, 21), and well short of 90% at 20 or 64 draws. The positions are whole
    ranks of a full sort."""
    gen = torch.Generator().manual_seed(S)
    R = 100_000
    x = torch.randn((S + 1, R), generator=gen, dtype=torch.float64)
    draws, new = x[:S], x[S]
    cover = {}
    for positions in ("linear", "predictive"):
        lo, hi = sorted_quantiles(draws, (0.05, 0.95), positions)
        cover[positions] = float(((lo <= new) & (new <= hi)).double().mean())
    se3 = 3 * math.sqrt(0.09 / R)  # three standard errors of a 90% rate
    want = min(0.9, (S - 1) / (S + 1))
    tol = se3 if S <= 19 else se3 + 0.01  # else interpolated between two ranks
    assert abs(cover["predictive"] - want) < tol, (S, cover)
    if S in (1, 21):  # whole linear positions
        assert abs(cover["linear"] - 0.9 * (S - 1) / (S + 1)) < se3, (S, cover)
    if S >= 20:  # the linear positions fall short of nominal by far more than that
        assert cover["linear"] < 0.9 - 0.015 < cover["predictive"] - 0.005, cover
    # the positions p (S + 1) - 1, clamped to the draws
    s = draws.sort(dim=0).values
    lo, hi, low = sorted_quantiles(draws, (1 / (S + 1), S / (S + 1), 0.0), "predictive")
    torch.testing.assert_close(lo, s[0], rtol=0, atol=0)
    torch.testing.assert_close(hi, s[S - 1], rtol=0, atol=0)
    torch.testing.assert_close(low, s[0], rtol=0, atol=0)
    with pytest.raises(ValidationError, match="positions"):
        sorted_quantiles(draws, (0.5,), "weibull")
