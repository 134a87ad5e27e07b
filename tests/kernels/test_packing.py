"""Packed channel kernels: a GPPrior's Matern channels hold their hyper-parameters as (L,)
tensors, with the same values, posteriors and gradients as kernels with their own."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import Tensor

from gpvae.errors import InputTypeError, ValidationError
from gpvae.gp import GPPrior
from gpvae.gp._transitions import group_tables, group_transitions
from gpvae.kernels import RBF, Matern12, Matern32, Matern52
from gpvae.kernels.registry import kernel_spec

DT = torch.float64
LENGTHS = [0.7, 2.0, 5.0, 11.0]
VARIANCES = [0.5, 1.0, 1.5, 3.0]


def _priors(cls: type = Matern32, backend: str = "auto") -> tuple[GPPrior, GPPrior]:
    """The same prior twice, packed and with a parameter per kernel, channel values apart."""
    out = []
    for pack in (True, False):
        prior = GPPrior(cls(), len(LENGTHS), backend=backend, pack_kernels=pack).to(DT)
        for k, ell, s2 in zip(prior.kernels, LENGTHS, VARIANCES):
            k.lengthscale, k.variance = ell, s2
        out.append(prior)
    return out[0], out[1]


def _inputs(seed: int = 0) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    B, N, L = 3, 9, len(LENGTHS)
    x = torch.sort(torch.rand(B, N, 1, generator=g, dtype=DT) * 12.0, dim=1).values
    valid = torch.ones(B, N, dtype=torch.bool)
    valid[-1, -2:] = False
    return {
        "x": x,
        "mean": torch.randn(B, N, L, generator=g, dtype=DT),
        "var": 0.1 + torch.rand(B, N, L, generator=g, dtype=DT),
        "valid": valid,
    }


def _raw_grads(prior: GPPrior) -> dict[str, Tensor]:
    """d/d raw hyper-parameter of every channel, (L,) per name, packed or not."""
    if prior.packed is not None:
        return {n: p.grad for n, p in prior.packed.items()}
    names = ("raw_lengthscale", "raw_variance")
    return {n: torch.stack([getattr(k, n).grad.reshape(()) for k in prior.kernels]) for n in names}


def test_matern_channels_are_packed_into_one_tensor_per_hyper_parameter() -> None:
    packed, own = _priors()
    assert [n for n, _ in packed.named_parameters()] == [
        "packed.raw_lengthscale",
        "packed.raw_variance",
    ]
    assert len(list(own.parameters())) == 2 * len(LENGTHS)
    for k, ell, s2 in zip(packed.kernels, LENGTHS, VARIANCES):
        assert float(k.lengthscale.detach()) == pytest.approx(ell)
        assert float(k.variance.detach()) == pytest.approx(s2)
        assert k.has_state_space
        assert k.state_dim == 2
        assert k.input_dim is None
    assert packed.packed is not None
    assert packed.packed["raw_lengthscale"].shape == (len(LENGTHS),)


def test_setting_one_channels_hyper_parameter_changes_that_channel_only() -> None:
    packed, _ = _priors()
    packed.kernels[2].lengthscale = 9.0
    got = [float(k.lengthscale.detach()) for k in packed.kernels]
    assert got == pytest.approx([LENGTHS[0], LENGTHS[1], 9.0, LENGTHS[3]])


@pytest.mark.parametrize("cls", [Matern12, Matern32, Matern52])
@pytest.mark.parametrize("backend", ["markov", "dense"])
def test_packed_prior_gives_the_same_kl_draws_and_gradients(cls: type, backend: str) -> None:
    packed, own = _priors(cls, backend)
    data = _inputs()
    results = []
    for prior in (packed, own):
        mean = data["mean"].clone().requires_grad_(True)
        post = prior.condition(data["x"], mean, data["var"], data["valid"])
        draws = post.sample(2, torch.Generator().manual_seed(5))
        kl = post.kl()
        (kl.sum() + (draws * data["valid"][None, :, :, None]).square().sum()).backward()
        results.append((kl.detach(), draws.detach(), mean.grad, _raw_grads(prior)))
    (kl_a, d_a, gm_a, raw_a), (kl_b, d_b, gm_b, raw_b) = results
    torch.testing.assert_close(kl_a, kl_b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(d_a, d_b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gm_a, gm_b, rtol=1e-10, atol=1e-12)
    for name in raw_b:
        torch.testing.assert_close(raw_a[name], raw_b[name], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("channels", [[1, 2], [0, 2, 3], [3]])
def test_tables_of_some_packed_channels_match_their_own_kernels(channels: list[int]) -> None:
    packed, own = _priors()
    steps = torch.tensor([0.0, 0.5, 1.0, 3.0], dtype=DT)
    for fn in (group_transitions, group_tables):
        a = fn([packed.kernels[c] for c in channels], steps)
        b = fn([own.kernels[c] for c in channels], steps)
        for x, y in zip(a, b):
            if isinstance(x, Tensor):
                torch.testing.assert_close(x, y, rtol=1e-13, atol=0.0)
            elif x is not None:
                for u, v in zip(x, y):
                    torch.testing.assert_close(u, v, rtol=1e-13, atol=0.0)


def test_weights_saved_per_channel_load_into_packed_kernels_and_back() -> None:
    packed, own = _priors()
    fresh = GPPrior(Matern32(), len(LENGTHS)).to(DT)
    fresh.load_state_dict(own.state_dict())  # per-channel keys -> (L,) tensors
    assert [float(k.lengthscale.detach()) for k in fresh.kernels] == pytest.approx(LENGTHS)
    unpacked = GPPrior(Matern32(), len(LENGTHS), pack_kernels=False).to(DT)
    unpacked.load_state_dict(packed.state_dict())  # (L,) tensors -> per-channel keys
    assert [float(k.variance.detach()) for k in unpacked.kernels] == pytest.approx(VARIANCES)
    assert set(unpacked.state_dict()) == set(own.state_dict())


def test_a_state_dict_missing_a_channel_is_reported_not_guessed() -> None:
    _, own = _priors()
    state = own.state_dict()
    del state["kernels.3.raw_variance"]
    with pytest.raises(RuntimeError, match=r"packed\.raw_variance"):
        GPPrior(Matern32(), len(LENGTHS)).to(DT).load_state_dict(state)


def test_freezing_one_packed_channel_is_refused_and_the_template_freeze_is_kept() -> None:
    packed, own = _priors()
    with pytest.raises(ValidationError, match=r"names: .*pack_kernels=False"):
        packed.kernels[1].freeze("lengthscale")
    with pytest.raises(ValidationError, match="names:"):
        packed.kernels[1].unfreeze()
    own.kernels[1].freeze("lengthscale")  # unpacked kernels freeze one by one
    assert not own.kernels[1].raw_lengthscale.requires_grad
    prior = GPPrior(Matern52(lengthscale=3.0).freeze("variance"), 3)
    assert prior.packed is not None
    assert not prior.packed["raw_variance"].requires_grad
    assert prior.packed["raw_lengthscale"].requires_grad
    assert kernel_spec(prior.kernels[0]) == {
        "name": "matern52",
        "params": {"lengthscale": pytest.approx(3.0), "variance": pytest.approx(1.0)},
        "fixed": ["variance"],
    }


def test_kernels_that_do_not_qualify_keep_their_own_parameters() -> None:
    shared = Matern32()
    cases = [
        GPPrior(RBF(), 3),  # not a Matern kernel
        GPPrior([Matern32(), Matern52()], 2),  # two classes
        GPPrior([shared, shared], 2),  # one object for both channels (tied)
        GPPrior(Matern32(lengthscale=[1.0, 2.0]), 2),  # ARD lengthscales
        GPPrior([Matern32(), Matern32().freeze("variance")], 2),  # different trainables
        GPPrior(Matern32(), 3, pack_kernels=False),
    ]
    for prior in cases:
        assert prior.packed is None
        assert all(k.__dict__.get("_packed") is None for k in prior.kernels)
    with pytest.raises(InputTypeError, match="pack_kernels"):
        GPPrior(Matern32(), 2, pack_kernels="yes")  # type: ignore[arg-type]


def test_copies_and_saved_modules_keep_the_channels_reading_their_own_prior() -> None:
    packed, _ = _priors()
    buf = io.BytesIO()
    torch.save(packed, buf)
    buf.seek(0)
    for clone in (copy.deepcopy(packed), torch.load(buf, weights_only=False)):
        assert clone.packed is not packed.packed
        assert all(k.__dict__["_packed"].params is clone.packed for k in clone.kernels)
        clone.kernels[0].lengthscale = 4.0
        assert float(packed.kernels[0].lengthscale.detach()) == pytest.approx(LENGTHS[0])
        assert float(clone.kernels[0].lengthscale.detach()) == pytest.approx(4.0)
