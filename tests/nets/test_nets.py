"""Encoders and decoders: shapes, masking, and the partial inference network's algebra."""

from __future__ import annotations

import pytest
import torch

from gpvae.errors import GPVAEError, ShapeError, ValidationError
from gpvae.nets import ConvEncoder, GRUEncoder, MLPDecoder, MLPEncoder, PartialEncoder

B, N, D, L = 3, 7, 4, 2


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    observed = torch.rand(B, N, D, generator=g) < 0.6
    observed[0, 2] = False  # a point with nothing observed
    y = torch.where(observed, torch.randn(B, N, D, generator=g), torch.zeros(B, N, D))
    return y, observed


@pytest.mark.parametrize(
    "encoder",
    [
        MLPEncoder(D, L),
        MLPEncoder(D, L, hidden=(16,), num_outputs=3),
        ConvEncoder(D, L, channels=8),
        ConvEncoder(D, L, channels=8, num_outputs=3),
        PartialEncoder(D, L, hidden=(16,)),
        GRUEncoder(D, L, hidden_size=8),
        GRUEncoder(D, L, hidden_size=8, num_outputs=3),
    ],
    ids=["mlp", "mlp-banded", "conv", "conv-banded", "partial", "gru", "gru-banded"],
)
def test_encoder_shapes_and_positive_variance(encoder: torch.nn.Module) -> None:
    y, observed = _inputs()
    out = encoder(y, observed)
    assert len(out) == getattr(encoder, "num_outputs", 2)
    for t in out:
        assert t.shape == (B, N, L)
    var = out[1]
    has_obs = observed.any(-1)
    assert bool((var[has_obs] > 0).all())
    assert bool(torch.isfinite(out[0]).all())


def test_plain_encoders_never_see_unobserved_values() -> None:
    torch.manual_seed(0)
    y, observed = _inputs()
    noisy = torch.where(observed, y, torch.randn(B, N, D) * 100)
    encoders = [MLPEncoder(D, L), ConvEncoder(D, L, channels=8), PartialEncoder(D, L)]
    for enc in [*encoders, GRUEncoder(D, L, hidden_size=8)]:
        for a, b in zip(enc(y, observed), enc(noisy, observed)):
            torch.testing.assert_close(a, b)


def test_partial_encoder_excludes_points_without_observations_exactly() -> None:
    y, observed = _inputs()
    mean, var = PartialEncoder(D, L)(y, observed)
    none = ~observed.any(-1)
    assert bool(none.any())
    assert bool(torch.isinf(var[none]).all())
    assert bool((mean[none] == 0).all())
    assert bool(torch.isfinite(var[~none]).all())


def test_partial_encoder_precisions_add_over_features() -> None:
    """The precision of a point is the sum of its observed features' factor precisions."""
    torch.manual_seed(1)
    enc = PartialEncoder(D, L, hidden=(8,)).double()
    y = torch.randn(1, 1, D, dtype=torch.float64)
    both = torch.tensor([[[True, True, False, False]]])
    only0 = torch.tensor([[[True, False, False, False]]])
    only1 = torch.tensor([[[False, True, False, False]]])
    m01, v01 = enc(y, both)
    m0, v0 = enc(y, only0)
    m1, v1 = enc(y, only1)
    torch.testing.assert_close(1 / v01, 1 / v0 + 1 / v1)
    torch.testing.assert_close(m01 / v01, m0 / v0 + m1 / v1)
    assert bool((v01 < v0).all())
    assert bool((v01 < v1).all())


def test_partial_encoder_gradients_are_finite_with_unobserved_points() -> None:
    y, observed = _inputs()
    enc = PartialEncoder(D, L)
    mean, var = enc(y, observed)
    has = observed.any(-1)
    (mean[has].sum() + var[has].sum()).backward()
    for p in enc.parameters():
        assert p.grad is not None
        assert bool(torch.isfinite(p.grad).all())


def test_decoder_shapes_and_tuple_output() -> None:
    z = torch.randn(5, B, N, L)
    assert MLPDecoder(L, D)(z).shape == (5, B, N, D)
    out = MLPDecoder(L, D, hidden=(), num_params=2)(z)
    assert isinstance(out, tuple)
    assert len(out) == 2
    assert all(t.shape == (5, B, N, D) for t in out)


def test_gru_encoder_sees_the_whole_series_in_both_directions() -> None:
    torch.manual_seed(0)
    y, observed = _inputs()
    y2, observed2 = y.clone(), observed.clone()
    y2[:, 3] += 1.0
    observed2[:, 3] = True
    enc = GRUEncoder(D, L, hidden_size=8)
    a, b = enc(y, observed)[0], enc(y2, observed2)[0]
    assert bool((a[:, 0] != b[:, 0]).any())  # before the change (backward direction)
    assert bool((a[:, -1] != b[:, -1]).any())  # after it (forward direction)
    with pytest.raises(ValidationError, match="hidden_size"):
        GRUEncoder(D, L, hidden_size=0)


def test_gru_encoder_runs_within_each_series_length() -> None:
    """Its backward pass ran over a short series' padding, so a series' encoding (and
    imputation) depended on the longer series batched with it."""
    torch.manual_seed(0)
    enc = GRUEncoder(D, L, hidden_size=8, num_outputs=3)
    y, observed = _inputs()  # (B, N, D)
    short = 4
    y[0, short:], observed[0, short:] = 0.0, False  # series 0 padded after 4 steps
    valid = torch.ones(y.shape[:2], dtype=torch.bool)
    valid[0, short:] = False
    batched = enc(y, observed, valid=valid)
    alone = enc(y[:1, :short], observed[:1, :short], valid=valid[:1, :short])
    rest = enc(y[1:], observed[1:])  # the full-length series, unpadded
    for b, a, r in zip(batched, alone, rest):
        torch.testing.assert_close(b[0, :short], a[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(b[1:], r, rtol=1e-5, atol=1e-6)
    full = torch.ones_like(valid)  # no padding: the plain pass, bit for bit
    for b, a in zip(enc(y, observed, valid=full), enc(y, observed)):
        assert torch.equal(b, a)


def test_conv_encoder_mixes_neighbours_but_mlp_does_not() -> None:
    torch.manual_seed(0)
    y, observed = _inputs()
    y2 = y.clone()
    y2[:, 3] += 1.0
    observed2 = observed.clone()
    observed2[:, 3] = True
    for enc, changes_neighbour in [(MLPEncoder(D, L), False), (ConvEncoder(D, L), True)]:
        a = enc(y, observed)[0]
        b = enc(y2, observed2)[0]
        assert bool((a[:, 2] != b[:, 2]).any()) == changes_neighbour
        assert bool(torch.equal(a[:, 5], b[:, 5]))


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: MLPEncoder(0, L), "num_features"),
        (lambda: MLPEncoder(D, L, num_outputs=4), "num_outputs"),
        (lambda: MLPEncoder(D, L, hidden=(8, -1)), "hidden"),
        (lambda: ConvEncoder(D, L, kernel_size=4), "kernel_size"),
        (lambda: MLPDecoder(L, D, num_params=0), "num_params"),
        (lambda: PartialEncoder(D, 0), "latent_dim"),
    ],
    ids=["features", "outputs", "hidden", "kernel-size", "num-params", "latent"],
)
def test_bad_constructor_arguments(build: object, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        build()  # type: ignore[operator]


def test_bad_input_shapes_name_the_argument() -> None:
    y, observed = _inputs()
    enc = MLPEncoder(D, L)
    with pytest.raises(ShapeError, match="y: expected shape"):
        enc(y[..., :3], observed[..., :3])
    with pytest.raises(ShapeError, match="observed"):
        enc(y, observed[:, :4])
    with pytest.raises(GPVAEError, match="z: expected shape"):
        MLPDecoder(L, D)(torch.randn(2, N, L + 1))


# ---------------------------------------------------------------- chunked per-point MLPs


def _first_linear_calls(net: torch.nn.Module) -> list[int]:
    """Rows seen by each call of the first Linear layer of ``net`` (a forward hook)."""
    calls: list[int] = []
    first = next(m for m in net.modules() if isinstance(m, torch.nn.Linear))
    first.register_forward_hook(lambda _m, inp, _out: calls.append(inp[0].shape[0]))
    return calls


def _encode_decode(enc: MLPEncoder, dec: MLPDecoder, y: torch.Tensor, obs: torch.Tensor) -> tuple:
    """Decoded params of two draws and every gradient of a loss on them (float64)."""
    for p in [*enc.parameters(), *dec.parameters()]:
        p.grad = None
    yy = y.clone().requires_grad_()
    mean, var = enc(yy, obs)
    eps = torch.linspace(-1.0, 1.0, 2, dtype=y.dtype)[:, None, None, None]
    out = dec(mean + var.sqrt() * eps)  # (2, B, N, D)
    (out.sin() * out).sum().backward()
    grads = [p.grad.clone() for p in [*enc.parameters(), *dec.parameters()]]
    return out.detach(), yy.grad.clone(), grads


def test_mlp_in_chunks_equals_one_pass_values_and_gradients(monkeypatch) -> None:
    from gpvae import settings

    torch.manual_seed(0)
    enc = MLPEncoder(D, L, hidden=(32, 16)).double()
    dec = MLPDecoder(L, D, hidden=(16, 32)).double()
    g = torch.Generator().manual_seed(1)
    y = torch.randn(3, 200, D, generator=g, dtype=torch.float64)
    obs = torch.rand(3, 200, D, generator=g) < 0.7
    ref = _encode_decode(enc, dec, y, obs)  # default limit: one pass at this size
    calls = _first_linear_calls(enc.net)
    # over 280 rows of width 32: chunks of a quarter, 70 rows
    monkeypatch.setattr(settings, "MLP_CHUNK_BYTES", 32 * 8 * 280)
    out = _encode_decode(enc, dec, y, obs)
    # 600 rows in chunks of 70 (9 chunks), each run again in the backward pass (checkpoints)
    assert calls[:9] == [70] * 8 + [40]
    assert sorted(calls[9:]) == sorted(calls[:9])
    torch.testing.assert_close(out[0], ref[0], rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(out[1], ref[1], rtol=1e-12, atol=1e-14)
    for a, b in zip(out[2], ref[2]):  # weight gradients: summed chunk by chunk
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_mlp_in_chunks_without_gradients_runs_each_chunk_once(monkeypatch) -> None:
    from gpvae import settings

    torch.manual_seed(0)
    dec = MLPDecoder(L, D, hidden=(16,)).double()
    z = torch.randn(2, 3, 50, L, dtype=torch.float64)  # 300 rows
    with torch.no_grad():
        ref = dec(z)
        calls = _first_linear_calls(dec.net)
        monkeypatch.setattr(settings, "MLP_CHUNK_BYTES", 16 * 8 * 256)  # chunks of 64 rows
        out = dec(z)
    assert calls == [64, 64, 64, 64, 44]
    assert out.shape == (2, 3, 50, D)
    torch.testing.assert_close(out, ref, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("activation", [torch.nn.ReLU, torch.nn.Tanh])
def test_mlp_without_gradients_runs_in_cache_sized_chunks(monkeypatch, activation) -> None:
    from gpvae import settings
    from gpvae.nets import MLP

    torch.manual_seed(0)
    net = MLP(L, (32, 24), D, activation).double()
    z = torch.randn(2, 5, 103, L, dtype=torch.float64)  # 1,030 rows, widest 32 x 8 bytes
    before = z.clone()
    with torch.no_grad():
        ref = torch.nn.Sequential.forward(net, z)  # one pass
        calls = _first_linear_calls(net)
        monkeypatch.setattr(settings, "MLP_INFERENCE_CHUNK_BYTES", 32 * 8 * 100)
        out = net(z)
    assert calls == [100] * 10 + [30]
    assert out.shape == (2, 5, 103, D)
    torch.testing.assert_close(out, ref, rtol=1e-13, atol=1e-14)
    assert torch.equal(z, before)  # the input is not overwritten by in-place activations


def test_mlp_chunks_only_without_gradients_by_default() -> None:
    from gpvae import settings
    from gpvae.nets import MLP

    net = MLP(L, (64,), D)
    rows = settings.MLP_INFERENCE_CHUNK_BYTES // (64 * 4) + 1  # one row over a chunk
    z = torch.randn(rows, L)
    calls = _first_linear_calls(net)
    net(z).sum().backward()  # with gradients: one pass, below MLP_CHUNK_BYTES
    with torch.no_grad():
        net(z)
    assert calls == [rows, rows - 1, 1]
