"""Tests of the IDX reader, the MNIST loader and the Healing MNIST generator."""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from gpvae.datasets.hmnist import (
    HMNIST,
    load_mnist,
    make_hmnist,
    read_idx,
    rotate_images,
)
from gpvae.errors import GPVAEError, InputTypeError, ModelFileError, ValidationError

ROOT = Path(__file__).resolve().parents[2]

# Label counts of the MNIST test set (LeCun et al.), digits 0..9.
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _idx_bytes(array: np.ndarray, code: int) -> bytes:
    """Serialise ``array`` as IDX: two zero bytes, type code, ndim, sizes, big-endian data."""
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _case_id(value: object) -> str:
    """Readable parametrize ids: ``k=v`` for dicts, names for classes."""
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return getattr(value, "__name__", str(value))


# ---------------------------------------------------------------- IDX reader


@pytest.mark.parametrize(
    ("dtype", "code"),
    [
        (np.uint8, 0x08),
        (np.int8, 0x09),
        (np.int16, 0x0B),
        (np.int32, 0x0C),
        (np.float32, 0x0D),
        (np.float64, 0x0E),
    ],
    ids=["uint8", "int8", "int16", "int32", "float32", "float64"],
)
@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
def test_read_idx_round_trip(tmp_path: Path, dtype: type, code: int, compress: bool) -> None:
    expected = (np.arange(24).reshape(2, 3, 4) * 5).astype(dtype)  # up to 115: fits int8
    raw = _idx_bytes(expected, code)
    path = tmp_path / "tiny.idx"
    path.write_bytes(gzip.compress(raw) if compress else raw)
    found = read_idx(path)
    assert found.shape == (2, 3, 4)
    assert found.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(found, expected)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (lambda raw: raw[:-5], "truncated"),
        (lambda raw: raw + b"\x00\x00", "trailing bytes"),
        (lambda raw: b"\x01" + raw[1:], "two zero bytes"),
        (lambda raw: raw[:2] + b"\x07" + raw[3:], "type code"),
        (lambda raw: raw[:9], "dimension sizes"),
        (lambda raw: raw[:3], "magic number"),
    ],
    ids=["truncated-data", "trailing", "bad-magic", "bad-type", "short-header", "tiny"],
)
def test_read_idx_malformed(tmp_path: Path, payload: Callable[[bytes], bytes], match: str) -> None:
    raw = _idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4), 0x08)
    path = tmp_path / "bad.idx.gz"
    path.write_bytes(gzip.compress(payload(raw)))
    with pytest.raises(ModelFileError, match=match):
        read_idx(path)


def test_read_idx_truncated_gzip_and_missing_file(tmp_path: Path) -> None:
    raw = gzip.compress(_idx_bytes(np.arange(400, dtype=np.uint8).reshape(20, 20), 0x08))
    path = tmp_path / "cut.gz"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ModelFileError, match="gzip"):
        read_idx(path)
    with pytest.raises(ModelFileError, match="found nothing"):
        read_idx(tmp_path / "absent.gz")


# ---------------------------------------------------------------- MNIST


def test_load_mnist(data_dir: Path) -> None:
    images, labels = load_mnist(data_dir)
    assert images.shape == (10000, 28, 28)
    assert images.dtype == np.uint8
    assert labels.shape == (10000,)
    assert labels.dtype == np.int64
    assert np.bincount(labels, minlength=10).tolist() == MNIST_TEST_COUNTS
    assert images.max() == 255
    # The loader also accepts the mnist folder itself.
    images2, _ = load_mnist(data_dir / "mnist")
    np.testing.assert_array_equal(images, images2)


def test_load_mnist_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(GPVAEError, match="data_dir"):
        load_mnist(tmp_path)


# ---------------------------------------------------------------- rotation


def test_rotate_images_matches_rot90() -> None:
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(4, 28, 28, generator=gen) > 0.5).float()
    for angle, k in [(90.0, 1), (-90.0, -1), (180.0, 2), (0.0, 0)]:
        rotated = rotate_images(images, torch.full((4,), angle))
        expected = torch.from_numpy(np.rot90(images.numpy(), k=k, axes=(1, 2)).copy())
        torch.testing.assert_close(rotated, expected, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- Healing MNIST


@pytest.fixture(scope="module")
def hmnist() -> HMNIST:
    """The full default data set, made once for this module (a few seconds)."""
    path = Path(os.environ.get("GPVAE_DATA", ROOT.parent / "shared" / "data"))
    if not (path / "mnist").is_dir():
        pytest.skip(f"MNIST not found under {path} (set GPVAE_DATA)")
    return make_hmnist(path)


def test_shapes_and_splits(hmnist: HMNIST) -> None:
    sizes = {"train": 8000, "val": 1000, "test": 1000}
    for name, part in hmnist.splits().items():
        n = sizes[name]
        assert len(part) == n
        assert part.X.shape == (n, 10, 784)
        assert part.X.dtype == np.float32
        assert part.observed.shape == (n, 10, 784)
        assert part.observed.dtype == np.bool_
        assert part.X_missing.shape == (n, 10, 784)
        assert part.X_missing.dtype == np.float32
        assert part.labels.shape == (n,)
        assert part.labels.dtype == np.int64
        np.testing.assert_array_equal(part.times, np.tile(np.arange(10.0), (n, 1)))
        assert part.angles.shape == (n, 10)
        assert hmnist.info["angles"][name] is part.angles
    # One sequence per MNIST digit, each used once, labels carried over.
    index = np.concatenate([p.index for p in hmnist.splits().values()])
    np.testing.assert_array_equal(np.sort(index), np.arange(10000))
    labels = np.concatenate([p.labels for p in hmnist.splits().values()])
    assert np.bincount(labels, minlength=10).tolist() == MNIST_TEST_COUNTS


def test_values_binary_and_masks_consistent(hmnist: HMNIST) -> None:
    for part in hmnist.splits().values():
        assert set(np.unique(part.X).tolist()) == {0.0, 1.0}
        np.testing.assert_array_equal(np.isnan(part.X_missing), ~part.observed)
        np.testing.assert_array_equal(part.X_missing[part.observed], part.X[part.observed])


def test_missing_rate_and_mnar(hmnist: HMNIST) -> None:
    info = hmnist.info
    observed = np.concatenate([p.observed for p in hmnist.splits().values()])
    X = np.concatenate([p.X for p in hmnist.splits().values()])
    rate = 1.0 - observed.mean()
    assert rate == pytest.approx(0.6, abs=0.03)
    assert rate == pytest.approx(0.6, abs=2e-3)  # calibrated: only sampling noise remains
    assert info["realised_missing_rate"] == pytest.approx(rate)
    white = X > 0.5
    missing_white = 1.0 - observed[white].mean()
    missing_black = 1.0 - observed[~white].mean()
    assert missing_white > missing_black + 0.2
    assert missing_white == pytest.approx(info["p_missing_white"], abs=5e-3)
    assert missing_black == pytest.approx(info["p_missing_black"], abs=5e-3)
    # The stated probabilities: odds ratio 7, expected rate exactly the target.
    pw, pb, w = info["p_missing_white"], info["p_missing_black"], info["white_fraction"]
    assert (pw / (1 - pw)) / (pb / (1 - pb)) == pytest.approx(7.0)
    assert w * pw + (1 - w) * pb == pytest.approx(0.6, abs=1e-9)
    # Each split sees the same mechanism.
    for part in hmnist.splits().values():
        assert 1.0 - part.observed.mean() == pytest.approx(0.6, abs=0.01)


def test_frames_are_rotations_of_one_digit(hmnist: HMNIST, data_dir: Path) -> None:
    part = hmnist.test
    frames = part.X[:200]  # (200, T, D)
    centred = frames - frames.mean(axis=2, keepdims=True)
    unit = centred / np.linalg.norm(centred, axis=2, keepdims=True)
    consecutive = np.sum(unit[:, 1:] * unit[:, :-1], axis=2).mean()
    other = np.sum(unit[1:, :] * unit[:-1, :], axis=2).mean()  # same frame, next sequence
    assert consecutive > other + 0.3
    # Rotating each frame back by its angle recovers the binarised upright digit.
    images, _ = load_mnist(data_dir)
    upright = images[part.index[:50]] > 127  # (50, 28, 28)
    back = rotate_images(
        torch.from_numpy(frames[:50].reshape(-1, 28, 28)),
        torch.from_numpy(-part.angles[:50].reshape(-1)),
    ).reshape(50, 10, 28, 28)
    back_white = back.numpy() > 0.5
    inter = (back_white & upright[:, None]).sum(axis=(2, 3))
    union = (back_white | upright[:, None]).sum(axis=(2, 3))
    assert np.median(inter / union) > 0.6
    # Angles follow a random walk with 20-degree steps.
    steps = np.diff(np.concatenate([np.zeros((len(part), 1)), part.angles], axis=1), axis=1)
    assert steps.std() == pytest.approx(20.0, rel=0.05)


def test_deterministic_per_seed(data_dir: Path) -> None:
    kwargs = {"split": (60, 20, 20), "seq_len": 5}
    a = make_hmnist(data_dir, seed=3, **kwargs)
    b = make_hmnist(data_dir, seed=3, **kwargs)
    c = make_hmnist(data_dir, seed=4, **kwargs)
    for name in ("train", "val", "test"):
        pa, pb, pc = a.splits()[name], b.splits()[name], c.splits()[name]
        np.testing.assert_array_equal(pa.X, pb.X)
        np.testing.assert_array_equal(pa.observed, pb.observed)
        np.testing.assert_array_equal(pa.X_missing, pb.X_missing)
        np.testing.assert_array_equal(pa.angles, pb.angles)
        np.testing.assert_array_equal(pa.index, pb.index)
        assert not np.array_equal(pa.index, pc.index)
        assert not np.array_equal(pa.observed, pc.observed)
    assert a.train.X.shape == (60, 5, 784)


def test_mcar_option(data_dir: Path) -> None:
    data = make_hmnist(data_dir, split=(300, 0, 0), mnar=False, missing_rate=0.3)
    assert data.info["p_missing_white"] == data.info["p_missing_black"] == pytest.approx(0.3)
    white = data.train.X > 0.5
    assert 1.0 - data.train.observed[white].mean() == pytest.approx(0.3, abs=0.02)
    assert 1.0 - data.train.observed[~white].mean() == pytest.approx(0.3, abs=0.02)
    assert len(data.val) == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"missing_rate": 0.0}, ValidationError, "missing_rate"),
        ({"missing_rate": 1.0}, ValidationError, "missing_rate"),
        ({"missing_rate": -0.2}, ValidationError, "missing_rate"),
        ({"missing_rate": 1.5}, ValidationError, "missing_rate"),
        ({"missing_rate": "0.6"}, InputTypeError, "missing_rate"),
        ({"seq_len": 0}, ValidationError, "seq_len"),
        ({"seq_len": -3}, ValidationError, "seq_len"),
        ({"seq_len": 2.5}, InputTypeError, "seq_len"),
        ({"seed": 1.0}, InputTypeError, "seed"),
        ({"seed": -1}, ValidationError, "seed"),
        ({"rotation_std": -1.0}, ValidationError, "rotation_std"),
        ({"mnar_odds_ratio": 0.5}, ValidationError, "mnar_odds_ratio"),
        ({"split": (8000, 1000, 1001)}, ValidationError, "split"),
        ({"split": (10, 10)}, ValidationError, "split"),
        ({"split": (0, 0, 0)}, ValidationError, "split"),
    ],
    ids=_case_id,
)
def test_bad_arguments(
    data_dir: Path, kwargs: dict[str, object], error: type[Exception], name: str
) -> None:
    with pytest.raises(error, match=name) as info:
        make_hmnist(data_dir, **kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, GPVAEError)
