"""Image CNN encoder and decoder: shapes, masking, gradients, and use inside GPVAEModel."""

from __future__ import annotations

import pytest
import torch

from gpvae.batch import Batch
from gpvae.errors import ShapeError, ValidationError
from gpvae.gp.prior import GPPrior
from gpvae.kernels import Cauchy, Matern32, White
from gpvae.likelihoods import Bernoulli, Gaussian
from gpvae.model import GPVAEModel
from gpvae.nets import ImageDecoder, ImageEncoder
from gpvae.posteriors import BandedPosterior, DiagonalPosterior, StructuredPosterior, StructuredQ

B, N, L = 2, 5, 3
H, W = 12, 12
D = H * W


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    observed = torch.rand(B, N, D, generator=g) < 0.5
    observed[0, 2] = False  # a frame with no observed pixel
    y = torch.where(observed, (torch.rand(B, N, D, generator=g) < 0.3).float(), 0.0)
    return y, observed


def _encoder(num_outputs: int = 2, shape: tuple[int, int] = (H, W)) -> ImageEncoder:
    return ImageEncoder(shape, L, channels=(4, 8), hidden=16, num_outputs=num_outputs)


@pytest.mark.parametrize("num_outputs", [2, 3], ids=["mean-var", "banded"])
@pytest.mark.parametrize("shape", [(12, 12), (28, 28), (9, 13)], ids=["12x12", "28x28", "9x13"])
def test_encoder_shapes_and_positive_variance(num_outputs: int, shape: tuple[int, int]) -> None:
    torch.manual_seed(0)
    enc = _encoder(num_outputs, shape)
    d = shape[0] * shape[1]
    y = torch.rand(B, N, d)
    observed = torch.rand(B, N, d) < 0.5
    out = enc(y, observed)
    assert len(out) == num_outputs
    for t in out:
        assert t.shape == (B, N, L)
        assert bool(torch.isfinite(t).all())
    assert bool((out[1] >= enc.min_var).all())


def test_encoder_never_sees_unobserved_values() -> None:
    torch.manual_seed(0)
    enc = _encoder(3)
    y, observed = _inputs()
    noisy = torch.where(observed, y, torch.randn(B, N, D) * 100)
    for a, b in zip(enc(y, observed), enc(noisy, observed)):
        torch.testing.assert_close(a, b)


def test_encoder_sees_the_mask() -> None:
    """Two frames with the same zero values but different masks get different outputs."""
    torch.manual_seed(0)
    enc = _encoder()
    y = torch.zeros(1, 2, D)
    observed = torch.zeros(1, 2, D, dtype=torch.bool)
    observed[0, 1, : D // 2] = True  # frame 1: black pixels observed; frame 0: nothing
    mean, _ = enc(y, observed)
    assert not torch.allclose(mean[0, 0], mean[0, 1])


def test_encoder_is_per_frame() -> None:
    """Each frame's output depends on that frame only (batched == looped over frames)."""
    torch.manual_seed(0)
    enc = _encoder(3)
    y, observed = _inputs()
    full = enc(y, observed)
    for n in range(N):
        single = enc(y[:, n : n + 1], observed[:, n : n + 1])
        for a, b in zip(full, single):
            torch.testing.assert_close(a[:, n : n + 1], b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(12, 12), (28, 28), (9, 13)], ids=["12x12", "28x28", "9x13"])
def test_decoder_shapes(shape: tuple[int, int]) -> None:
    torch.manual_seed(0)
    dec = ImageDecoder(L, shape, channels=(8, 4), hidden=16)
    z = torch.randn(4, B, N, L)
    out = dec(z)
    assert isinstance(out, torch.Tensor)
    assert out.shape == (4, B, N, shape[0] * shape[1])
    assert dec(z[0]).shape == (B, N, shape[0] * shape[1])


def test_decoder_is_per_point_and_multi_param() -> None:
    torch.manual_seed(0)
    dec = ImageDecoder(L, (H, W), channels=(8, 4), hidden=16, num_params=2)
    z = torch.randn(B, N, L)
    loc, scale = dec(z)
    assert loc.shape == scale.shape == (B, N, D)
    loc1, _ = dec(z[1:2, 3:4])
    torch.testing.assert_close(loc1, loc[1:2, 3:4], rtol=1e-5, atol=1e-6)


def test_argument_and_shape_errors() -> None:
    with pytest.raises(ValidationError, match="image_shape"):
        ImageEncoder((28,), L)
    with pytest.raises(ValidationError, match="channels"):
        ImageEncoder((H, W), L, channels=())
    with pytest.raises(ValidationError, match="num_outputs"):
        ImageEncoder((H, W), L, num_outputs=4)
    with pytest.raises(ShapeError, match="y"):
        _encoder()(torch.zeros(B, N, D + 1), torch.zeros(B, N, D + 1, dtype=torch.bool))
    with pytest.raises(ShapeError, match="z"):
        ImageDecoder(L, (H, W))(torch.zeros(B, N, L + 1))


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    enc, dec = _encoder(3), ImageDecoder(L, (H, W), channels=(8, 4), hidden=16)
    y, observed = _inputs()
    mean, var, off = enc(y, observed)
    logits = dec(mean + var.sqrt() + off)
    assert isinstance(logits, torch.Tensor)
    logits.square().mean().backward()
    for module in (enc, dec):
        for name, p in module.named_parameters():
            assert p.grad is not None, name
            assert bool(torch.isfinite(p.grad).all()), name
            assert float(p.grad.abs().sum()) > 0, name


def _model(posterior: str) -> GPVAEModel:
    if posterior == "structured":
        post, kernel, k = StructuredPosterior(), Matern32(lengthscale=2.0), 2
    elif posterior == "banded":
        post, kernel, k = BandedPosterior(), Cauchy(lengthscale=2.0), 3
    else:
        post, kernel, k = DiagonalPosterior(), White(), 2
    enc = _encoder(k)
    dec = ImageDecoder(L, (H, W), channels=(8, 4), hidden=16)
    return GPVAEModel(enc, post, GPPrior(kernel, L), dec, Bernoulli(D), beta=0.8)


def _sequences(seed: int = 0, num: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary frames of a bar moving across the image; 60% of pixels hidden."""
    g = torch.Generator().manual_seed(seed)
    frames = torch.zeros(num, N, H, W)
    start = torch.randint(0, W - N, (num,), generator=g)
    for i in range(num):
        for t in range(N):
            frames[i, t, :, int(start[i]) + t] = 1.0
    X = frames.reshape(num, N, D)
    observed = torch.rand(num, N, D, generator=g) > 0.6
    observed[0, 1] = False  # a frame with nothing observed
    return X, observed


@pytest.mark.parametrize("posterior", ["structured", "banded", "diagonal"])
def test_works_in_gpvae_model_and_learns(posterior: str) -> None:
    torch.manual_seed(0)
    model = _model(posterior)
    X, observed = _sequences()
    batch = Batch.from_tensors(X * observed, observed)
    g = torch.Generator().manual_seed(1)
    res = model.elbo(batch, num_samples=2, generator=g)
    assert res.elbo.shape == (X.shape[0],)
    assert bool(torch.isfinite(res.elbo).all())
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    n_obs = int(observed.sum())
    first = None
    for _ in range(40):
        opt.zero_grad()
        loss = -model.elbo(batch, generator=g).elbo.sum() / n_obs
        loss.backward()
        opt.step()
        first = float(loss.detach()) if first is None else first
    with torch.no_grad():
        final = float(-model.elbo(batch, num_samples=8, generator=g).elbo.sum() / n_obs)
    assert final < first - 0.1  # the bound improved clearly
    recon = model.reconstruct(batch, num_samples=4, generator=g)
    assert recon.shape == X.shape
    assert bool(((recon >= 0) & (recon <= 1)).all())


def test_structured_posterior_excludes_empty_frames() -> None:
    """A frame with nothing observed gets no pseudo-observation (var = +inf) in q."""
    torch.manual_seed(0)
    model = _model("structured")
    X, observed = _sequences()
    q = model.encode(Batch.from_tensors(X * observed, observed))
    assert isinstance(q, StructuredQ)
    var = q.gp.var  # (B, N, L) pseudo-observation variances
    assert bool(torch.isinf(var[0, 1]).all())
    assert bool(torch.isfinite(var[0, 0]).all())


def test_gaussian_likelihood_with_two_parameter_decoder() -> None:
    """The decoder also serves likelihoods with several parameters per pixel."""
    torch.manual_seed(0)
    lik = Gaussian(D, heteroscedastic=True)
    dec = ImageDecoder(L, (H, W), channels=(8, 4), hidden=16, num_params=lik.num_params)
    model = GPVAEModel(_encoder(), StructuredPosterior(), GPPrior(Matern32(), L), dec, lik)
    X, observed = _sequences()
    res = model.elbo(Batch.from_tensors(X * observed, observed))
    assert bool(torch.isfinite(res.elbo).all())
