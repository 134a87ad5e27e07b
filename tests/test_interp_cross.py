"""``interp_cross``: a feature regression in the interpolation fusion, its residual
interpolated in time.

A block of one feature hidden while the other features are observed (BeijingAir's stations)
is best filled by following the other features through the gap (BRITS's feature regression)
at the level the feature held against them at its neighbours: ``p + interp(y - p)``. Covers
the regression (reads only the other features' seen values), the gradient-carrying
interpolation, the start at the plain fusion, a regression the plain fusion cannot learn,
the argument checks, saving, and the estimator's quality on blocks of features that move
together, white in time, each at its own level.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gpvae import GPVAE
from gpvae.app.baselines import impute_linear
from gpvae.batch import Batch
from gpvae.data.interpolate import neighbour_interpolation
from gpvae.errors import GPVAEError
from gpvae.gp import GPPrior
from gpvae.kernels import Matern32
from gpvae.likelihoods import Gaussian
from gpvae.model import GPVAEModel
from gpvae.model.core import one_sided
from gpvae.nets import InterpolationFusion, MLPDecoder, MLPEncoder
from gpvae.nets.interp import cross_options
from gpvae.posteriors import StructuredPosterior

W_MIX = np.random.default_rng(123).standard_normal((2, 6))  # the same mixing in every set


def _rough(n: int, T: int, seed: int, offset: float = 0.0) -> np.ndarray:
    """(n, T, 6): six mixtures of two latent paths that are white in time (so a feature's
    own neighbours in time say little about its value), plus a level of each series and
    feature, constant in time, of standard deviation ``offset`` (which the other features
    say nothing about); observed everywhere."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, T, 2))
    level = offset * rng.standard_normal((n, 1, 6))
    return np.asarray(z @ W_MIX + level + 0.05 * rng.standard_normal((n, T, 6)))


def _hide_blocks(full: np.ndarray, seed: int, length: int = 6) -> np.ndarray:
    """One block of ``length`` steps of one random feature hidden in every series."""
    rng = np.random.default_rng(seed)
    X = full.copy()
    n, T, D = X.shape
    for i in range(n):
        s, d = rng.integers(0, T - length + 1), rng.integers(0, D)
        X[i, s : s + length, d] = np.nan
    return X


def test_the_regression_reads_only_the_other_features_seen_values() -> None:
    torch.manual_seed(0)
    fuse = InterpolationFusion(3, hidden=(8,), cross=True)
    with torch.no_grad():
        for p in fuse.parameters():
            p.add_(0.1)  # a regression and a net that act
    seen = torch.rand(1, 4, 3, generator=torch.Generator().manual_seed(1)) < 0.6
    y = torch.randn(1, 4, 3)
    p = fuse.regression(torch.where(seen, y, torch.nan), seen)
    torch.testing.assert_close(p, fuse.regression(torch.where(seen, y, 1e6), seen))
    assert torch.isfinite(p).all()  # unseen values are never read
    own = y.clone()
    own[..., 0] += 5.0  # feature 0's own values: its regression does not move
    p_own = fuse.regression(own, seen)
    torch.testing.assert_close(p_own[..., 0], fuse.regression(y, seen)[..., 0])
    assert not torch.allclose(p_own[..., 1:][seen[..., :1].expand(1, 4, 2)],
                              p[..., 1:][seen[..., :1].expand(1, 4, 2)])  # fmt: skip
    decoded = torch.randn(2, 1, 4, 3)
    x = torch.arange(4.0).view(1, 4, 1)
    value, gap = neighbour_interpolation(x, y, seen)
    p_near = neighbour_interpolation(x, p, seen, grad=True)[0]
    out = fuse(decoded, value, gap, seen, p, p_near)
    torch.testing.assert_close(out[..., seen], decoded[..., seen])  # seen: the decoder's
    with pytest.raises(ValueError, match=r"^regressed"):
        fuse(decoded, value, gap, seen)


def test_a_zero_regression_is_the_plain_fusion() -> None:
    """At the start (regression at 0) the cross fusion predicts what the plain one does."""
    torch.manual_seed(0)
    plain, cross = InterpolationFusion(3, hidden=(8,)), InterpolationFusion(3, (8,), cross=True)
    seen = torch.rand(2, 6, 3, generator=torch.Generator().manual_seed(2)) < 0.5
    y = torch.randn(2, 6, 3)
    x = torch.arange(6.0).view(1, 6, 1).expand(2, 6, 1)
    value, gap = neighbour_interpolation(x, y, seen)
    decoded = torch.randn(2, 6, 3)
    p = cross.regression(y, seen)
    p_near = neighbour_interpolation(x, p, seen, grad=True)[0]
    torch.testing.assert_close(
        cross(decoded, value, gap, seen, p, p_near), plain(decoded, value, gap, seen)
    )


def test_the_interpolation_passes_the_gradient_only_when_asked() -> None:
    x = torch.arange(5.0).view(1, 5, 1)
    y = torch.randn(1, 5, 2, requires_grad=True)
    seen = torch.tensor([[[True, True], [False, True], [True, False], [False, False],
                          [True, True]]])  # fmt: skip
    assert not neighbour_interpolation(x, y, seen)[0].requires_grad
    value = neighbour_interpolation(x, y, seen, grad=True)[0]
    value[0, 1, 0].backward()  # halfway between steps 0 and 2 of feature 0
    expect = torch.zeros(1, 5, 2)
    expect[0, 0, 0] = expect[0, 2, 0] = 0.5
    torch.testing.assert_close(y.grad, expect)


@pytest.mark.parametrize("cross", [False, True])
def test_only_the_cross_fusion_learns_a_feature_from_the_others_at_the_same_step(
    cross: bool,
) -> None:
    """With a decoder that says nothing (0) and features white in time, a hidden entry can be
    predicted only from the other features at its step: the cross fusion learns it, the
    plain one stays near the error of the interpolation."""
    torch.manual_seed(0)
    fuse = InterpolationFusion(6, hidden=(32,), cross=cross)
    opt = torch.optim.Adam(fuse.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    x = torch.arange(12.0).view(1, 12, 1).expand(32, 12, 1)

    def predict(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        y = torch.as_tensor(_rough(32, 12, seed), dtype=torch.float32)
        seen = torch.rand(y.shape, generator=gen) > 0.2
        value, gap = neighbour_interpolation(x, y, seen)
        extra: tuple[torch.Tensor, ...] = ()
        if cross:
            p = fuse.regression(y, seen)
            extra = (p, neighbour_interpolation(x, p, seen, grad=True)[0])
        return fuse(torch.zeros_like(y), value, gap, seen, *extra), y, seen, value

    for step in range(300):
        out, y, seen, _ = predict(step)
        loss = (out - y)[~seen].abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out, y, seen, value = predict(10_000)
    mae = (out - y)[~seen].abs().mean().item()
    interp = (value - y)[~seen].abs().mean().item()
    if cross:
        assert mae < 0.3 * interp, (mae, interp)
    else:
        assert mae > 0.6 * interp, (mae, interp)


def test_interp_cross_arguments_are_checked() -> None:
    with pytest.raises(GPVAEError, match=r"^interp_cross"):
        GPVAE(interp_cross=True)  # needs interp_skip
    with pytest.raises(GPVAEError, match=r"^interp_cross"):
        GPVAE(interp_skip=True, interp_cross="yes")
    parts = (MLPEncoder(3, 2), StructuredPosterior(), GPPrior(Matern32(), 2), MLPDecoder(2, 3))
    with pytest.raises(GPVAEError, match=r"^interp_cross"):
        GPVAEModel(*parts, Gaussian(3), interp_skip=True, interp_space=5.0, interp_cross=True)
    with pytest.raises(GPVAEError, match=r"^interp_cross"):
        GPVAEModel(*parts, Gaussian(3), interp_skip=True, interp_cross=1)  # type: ignore[arg-type]


def test_interp_cross_beats_the_plain_fusion_on_blocks(tmp_path: Path) -> None:
    """Blocks of one feature hidden among features that move together, white in time, each
    at its own level: with the same budget, the cross fusion's imputation (the others' move
    plus the feature's level from its neighbours) is well below the plain one's and half
    linear interpolation's; observed values are kept; the setting is saved. (Seen: 0.49
    against 0.87 and 1.23.)"""
    full = _rough(96, 16, seed=0, offset=1.0)
    X = _hide_blocks(full, seed=1)
    full_val = _rough(32, 16, seed=2, offset=1.0)
    X_val = _hide_blocks(full_val, seed=3)
    full_test = _rough(32, 16, seed=4, offset=1.0)
    X_test = _hide_blocks(full_test, seed=5)
    miss = np.isnan(X_test)
    maes: dict[bool, float] = {}
    for cross in (False, True):
        est = GPVAE(
            latent_dim=2, hidden=(32,), epochs=30, batch_size=16, lr=3e-3, patience=None,
            mask_rate=0.2, mask_pattern="blocks", block_lengths=(3, 8), interp_skip=True,
            interp_cross=cross, progress=False, seed=0,
        ).fit(X, X_val=X_val, X_val_target=full_val)  # fmt: skip
        mean = np.asarray(est.impute(X_test, num_samples=4).mean)
        assert np.array_equal(mean[~miss], X_test[~miss])  # observed untouched
        maes[cross] = np.abs(mean - full_test)[miss].mean()
    lin = np.abs(impute_linear(X_test) - full_test)[miss].mean()
    assert maes[True] < 0.65 * maes[False], (maes, lin)
    assert maes[True] < 0.5 * lin, (maes, lin)
    est.save(tmp_path / "m")
    back = GPVAE.load(tmp_path / "m")
    assert back.interp_cross
    assert back.model_.interp_fusion.cross
    np.testing.assert_allclose(
        back.impute(X_test, num_samples=4).mean, est.impute(X_test, num_samples=4).mean
    )


# ----------------------------------------------------------- the regression's options


def test_cross_options_are_parsed_and_checked() -> None:
    assert cross_options(False) is None
    assert cross_options(True) == frozenset()
    assert cross_options("fill+fade") == {"fill", "fade"}
    for bad in ("", "fill+fill", "fill,fade", "FIT", 1, None):
        with pytest.raises(ValueError, match=r"^interp_cross"):
            cross_options(bad)
    with pytest.raises(GPVAEError, match=r"^interp_cross"):
        GPVAE(interp_skip=True, interp_cross="fill+nope")
    assert GPVAE(interp_skip=True, interp_cross="fit+window").interp_cross == "fit+window"
    parts = (MLPEncoder(3, 2), StructuredPosterior(), GPPrior(Matern32(), 2), MLPDecoder(2, 3))
    with pytest.raises(GPVAEError, match=r"^interp_cross"):
        GPVAEModel(*parts, Gaussian(3), interp_skip=True, interp_cross="fil")


def _acting(options: str, D: int = 4) -> InterpolationFusion:
    torch.manual_seed(0)
    fuse = InterpolationFusion(D, hidden=(8,), cross=options)
    with torch.no_grad():
        fuse.regress.weight.normal_()  # type: ignore[union-attr]
    return fuse


def test_fill_reads_the_others_interpolation_where_unseen_and_never_the_own_feature() -> None:
    fuse = _acting("fill")
    y = torch.randn(1, 5, 4)
    seen = torch.ones(1, 5, 4, dtype=torch.bool)
    seen[0, 2, 1] = False  # feature 1 unseen at step 2
    filled = torch.randn(1, 5, 4)
    p = fuse.regression(torch.where(seen, y, torch.nan), seen, filled)
    moved = filled.clone()
    moved[0, 2, 1] += 3.0
    q = fuse.regression(torch.where(seen, y, torch.nan), seen, moved)
    assert not torch.allclose(p[0, 2, [0, 2, 3]], q[0, 2, [0, 2, 3]])  # the others read it
    torch.testing.assert_close(p[0, 2, 1], q[0, 2, 1])  # its own fill is never read
    filled_seen = filled.clone()
    filled_seen[0, 0] += 9.0  # a seen entry's fill is never read
    torch.testing.assert_close(p, fuse.regression(y, seen, filled_seen))
    with pytest.raises(ValueError, match=r"^filled"):
        fuse.regression(y, seen)
    # without fill an unseen entry reads 0 whatever the fill
    plain = _acting("window")
    torch.testing.assert_close(plain.regression(y, seen, filled), plain.regression(y, seen, moved))


def test_window_reads_the_others_at_the_neighbouring_steps_only() -> None:
    fuse = _acting("window")
    seen = torch.ones(1, 6, 4, dtype=torch.bool)
    y = torch.randn(1, 6, 4)
    p = fuse.regression(y, seen)
    z = y.clone()
    z[0, 3, 2] += 1.0  # feature 2 at step 3
    q = fuse.regression(z, seen)
    changed = (p - q).abs() > 1e-6
    expect = torch.zeros_like(changed)
    expect[0, 2:5, [0, 1, 3]] = True  # the other features at steps 2, 3, 4
    assert torch.equal(changed, expect)


def test_one_sided_marks_entries_with_a_neighbour_on_one_side() -> None:
    x = torch.arange(6.0).view(1, 6, 1)
    seen = torch.tensor([[[True, False], [False, False], [True, False], [False, True],
                          [False, False], [False, False]]])  # fmt: skip
    gap = neighbour_interpolation(x, torch.zeros(1, 6, 2), seen)[1]
    got = one_sided(x, seen, None, gap)
    expect = torch.tensor([[[True, True], [False, True], [True, True], [True, False],
                            [True, True], [True, True]]])  # fmt: skip
    # feature 0: step 0 has only step 2 after it, step 1 lies between 0 and 2, steps 2-5
    # have only earlier neighbours; feature 1: steps 0-2 and 4-5 see step 3 on one side,
    # step 3 (its only seen entry) has no neighbour at all
    assert torch.equal(got, expect)


def test_fade_moves_the_base_from_the_interpolated_residual_to_the_regression() -> None:
    fuse = _acting("fade", D=3)
    seen = torch.rand(2, 8, 3, generator=torch.Generator().manual_seed(4)) < 0.5
    y, decoded = torch.randn(2, 8, 3), torch.randn(2, 8, 3)
    x = torch.arange(8.0).view(1, 8, 1).expand(2, 8, 1)
    value, gap = neighbour_interpolation(x, y, seen)
    p = fuse.regression(y, seen)
    p_near = neighbour_interpolation(x, p, seen, grad=True)[0]
    sides = one_sided(x, seen, None, gap)
    near = torch.isfinite(gap) & ~seen
    start = fuse(decoded, value, gap, seen, p, p_near, sides)  # rates near 0: no fade yet
    plain = _acting("fill", D=3)  # the same weights
    plain.regress.load_state_dict(fuse.regress.state_dict())  # type: ignore[union-attr]
    no_fade = plain(decoded, value, gap, seen, p, p_near)
    torch.testing.assert_close(start[near], no_fade[near], atol=0.1, rtol=0.0)
    with torch.no_grad():
        fuse.fade_rate.fill_(2.0)  # type: ignore[union-attr]  # rate e^15: faded out
    torch.testing.assert_close(fuse(decoded, value, gap, seen, p, p_near, sides)[near], p[near])
    with pytest.raises(ValueError, match=r"^one_sided"):
        fuse(decoded, value, gap, seen, p, p_near)


def test_fit_adds_the_regressions_error_on_every_seen_entry_in_training() -> None:
    torch.manual_seed(0)
    parts = (MLPEncoder(3, 2), StructuredPosterior(), GPPrior(Matern32(), 2), MLPDecoder(2, 3))
    model = GPVAEModel(*parts, Gaussian(3), interp_skip=True, interp_cross="fit")
    fuse = model.interp_fusion
    assert isinstance(fuse, InterpolationFusion)
    with torch.no_grad():
        fuse.regress.weight.normal_()  # type: ignore[union-attr]
    y = torch.randn(2, 5, 3)
    observed = torch.rand(2, 5, 3, generator=torch.Generator().manual_seed(5)) < 0.7
    batch = Batch(torch.arange(5.0).view(1, 5, 1).expand(2, 5, 1), y, observed,
                  torch.ones(2, 5, dtype=torch.bool))  # fmt: skip
    p = fuse.regression(y, observed)
    expect = torch.where(observed, (y - p).abs(), 0.0).sum(dim=(-2, -1))
    torch.testing.assert_close(model.cross_fit(batch, batch), expect)
    model.eval()  # not in evaluation: the ELBO is the ELBO
    g = torch.Generator().manual_seed(0)
    a = model.elbo(batch, generator=g)
    torch.testing.assert_close(a.elbo, a.loglik - model.beta * a.kl)
    model.train()
    model.mask_rate = 0.0
    b = model.elbo(batch, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(b.elbo, b.loglik - model.beta * b.kl - expect)
    b.elbo.sum().backward()
    assert fuse.regress.weight.grad is not None  # type: ignore[union-attr]
    other = GPVAEModel(*parts, Gaussian(3), interp_skip=True, interp_cross=True)
    assert torch.equal(other.cross_fit(batch, batch), torch.zeros(2))


def test_one_regression_per_step_gives_the_loss_and_gradients_of_two() -> None:
    # The ELBO computes the interpolation and the regression once and gives them to both the
    # fusion and the fit term; the reference computes them twice, each from its own mask as
    # before: the fusion's from ``observed`` (padding steps dropped inside the
    # interpolation), the fit term's from ``observed & valid``. A Batch never marks padding
    # observed, so the two masks agree; the series here are padded to make sure.
    torch.manual_seed(0)
    parts = (MLPEncoder(3, 2), StructuredPosterior(), GPPrior(Matern32(), 2), MLPDecoder(2, 3))
    model = GPVAEModel(
        *parts, Gaussian(3), interp_skip=True, interp_cross="fill+fade+fit", mask_rate=0.3
    ).double()
    fuse = model.interp_fusion
    assert isinstance(fuse, InterpolationFusion)
    with torch.no_grad():
        for prm in fuse.parameters():
            prm.normal_(0.0, 0.3)
    B, N, D = 3, 7, 3
    gen = torch.Generator().manual_seed(4)
    y = torch.randn(B, N, D, generator=gen, dtype=torch.float64)
    observed = torch.rand(B, N, D, generator=gen) < 0.6
    valid = torch.ones(B, N, dtype=torch.bool)
    valid[1, 5:] = False
    valid[2, 4:] = False
    observed &= valid[..., None]
    x = torch.arange(float(N), dtype=torch.float64).view(1, N, 1).expand(B, N, 1)
    batch = Batch(x, y, observed, valid)
    model.train()

    got = model.elbo(batch, num_samples=2, generator=torch.Generator().manual_seed(9))
    params = [prm for prm in model.parameters() if prm.requires_grad]
    grad_got = torch.autograd.grad(got.elbo.sum(), params, allow_unused=True)

    g = torch.Generator().manual_seed(9)  # the same draws as elbo's, in the same order
    seen = model._training_input(batch, g)
    q = model.encode(seen)
    z = q.rsample(2, g)
    value, gap = neighbour_interpolation(seen.x, seen.y, seen.observed, seen.valid)
    p_fuse = fuse.regression(
        seen.y, seen.observed & seen.valid[..., None], torch.where(gap.isfinite(), value, 0.0)
    )
    both = seen.observed & seen.valid[..., None]
    value2, gap2 = neighbour_interpolation(seen.x, seen.y, both, seen.valid)
    p_fit = fuse.regression(seen.y, both, torch.where(gap2.isfinite(), value2, 0.0))
    torch.testing.assert_close(p_fuse, p_fit, rtol=0, atol=0)
    p_near = neighbour_interpolation(seen.x, p_fuse, seen.observed, seen.valid, grad=True)[0]
    sides = one_sided(seen.x, seen.observed, seen.valid, gap)
    loc = model.decoder(z)
    assert isinstance(loc, torch.Tensor)  # Gaussian(3): the location only
    fused = fuse(loc, value, gap, seen.observed, p_fuse, p_near, sides)
    ll = model.log_likelihood(fused, batch).mean(0)
    target = batch.observed & batch.valid[..., None]
    fit = torch.where(target, (batch.y - p_fit).abs(), 0.0).sum(dim=(-2, -1))
    expect = ll - model.beta * q.kl() - fit
    torch.testing.assert_close(got.elbo, expect)
    grad_expect = torch.autograd.grad(expect.sum(), params, allow_unused=True)
    for a, b in zip(grad_got, grad_expect, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("options", ["fill+window+fade+fit"])
def test_the_options_train_save_and_load(tmp_path: Path, options: str) -> None:
    full = _rough(48, 12, seed=0, offset=1.0)
    X = _hide_blocks(full, seed=1, length=4)
    full_val = _rough(16, 12, seed=2, offset=1.0)
    X_val = _hide_blocks(full_val, seed=3, length=4)
    est = GPVAE(
        latent_dim=2, hidden=(16,), epochs=3, batch_size=16, patience=None, mask_rate=0.2,
        mask_pattern="blocks", block_lengths=(3, 6), interp_skip=True, interp_cross=options,
        progress=False, seed=0,
    ).fit(X, X_val=X_val, X_val_target=full_val)  # fmt: skip
    mean = np.asarray(est.impute(X_val, num_samples=2).mean)
    assert np.isfinite(mean).all()
    est.save(tmp_path / "m")
    back = GPVAE.load(tmp_path / "m")
    assert back.interp_cross == options
    np.testing.assert_allclose(back.impute(X_val, num_samples=2).mean, mean)
