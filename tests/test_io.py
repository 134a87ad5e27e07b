"""Tests for gpvae.io: safetensors + JSON model files and checkpoints, atomic and pickle-free."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

import gpvae
from gpvae.errors import GPVAEError, InputTypeError, ModelFileError, ValidationError
from gpvae.io import (
    CONFIG_FILE,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    atomic_write_bytes,
    check_state_dict,
    flatten_state,
    load_checkpoint,
    load_model,
    read_model,
    save_checkpoint,
    save_model,
    unflatten_state,
)


def _state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "encoder.weight": torch.randn(4, 3, generator=g),
        "encoder.weight_t": torch.randn(3, 5, generator=g).t(),  # non-contiguous
        "decoder.bias": torch.randn(3, dtype=torch.float64, generator=g),
        "prior.raw_lengthscale": torch.tensor(0.5),  # 0-d
        "counts": torch.arange(6, dtype=torch.int64).reshape(2, 3),
        "mask": torch.tensor([True, False]),
        "empty": torch.zeros(0, 2),
        "half": torch.randn(2, 2, generator=g).to(torch.bfloat16),
    }


CONFIG = {"latent_dim": 2, "kernel": "matern32", "beta": 0.5, "layers": [32, 32], "note": None}


def _saved(tmp_path: Path) -> Path:
    path = tmp_path / "model"
    save_model(path, _state(), CONFIG, extra={"scaler": {"mean": [1.0], "std": [2.0]}})
    return path


class _Evil:
    """Unpickling this runs code that writes a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything tries to unpickle or torch.load while it runs."""

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("gpvae.io must never unpickle")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)


# ---------------------------------------------------------------- round trips


def test_model_round_trip_identical(tmp_path: Path, no_unpickling: None) -> None:
    path = _saved(tmp_path)
    assert sorted(p.name for p in path.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    state, config = load_model(path)
    original = _state()
    assert set(state) == set(original)
    for k, v in original.items():
        assert state[k].dtype == v.dtype
        assert state[k].shape == v.shape
        assert torch.equal(state[k], v), k
    assert config == CONFIG
    model = read_model(path)
    assert model.extra == {"scaler": {"mean": [1.0], "std": [2.0]}}
    assert model.gpvae_version == gpvae.__version__
    assert model.format_version == FORMAT_VERSION
    doc = json.loads((path / CONFIG_FILE).read_text())
    assert doc["format_version"] == FORMAT_VERSION
    assert doc["gpvae_version"] == gpvae.__version__


def test_save_over_existing_model(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    new = {"w": torch.ones(2)}
    save_model(path, new, {"a": 1})
    state, config = load_model(path)
    assert torch.equal(state["w"], new["w"])
    assert config == {"a": 1}
    assert sorted(p.name for p in path.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"config": {"f": float("nan")}}, ValidationError, "config"),
        ({"config": {"obj": object()}}, ValidationError, "config"),
        ({"extra": {"t": torch.ones(1)}}, ValidationError, "extra"),
        ({"state_dict": {"w": [1.0, 2.0]}}, InputTypeError, "state_dict['w']"),
        ({"state_dict": {1: torch.ones(1)}}, InputTypeError, "state_dict"),
    ],
    ids=["nan-config", "object-config", "tensor-extra", "list-weight", "int-key"],
)
def test_save_model_rejects_bad_arguments(
    tmp_path: Path, kwargs: dict[str, Any], error: type[GPVAEError], needle: str
) -> None:
    args: dict[str, Any] = {"state_dict": {"w": torch.ones(1)}, "config": {}, "extra": None}
    args.update(kwargs)
    with pytest.raises(error, match=needle.replace("[", r"\[")):
        save_model(tmp_path / "m", **args)
    assert not (tmp_path / "m" / WEIGHTS_FILE).exists()


# ---------------------------------------------------------------- malformed files


def _write_config(path: Path, doc: Any) -> None:
    (path / CONFIG_FILE).write_text(json.dumps(doc))


def _corrupt(case: str, path: Path, tmp_path: Path) -> Path:
    """Damage the saved model at ``path`` in one way; return the path to load."""
    weights = path / WEIGHTS_FILE
    data = weights.read_bytes()
    doc = json.loads((path / CONFIG_FILE).read_text())
    if case == "missing-dir":
        return tmp_path / "nope"
    if case == "path-is-file":
        return weights
    if case == "missing-config":
        (path / CONFIG_FILE).unlink()
    elif case == "missing-weights":
        weights.unlink()
    elif case == "invalid-json":
        (path / CONFIG_FILE).write_text('{"format_version": 1, "config": {')
    elif case == "binary-config":
        (path / CONFIG_FILE).write_bytes(b"\xff\xfe\x00garbage")
    elif case == "config-not-object":
        _write_config(path, [1, 2, 3])
    elif case == "missing-format-version":
        del doc["format_version"]
        _write_config(path, doc)
    elif case == "wrong-format-version":
        _write_config(path, {**doc, "format_version": 99})
    elif case == "string-format-version":
        _write_config(path, {**doc, "format_version": "1"})
    elif case == "config-not-dict":
        _write_config(path, {**doc, "config": "latent_dim=2"})
    elif case.startswith("truncated-"):
        weights.write_bytes(data[: int(len(data) * float(case.split("-")[1]))])
    elif case == "tiny-weights":
        weights.write_bytes(b"\x01\x02")
    elif case == "empty-weights":
        weights.write_bytes(b"")
    elif case == "garbage-weights":
        weights.write_bytes(os.urandom(4096))
    elif case == "huge-header-length":
        weights.write_bytes((2**60).to_bytes(8, "little") + data[8:])
    elif case == "bad-header-json":
        n = int.from_bytes(data[:8], "little")
        weights.write_bytes(data[:8] + b"[" * n + data[8 + n :])
    elif case == "bad-offsets":
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + n])
        key = next(k for k in header if k != "__metadata__")
        header[key]["data_offsets"] = [0, 10**9]
        raw = json.dumps(header).encode()
        weights.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + n :])
    elif case == "flipped-byte":
        weights.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    elif case == "weights-from-other-model":
        save_model(tmp_path / "other", {"w": torch.ones(3)}, {})
        weights.write_bytes((tmp_path / "other" / WEIGHTS_FILE).read_bytes())
    elif case == "pickle-as-weights":
        weights.write_bytes(pickle.dumps({"w": [1.0, 2.0]}))
    elif case == "torch-save-as-weights":
        torch.save(_state(), weights)
    elif case == "only-model-pt":
        weights.unlink()
        torch.save(_state(), path / "model.pt")
    else:  # pragma: no cover
        raise KeyError(case)
    return path


MALFORMED = [
    "missing-dir",
    "path-is-file",
    "missing-config",
    "missing-weights",
    "invalid-json",
    "binary-config",
    "config-not-object",
    "missing-format-version",
    "wrong-format-version",
    "string-format-version",
    "config-not-dict",
    "truncated-0.05",
    "truncated-0.5",
    "truncated-0.99",
    "tiny-weights",
    "empty-weights",
    "garbage-weights",
    "huge-header-length",
    "bad-header-json",
    "bad-offsets",
    "flipped-byte",
    "weights-from-other-model",
    "pickle-as-weights",
    "torch-save-as-weights",
    "only-model-pt",
]


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_model_raises_model_file_error(tmp_path: Path, case: str) -> None:
    target = _corrupt(case, _saved(tmp_path), tmp_path)
    with pytest.raises(ModelFileError) as info:
        load_model(target)
    message = str(info.value)
    assert "expected" in message
    if "pickle" in case or "torch-save" in case or case == "only-model-pt":
        assert "pickle" in message


def test_a_header_whose_length_looks_like_a_pickle_opcode_still_loads(tmp_path: Path) -> None:
    # a 640-byte safetensors header starts the file with 0x80 0x02, as a protocol-2 pickle
    for n in range(540, 570):  # the header grows by one byte per character of the name
        path = tmp_path / f"m{n}"
        state = {"w" * n: torch.zeros(2)}
        save_model(path, state, CONFIG)
        if (path / WEIGHTS_FILE).read_bytes()[:2] == b"\x80\x02":
            break
    else:
        pytest.fail("no tensor name gave a 640-byte header")
    back, _ = load_model(path)
    assert set(back) == set(state)


def test_malicious_pickle_is_never_executed(tmp_path: Path, no_unpickling: None) -> None:
    marker = tmp_path / "marker.txt"
    payload = pickle.dumps(_Evil(marker))
    # Control: the payload is live (run in a subprocess, outside the no-unpickling guard).
    control = tmp_path / "control.txt"
    subprocess.run(
        [sys.executable, "-c", "import pickle,sys; pickle.loads(sys.stdin.buffer.read())"],
        input=pickle.dumps(_Evil(control)),
        check=True,
    )
    assert control.exists()

    path = _saved(tmp_path)
    (path / "model.pt").write_bytes(payload)  # an extra pickle beside valid files
    state, _ = load_model(path)  # loads the safetensors, never touches model.pt
    assert set(state) == set(_state())
    (path / WEIGHTS_FILE).write_bytes(payload)  # a pickle in place of the weights
    with pytest.raises(ModelFileError, match="pickle"):
        load_model(path)
    (path / WEIGHTS_FILE).unlink()
    with pytest.raises(ModelFileError, match=r"model\.pt"):
        load_model(path)
    with pytest.raises(ModelFileError, match="pickle"):
        load_model(path / "model.pt")
    ckpt = tmp_path / "ckpt.safetensors"
    ckpt.write_bytes(payload)
    with pytest.raises(ModelFileError, match="pickle"):
        load_checkpoint(ckpt)
    assert not marker.exists()


# ---------------------------------------------------------------- atomicity


def _failing_replace(fail_on: set[int]) -> Callable[..., None]:
    real = os.replace
    calls = {"n": 0}

    def replace(src: Any, dst: Any) -> None:
        calls["n"] += 1
        if calls["n"] in fail_on:
            raise OSError("simulated crash in os.replace")
        real(src, dst)

    return replace


def test_failed_save_keeps_old_model_loadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _saved(tmp_path)
    monkeypatch.setattr(os, "replace", _failing_replace({1, 2, 3}))
    with pytest.raises(OSError, match="simulated"):
        save_model(path, {"w": torch.zeros(7)}, {"new": True})
    monkeypatch.undo()
    state, config = load_model(path)
    assert config == CONFIG
    assert torch.equal(state["encoder.weight"], _state()["encoder.weight"])
    assert sorted(p.name for p in path.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]  # no temp left


def test_crash_between_renames_never_loads_a_mix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _saved(tmp_path)
    monkeypatch.setattr(os, "replace", _failing_replace({2}))  # weights replaced, config not
    with pytest.raises(OSError, match="simulated"):
        save_model(path, {"w": torch.zeros(7)}, {"new": True})
    monkeypatch.undo()
    with pytest.raises(ModelFileError, match="interrupted save"):
        load_model(path)


def test_failed_write_before_rename_keeps_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _saved(tmp_path)

    def broken_fsync(fd: int) -> None:
        raise OSError("simulated disk error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="simulated"):
        save_model(path, {"w": torch.zeros(7)}, {"new": True})
    monkeypatch.undo()
    assert load_model(path)[1] == CONFIG
    assert sorted(p.name for p in path.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]


def test_atomic_write_bytes_and_checkpoint_keep_old_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "file.bin"
    atomic_write_bytes(target, b"old")
    ckpt = tmp_path / "last.safetensors"
    save_checkpoint(ckpt, {"w": torch.ones(3)}, {"epoch": 1})
    monkeypatch.setattr(os, "replace", _failing_replace({1, 2}))
    with pytest.raises(OSError, match="simulated"):
        atomic_write_bytes(target, b"new")
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(ckpt, {"w": torch.zeros(3)}, {"epoch": 2})
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    tensors, meta = load_checkpoint(ckpt)
    assert meta == {"epoch": 1}
    assert torch.equal(tensors["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin", "last.safetensors"]


_KILL_SCRIPT = """
import sys, torch
from gpvae.io import save_checkpoint
path = sys.argv[1]
step = 0
print("ready", flush=True)
while True:
    step += 1
    w = torch.full((256, 256), float(step))
    save_checkpoint(path, {"w": w, "step": torch.tensor(step)}, {"step": step})
"""


@pytest.mark.slow
def test_checkpoint_survives_sigkill(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt.safetensors"
    last = 0
    for delay in (0.3, 0.05, 0.5, 0.17):
        proc = subprocess.Popen(
            [sys.executable, "-c", _KILL_SCRIPT, str(ckpt)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        proc.stdout.readline()
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if not ckpt.exists():
            continue
        tensors, meta = load_checkpoint(ckpt)  # never corrupt
        step = meta["step"]
        assert int(tensors["step"]) == step
        assert torch.all(tensors["w"] == float(step))
        last = step
    assert last > 0


# ---------------------------------------------------------------- state dict check


def test_check_state_dict_names_every_problem() -> None:
    state = {"a": torch.ones(2, 3), "b": torch.ones(4), "extra": torch.ones(1)}
    expected = {"a": (2, 3), "b": torch.Size([5]), "c": (1,)}
    with pytest.raises(ModelFileError) as info:
        check_state_dict(state, expected)
    message = str(info.value)
    for needle in ("missing keys ['c']", "unexpected keys ['extra']", "b: expected (5,)"):
        assert needle in message
    check_state_dict(state, {k: v.shape for k, v in state.items()})  # no error


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_with_optimizer_and_rng(tmp_path: Path, no_unpickling: None) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": torch.get_rng_state(),
        "best": float("inf"),
        "history": [{"loss": 1.5}, {"loss": float("nan")}],
        "shape": (2, 3),
    }
    tensors, skeleton = flatten_state(state, prefix="s.")
    save_checkpoint(tmp_path / "c.safetensors", tensors, {"state": skeleton, "epoch": 3})
    loaded_tensors, meta = load_checkpoint(tmp_path / "c.safetensors")
    assert meta["epoch"] == 3
    back = unflatten_state(loaded_tensors, meta["state"])
    assert back["best"] == float("inf")
    assert back["shape"] == (2, 3)
    assert back["history"][0] == {"loss": 1.5}
    assert torch.equal(back["rng"], state["rng"])
    opt2 = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=1.0)
    opt2.load_state_dict(back["optimizer"])
    assert opt2.state_dict()["param_groups"] == opt.state_dict()["param_groups"]
    for k, v in opt.state_dict()["state"][0].items():
        assert torch.equal(opt2.state_dict()["state"][0][k], v)
    with pytest.raises(InputTypeError, match="state"):
        flatten_state({"bad": object()})


@pytest.mark.parametrize(
    "case", ["missing", "truncated", "no-meta", "wrong-version", "pickle", "flipped-byte"]
)
def test_malformed_checkpoint_raises(tmp_path: Path, case: str) -> None:
    ckpt = tmp_path / "c.safetensors"
    save_checkpoint(ckpt, {"w": torch.ones(100)}, {"epoch": 1})
    data = ckpt.read_bytes()
    if case == "missing":
        ckpt.unlink()
    elif case == "truncated":
        ckpt.write_bytes(data[: len(data) // 2])
    elif case == "no-meta":
        save_file({"w": torch.ones(2)}, str(ckpt))
    elif case == "wrong-version":
        payload = json.dumps({"format_version": 2, "meta": {}})
        save_file({"w": torch.ones(2)}, str(ckpt), metadata={"gpvae_checkpoint": payload})
    elif case == "pickle":
        ckpt.write_bytes(pickle.dumps({"epoch": 1}))
    elif case == "flipped-byte":  # in the last tensor byte: the file still parses
        ckpt.write_bytes(data[:-1] + bytes([data[-1] ^ 0x01]))
    with pytest.raises(ModelFileError, match="checkpoint"):
        load_checkpoint(ckpt)
