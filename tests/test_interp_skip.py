"""The interpolation skip: a decoder that predicts a residual on per-feature interpolation.

Covers :func:`gpvae.data.interpolate.neighbour_interpolation` (against a float64 loop
reference), the model's ``interp_skip`` (a zero residual reproduces linear interpolation at
missing entries; forecasts carry the last value; training scores honest predictions) and the
estimator's ``interp_skip`` (quality against linear interpolation on correlated sparse
features, saved and loaded).
"""

from __future__ import annotations

import math
import warnings
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
from gpvae.likelihoods import Bernoulli, Gaussian
from gpvae.model import GPVAEModel
from gpvae.nets import InterpolationFusion, MLPDecoder, MLPEncoder
from gpvae.posteriors import StructuredPosterior


def _reference(
    x: np.ndarray, y: np.ndarray, obs: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Loop over every entry: neighbours strictly before / after, linear in x[..., 0];
    the distance to the nearer one."""
    B, N, D = y.shape
    out, gap = np.zeros((B, N, D)), np.full((B, N, D), np.inf)
    for b in range(B):
        for d in range(D):
            steps = [n for n in range(N) if obs[b, n, d] and valid[b, n]]
            for n in range(N):
                before = [m for m in steps if m < n]
                after = [m for m in steps if m > n]
                if before and after:
                    p, q = before[-1], after[0]
                    t, tp, tq = x[b, n, 0], x[b, p, 0], x[b, q, 0]
                    out[b, n, d] = y[b, p, d] + (t - tp) / (tq - tp) * (y[b, q, d] - y[b, p, d])
                elif before:
                    out[b, n, d] = y[b, before[-1], d]
                elif after:
                    out[b, n, d] = y[b, after[0], d]
                near = [abs(x[b, n, 0] - x[b, m, 0]) for m in before[-1:] + after[:1]]
                gap[b, n, d] = min(near, default=np.inf)
    return out, gap


def test_neighbour_interpolation_matches_the_loop_reference() -> None:
    g = torch.Generator().manual_seed(0)
    B, N, D = 4, 17, 5
    x = torch.cumsum(torch.rand(B, N, 1, generator=g, dtype=torch.float64) + 0.05, dim=1)
    y = torch.randn(B, N, D, generator=g, dtype=torch.float64)
    obs = torch.rand(B, N, D, generator=g) < 0.3
    obs[0, :, 0] = False  # never observed
    obs[1, :, 1] = False
    obs[1, 6, 1] = True  # observed once
    valid = torch.ones(B, N, dtype=torch.bool)
    valid[2, 12:] = False  # padding: observed flags there are ignored
    obs[2, 14, :] = True
    y_nan = torch.where(obs, y, torch.nan)  # unobserved values are never read
    out, gap = neighbour_interpolation(x, y_nan, obs, valid)
    ref, ref_gap = _reference(x.numpy(), y.numpy(), obs.numpy(), valid.numpy())
    np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(gap.numpy(), ref_gap, rtol=0, atol=1e-12)
    assert (out[0, :, 0] == 0).all()
    assert (out[1, :, 1] == torch.where(torch.arange(N) == 6, 0.0, y[1, 6, 1])).all()
    # at missing entries it is linear interpolation (constant beyond the ends)
    full = [0, 1, 3]  # the unpadded series
    X = torch.where(obs, y, torch.nan)[full].numpy()
    lin = impute_linear(X, x[full, :, 0].numpy())
    seen = ~np.isnan(X).all(axis=1, keepdims=True) & np.isnan(X)
    np.testing.assert_allclose(out[full].numpy()[seen], lin[seen], atol=1e-12)
    # an observed entry is interpolated from its neighbours, not from itself
    b = 3
    n, d = (int(v) for v in obs[b].nonzero()[2])
    loo = obs.clone()
    loo[b, n, d] = False
    assert out[b, n, d] == neighbour_interpolation(x, y, loo)[0][b, n, d]
    assert not any(t.requires_grad for t in neighbour_interpolation(x, y.requires_grad_(), obs))


def test_neighbour_interpolation_on_a_field_uses_each_sites_own_steps() -> None:
    """A space x time batch (time-major, as field_batch lays it out): each site's entries
    are interpolated in time from that site's observed entries only, as if the site were a
    series of its own; the points' order along N does not matter."""
    from gpvae.data.spatial import field_batch

    rng = np.random.default_rng(1)
    T, S, D, W = 11, 4, 3, 6
    values = rng.normal(size=(T, S, D))
    values[rng.random((T, S, D)) < 0.4] = np.nan
    values[:, 2, 1] = np.nan  # a site's feature never observed
    xy = rng.normal(size=(S, 2)) * 10
    times = np.cumsum(rng.random(T) + 0.5)
    batch = field_batch(values, xy, times, [0, 5, 8], W, dtype=torch.float64)  # 8: padded
    out, gap = neighbour_interpolation(batch.x, batch.y, batch.observed, batch.valid)
    for b in range(3):
        for s in range(S):
            rows = torch.arange(W) * S + s  # site s at every step of window b
            v = batch.valid[b, rows]  # padding steps (window 8 is cut at T) are never read
            one = neighbour_interpolation(
                batch.x[b, rows][None, :, 2:],
                batch.y[b, rows][None],
                batch.observed[b, rows][None],
                batch.valid[b, rows][None],
            )
            np.testing.assert_allclose(out[b, rows][v].numpy(), one[0][0][v].numpy(), atol=1e-12)
            np.testing.assert_allclose(gap[b, rows][v].numpy(), one[1][0][v].numpy(), atol=1e-12)
    # site-major instead of time-major: the same values at the same points
    idx = (torch.arange(W * S) % S * W + torch.arange(W * S) // S).argsort().expand(3, -1)
    moved = neighbour_interpolation(
        batch.x.gather(1, idx[..., None].expand(-1, -1, 3)),
        batch.y.gather(1, idx[..., None].expand(-1, -1, D)),
        batch.observed.gather(1, idx[..., None].expand(-1, -1, D)),
        batch.valid.gather(1, idx),
    )[0]
    keep = batch.valid.gather(1, idx)
    np.testing.assert_allclose(
        moved[keep].numpy(),
        out.gather(1, idx[..., None].expand(-1, -1, D))[keep].numpy(),
        atol=1e-12,
    )


def test_training_blocks_on_a_field_run_along_one_sites_steps() -> None:
    """Blocks hidden in training on a space x time batch cover consecutive steps of one
    site: along a site's own steps every run has the drawn length (3) unless cut by the end
    of the window. Without the site order a run would hide other sites at the same step."""
    from gpvae.data.holdout import hide_mask
    from gpvae.data.spatial import field_batch

    T, S, D, W = 40, 5, 2, 40
    values = np.zeros((T, S, D))
    xy = np.arange(2 * S, dtype=float).reshape(S, 2)
    batch = field_batch(values, xy, np.arange(T, dtype=float), [0, 0, 0, 0], W)
    g = torch.Generator().manual_seed(3)
    hide = hide_mask(batch.observed, 0.2, "blocks", (3, 3), g, x=batch.x)
    assert 0.1 < hide.float().mean() < 0.25
    per_site = hide.reshape(4, W, S, D).permute(0, 2, 3, 1).reshape(-1, W).numpy()
    for row in per_site:
        edges = np.diff(np.concatenate([[0], row.astype(int), [0]]))
        starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        for a, z in zip(starts, stops):
            assert z - a >= 3 or z == W, (a, z)


def test_training_sites_hide_whole_sites_of_a_field() -> None:
    """The 'sites' training mask hides every entry of a chosen site in a series (the
    kriging task) and nothing else; about ``rate`` of the sites; a 1-D index is refused."""
    from gpvae.data.holdout import hide_mask
    from gpvae.data.spatial import field_batch

    T, S, D, W, B = 12, 20, 3, 12, 30
    values = np.zeros((T, S, D))
    values[:, :, 2] = np.nan  # never observed: never hidden
    xy = np.arange(2 * S, dtype=float).reshape(S, 2)
    batch = field_batch(values, xy, np.arange(T, dtype=float), [0] * B, W)
    g = torch.Generator().manual_seed(5)
    hide = hide_mask(batch.observed, 0.25, "sites", (2, 24), g, x=batch.x)
    per = hide.reshape(B, W, S, D)[..., :2]
    whole = per.all(dim=(1, 3))
    assert (per.any(dim=(1, 3)) == whole).all()  # a site is hidden whole or not at all
    assert 0.15 < whole.float().mean() < 0.35
    assert not hide[..., 2].any()
    with pytest.raises(GPVAEError, match="mask_pattern"):
        hide_mask(batch.observed, 0.25, "sites", (2, 24), g, x=batch.x[..., 2:])


@pytest.mark.parametrize("powers", [None, (0.0, 3.0, 1.5), (4.0, 4.0, 2.0)])
def test_space_interpolation_matches_the_loop_reference(
    powers: tuple[float, ...] | None,
) -> None:
    """Inverse distance weighting over the other sites observed at the same time, checked
    entry by entry against a float64 loop, with the default power 2 and per-feature powers
    (the effective distance keeps power 2); the point's own value is never used."""
    from gpvae.data.interpolate import space_interpolation
    from gpvae.data.spatial import field_batch

    rng = np.random.default_rng(4)
    T, S, D, W = 9, 5, 3, 4
    values = rng.normal(size=(T, S, D))
    values[rng.random((T, S, D)) < 0.5] = np.nan
    values[2, :, 0] = np.nan  # a time where no site observes feature 0
    xy = rng.normal(size=(S, 2)) * 10
    batch = field_batch(values, xy, np.arange(T, dtype=float), [0, 4, 7], W, dtype=torch.float64)
    power = None if powers is None else torch.tensor(powers, dtype=torch.float64)
    p_ref = (2.0,) * D if powers is None else powers
    out, dist = space_interpolation(batch.x, batch.y, batch.observed, batch.valid, power)
    for b, a in enumerate([0, 4, 7]):
        for i in range(W):
            if a + i >= T:
                continue  # padding
            for s in range(S):
                n = i * S + s
                for d in range(D):
                    others = [k for k in range(S) if k != s and not np.isnan(values[a + i, k, d])]
                    if not others:
                        assert out[b, n, d] == 0
                        assert dist[b, n, d] == np.inf
                        continue
                    r = np.array([np.sqrt(np.sum((xy[k] - xy[s]) ** 2)) for k in others])
                    w = r ** -p_ref[d]
                    ref = np.sum(w * values[a + i, others, d]) / w.sum()
                    assert abs(float(out[b, n, d]) - ref) < 1e-12
                    assert abs(float(dist[b, n, d]) - np.sum(r**-2.0) ** -0.5) < 1e-12
    y = batch.y.clone()
    y[0, 0, 0] = 1e6  # a point's own value does not reach its interpolation
    again = space_interpolation(batch.x, y, batch.observed, batch.valid, power)[0]
    assert again[0, 0, 0] == out[0, 0, 0]


def test_field_fusion_starts_at_the_distance_weighted_blend() -> None:
    """An untrained FieldFusion predicts (tv / gap + sv w scale / dist) / (1 / gap + w scale /
    dist) with w = exp(theta) (theta 0 at the start), IDW alone without a neighbour in time,
    time interpolation alone without one in space, and the decoder with neither; seen
    entries keep the decoder's value."""
    from gpvae.nets import FieldFusion

    fuse = FieldFusion(2, scale=5.0)
    dec = torch.tensor([[[7.0, 7.0], [7.0, 7.0], [7.0, 7.0], [7.0, 7.0]]])  # (B=1, N=4, D=2)
    tv = torch.tensor([[[1.0, 1.0], [1.0, 1.0], [0.0, 0.0], [1.0, 1.0]]])
    gap = torch.tensor([[[2.0, 2.0], [torch.inf, torch.inf], [torch.inf, torch.inf], [1.0, 1.0]]])
    sv = torch.tensor([[[3.0, 3.0], [3.0, 3.0], [0.0, 0.0], [0.0, 0.0]]])
    dist = torch.tensor(
        [[[10.0, 10.0], [4.0, 4.0], [torch.inf, torch.inf], [torch.inf, torch.inf]]]
    )
    seen = torch.zeros(1, 4, 2, dtype=torch.bool)
    with torch.no_grad():
        fuse.log_space_weight[1] = math.log(4.0)
        out = fuse(dec[None], tv, gap, sv, dist, seen)[0]
    w0, w1 = 5.0 / 10.0, 4.0 * 5.0 / 10.0  # feature 0: weight 1; feature 1: weight 4
    assert out[0, 0, 0] == pytest.approx((1.0 / 2 + 3.0 * w0) / (1 / 2 + w0))
    assert out[0, 0, 1] == pytest.approx((1.0 / 2 + 3.0 * w1) / (1 / 2 + w1))
    assert out[0, 1].tolist() == [3.0, 3.0]  # no neighbour in time: IDW
    assert out[0, 2].tolist() == [7.0, 7.0]  # neither: the decoder
    assert out[0, 3].tolist() == [1.0, 1.0]  # no other site: time interpolation
    seen[0, 0, 0] = True
    assert fuse(dec[None], tv, gap, sv, dist, seen)[0, 0, 0, 0] == 7.0


def _model(D: int, L: int, interp_skip: bool) -> GPVAEModel:
    """A model whose decoder outputs 0 everywhere (its fusion net starts at 0 too)."""
    torch.manual_seed(0)
    dec = MLPDecoder(L, D, (8,))
    with torch.no_grad():
        for p in dec.parameters():
            p.zero_()
    return GPVAEModel(
        MLPEncoder(D, L, (8,)), StructuredPosterior(), GPPrior(Matern32(), L), dec,
        Gaussian(D), interp_skip=interp_skip,
    )  # fmt: skip


def test_fusion_starts_at_interpolation_and_keeps_seen_entries() -> None:
    fuse = InterpolationFusion(3, hidden=(8,))
    decoded = torch.randn(2, 1, 4, 3)  # (S, B, N, D)
    value = torch.randn(1, 4, 3)
    gap = torch.tensor([[[1.0, 2.0, math.inf]] * 4])
    seen = torch.zeros(1, 4, 3, dtype=torch.bool)
    seen[0, 0, 0] = True
    out = fuse(decoded, value, gap, seen)
    # untrained: the interpolated value where a neighbour exists, else the decoder's value
    expect = torch.where(torch.isfinite(gap), value, decoded)
    expect = torch.where(seen, decoded, expect)
    torch.testing.assert_close(out, expect)
    with torch.no_grad():
        for p in fuse.parameters():
            p.add_(0.1)
    out = fuse(decoded, value, gap, seen)
    torch.testing.assert_close(out[..., 0, 0, 0], decoded[..., 0, 0, 0])  # seen: decoder
    assert not torch.allclose(out[..., 1:, :], expect[..., 1:, :])  # the residual net acts
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in fuse.parameters() if p.grad is not None)


def test_an_untrained_fusion_is_linear_interpolation_and_forecasts_carry_the_last_value() -> None:
    g = torch.Generator().manual_seed(1)
    B, N, D = 3, 30, 4
    y = torch.randn(B, N, D, generator=g)
    obs = torch.rand(B, N, D, generator=g) < 0.4
    obs[:, -1] = True
    batch = Batch.from_tensors(torch.where(obs, y, torch.nan))
    model = _model(D, 2, interp_skip=True).eval()
    gens = [torch.Generator().manual_seed(i) for i in range(B)]
    mean, _ = model.predictive_draws(batch, gens, num_samples=4)
    lin = impute_linear(torch.where(obs, y, torch.nan).double().numpy())
    miss = ~obs.numpy()
    np.testing.assert_allclose(mean.numpy()[miss], lin[miss], atol=1e-5)
    x_new = batch.x[:, -1:] + torch.arange(1.0, 4.0).view(1, 3, 1)
    fc_mean, _ = model.forecast_draws(batch, x_new, 4, torch.Generator().manual_seed(0))
    torch.testing.assert_close(fc_mean, y[:, -1:].expand(B, 3, D))
    # without the skip the same zero decoder predicts 0 everywhere
    plain = _model(D, 2, interp_skip=False).eval()
    assert plain.predictive_draws(batch, gens, 4)[0][~obs].abs().max() == 0


def test_interp_skip_needs_a_location_likelihood() -> None:
    with pytest.raises(GPVAEError, match=r"^interp_skip"):
        GPVAEModel(
            MLPEncoder(3, 2), StructuredPosterior(), GPPrior(Matern32(), 2), MLPDecoder(2, 3),
            Bernoulli(), interp_skip=True,
        )  # fmt: skip
    with pytest.raises(GPVAEError, match=r"^interp_skip"):
        GPVAE(interp_skip="yes")

    class Anonymous(torch.nn.Module):  # declares no num_features
        def __init__(self) -> None:
            super().__init__()
            self.inner = MLPEncoder(3, 2)

        def forward(self, y: torch.Tensor, observed: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return self.inner(y, observed)  # type: ignore[no-any-return]

    with pytest.raises(GPVAEError, match=r"^interp_skip.*number of features"):
        GPVAEModel(
            Anonymous(), StructuredPosterior(), GPPrior(Matern32(), 2),
            MLPDecoder(2, 3, num_params=2), Gaussian(heteroscedastic=True), interp_skip=True,
        )  # fmt: skip


def _correlated_sparse(n: int, T: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, T, 6): six noisy mixtures of two smooth latent paths, each feature observed at
    its own random 30% of the steps (so a feature's own neighbours are far apart but the
    other features saw the latent paths in between)."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)[None, :, None]
    z = np.concatenate(
        [
            np.sin(t / 3 + rng.uniform(0, 6, (n, 1, 1))),
            np.cos(t / 5 + rng.uniform(0, 6, (n, 1, 1))),
        ],
        axis=-1,
    )  # (n, T, 2)
    W = np.random.default_rng(123).standard_normal((2, 6))  # the same mixing in every set
    full = z @ W + 0.05 * rng.standard_normal((n, T, 6))
    X = np.where(rng.random(full.shape) < 0.3, full, np.nan)
    return X, full


def test_interp_skip_beats_linear_interpolation_on_correlated_sparse_features() -> None:
    X, _ = _correlated_sparse(96, 40, seed=0)
    X_val, full_val = _correlated_sparse(24, 40, seed=1)
    est = GPVAE(
        latent_dim=2, hidden=(32, 32), epochs=15, batch_size=16, lr=3e-3, patience=8,
        mask_rate=0.2, interp_skip=True, progress=False, seed=0,
    ).fit(X, X_val=X_val, X_val_target=full_val)  # fmt: skip
    res = est.impute(X_val, num_samples=8)
    miss = np.isnan(X_val)
    mae = np.abs(np.asarray(res.mean) - full_val)[miss].mean()
    lin = np.abs(impute_linear(X_val) - full_val)[miss].mean()
    assert np.array_equal(np.asarray(res.mean)[~miss], X_val[~miss])  # observed untouched
    assert mae < 0.8 * lin, (mae, lin)


def test_interp_skip_without_mask_rate_warns_at_fit() -> None:
    """interp_skip=True without mask_rate trains nothing past linear interpolation (the
    fusion learns only from entries hidden from the encoder), without a word (audit U #6)."""
    X, _ = _correlated_sparse(8, 20, seed=2)
    small = {"latent_dim": 1, "hidden": (8,), "epochs": 1, "batch_size": 4, "progress": False}
    with pytest.warns(UserWarning, match=r"^interp_skip: expected mask_rate > 0 .*mask_rate=0"):
        GPVAE(**small, interp_skip=True).fit(X)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        GPVAE(**small, interp_skip=True, mask_rate=0.2).fit(X)
        GPVAE(**small).fit(X)
    assert not [w for w in caught if str(w.message).startswith("interp_skip: expected")]


@pytest.mark.filterwarnings("ignore:interp_skip. expected mask_rate")
def test_interp_skip_is_saved(tmp_path: Path) -> None:
    X, _ = _correlated_sparse(12, 20, seed=2)
    est = GPVAE(latent_dim=2, hidden=(8,), epochs=2, batch_size=4, interp_skip=True,
                progress=False).fit(X)  # fmt: skip
    est.save(tmp_path / "m")
    back = GPVAE.load(tmp_path / "m")
    assert back.interp_skip
    assert back.model_.interp_skip
    np.testing.assert_allclose(
        back.impute(X, num_samples=4).mean, est.impute(X, num_samples=4).mean
    )


def test_field_fusion_loads_a_state_saved_before_its_power_and_gate() -> None:
    """A FieldFusion state without ``space_power`` and ``new_site_residual`` (models saved
    before them) loads strictly, with power 2 and the residual on for every feature: the
    model's predictions keep their meaning."""
    from gpvae.nets import FieldFusion

    old = FieldFusion(3, scale=5.0).state_dict()
    del old["space_power"], old["new_site_residual"]
    new = FieldFusion(3, scale=5.0)
    with torch.no_grad():
        new.space_power.fill_(6.0)
        new.new_site_residual.zero_()
    new.load_state_dict(old, strict=True)
    assert torch.equal(new.space_power, torch.full((3,), 2.0))
    assert torch.equal(new.new_site_residual, torch.ones(3))
