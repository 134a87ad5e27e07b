"""Safe, crash-safe model files and training checkpoints: safetensors + JSON, never pickle.

A **model** is a directory::

    model.safetensors   the weights (state dict), safetensors format
    config.json         {"format_version", "gpvae_version", "config", "extra", "weights"}

``config.json`` records the SHA-256 of ``model.safetensors``; loading checks it, so a weights
file that does not belong to its config (a save interrupted between the two renames, a
swapped or corrupted file) is rejected instead of loaded.

A **checkpoint** is one safetensors file whose header metadata holds the JSON ``meta``; it
is replaced in a single rename, so it is always either the old or the new checkpoint.
:func:`flatten_state` / :func:`unflatten_state` turn nested states (an optimiser's
``state_dict()``, RNG states) into tensors + JSON and back.

Every write goes to a temporary file in the target directory, is flushed and fsynced, then
moved over the target with ``os.replace`` (atomic on POSIX and Windows), and the directory is
fsynced. Loading reads bytes and JSON only: nothing is unpickled, ``torch.load`` is never
called, and files that look like pickles or ``torch.save`` archives are named as such.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import secrets
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save
from torch import Tensor

from gpvae.errors import InputTypeError, ModelFileError, ValidationError
from gpvae.version import __version__

__all__ = [
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "WEIGHTS_FILE",
    "ModelFile",
    "atomic_write_bytes",
    "check_state_dict",
    "flatten_state",
    "json_number",
    "load_checkpoint",
    "load_model",
    "read_model",
    "save_checkpoint",
    "save_model",
    "unflatten_state",
]

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
_CKPT_META_KEY = "gpvae_checkpoint"
_MAX_HEADER = 100_000_000


def _gpvae_version() -> str:
    return __version__


# ---------------------------------------------------------------- atomic writes


def json_number(v: Any) -> Any:
    """``v`` with non-finite floats replaced by None (JSON has no NaN or Inf)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _new_temp(directory: Path, prefix: str) -> tuple[int, str]:
    """Create ``directory/.{prefix}.XXXX.tmp`` exclusively; (fd, path).

    Unlike ``tempfile.mkstemp`` (always mode 0600), the file gets the mode a plain ``open``
    would give (0666 minus the umask), so a saved model is as readable as any other file.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        path = os.path.join(directory, f".{prefix}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file in {directory}")


def _write_temp(directory: Path, prefix: str, data: bytes) -> Path:
    """Write ``data`` to a new temporary file in ``directory``, flushed and fsynced."""
    fd, tmp = _new_temp(directory, prefix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return Path(tmp)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: readers see the old file or the new, never a mix.

    Writes a temporary file in the same directory, fsyncs it, ``os.replace``s it over
    ``path`` and fsyncs the directory. On any failure the temporary file is removed and the
    old file (if any) is left untouched.

    Args:
        path: target file; its directory must exist.
        data: the bytes to write.
    """
    target = Path(path)
    tmp = _write_temp(target.parent, target.name, bytes(data))
    try:
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


# ---------------------------------------------------------------- encoding


def _tensors_for_saving(tensors: Mapping[str, Any], name: str) -> dict[str, Tensor]:
    if not isinstance(tensors, Mapping):
        raise InputTypeError(f"{name}: expected a dict of tensors, found {type(tensors).__name__}")
    out: dict[str, Tensor] = {}
    for key, t in tensors.items():
        if not isinstance(key, str):
            raise InputTypeError(f"{name}: expected string keys, found {key!r}")
        if not isinstance(t, Tensor):
            raise InputTypeError(f"{name}[{key!r}]: expected a tensor, found {type(t).__name__}")
        if t.is_sparse or t.layout != torch.strided:
            raise InputTypeError(f"{name}[{key!r}]: expected a dense tensor, found {t.layout}")
        # A private contiguous CPU copy: safetensors refuses tensors that share memory.
        out[key] = t.detach().to("cpu", copy=True).contiguous()
    return out


def _to_json(obj: Any, name: str) -> str:
    try:
        return json.dumps(obj, indent=2, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValidationError(
            f"{name}: expected JSON-serialisable data (dicts, lists, str, finite numbers, bool, "
            f"None), found {err}"
        ) from None


def _describe_foreign(data: bytes) -> str | None:
    """Name formats that must never be loaded here (pickles, torch.save zip archives).

    A safetensors file starts with its header length (8 bytes, little-endian) and then the
    JSON header ``{``; a header of 640 bytes begins with the same two bytes as a protocol-2
    pickle, so the pickle test also asks that byte 8 is not ``{``.
    """
    looks_safetensors = data[8:9] == b"{"
    pickle_start = data[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
    if pickle_start and not looks_safetensors:
        return "a Python pickle"
    if data[:4] == b"PK\x03\x04":
        return "a zip archive (torch.save format, which contains a pickle)"
    return None


def _decode_safetensors(data: bytes, what: str) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Validate the safetensors layout by hand, then decode. Raises ModelFileError."""
    foreign = _describe_foreign(data)
    if foreign is not None:
        raise ModelFileError(
            f"{what}: expected a safetensors file, found {foreign}; gpvae never unpickles "
            "files (they can run arbitrary code)"
        )
    if len(data) < 8:
        raise ModelFileError(
            f"{what}: expected a safetensors file, found only {len(data)} bytes (truncated?)"
        )
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > min(len(data) - 8, _MAX_HEADER):
        raise ModelFileError(
            f"{what}: expected a safetensors header of at most {len(data) - 8} bytes, found a "
            f"declared length of {header_len} (truncated or not a safetensors file)"
        )
    try:
        header = json.loads(data[8 : 8 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ModelFileError(
            f"{what}: expected a JSON safetensors header, found malformed bytes"
        ) from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{what}: expected a JSON object header, found {type(header)}")
    metadata = header.pop("__metadata__", None) or {}
    body = len(data) - 8 - header_len
    end = 0
    for key, info in header.items():
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets)
        ):
            raise ModelFileError(f"{what}: expected data_offsets for tensor {key!r}, found {info}")
        if not 0 <= offsets[0] <= offsets[1] <= body:
            raise ModelFileError(
                f"{what}: tensor {key!r} expected within the {body} data bytes, found offsets "
                f"{offsets} (truncated file?)"
            )
        end = max(end, offsets[1])
    if end != body:
        raise ModelFileError(
            f"{what}: expected {end} data bytes after the header, found {body} (truncated or "
            "padded file)"
        )
    try:
        tensors = _st_load(data)
    except Exception as err:  # safetensors raises its own error types
        raise ModelFileError(f"{what}: malformed safetensors file ({err})") from None
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{what}: expected string metadata, found {type(metadata)}")
    return tensors, metadata


def _read_bytes(path: Path, what: str) -> bytes:
    if not path.is_file():
        raise ModelFileError(f"{what}: expected a file at {path}, found none")
    try:
        return path.read_bytes()
    except OSError as err:
        raise ModelFileError(f"{what}: could not read {path} ({err})") from None


# ---------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelFile:
    """Everything a model directory holds.

    Attributes:
        state_dict: name -> tensor (CPU).
        config: the ``config`` dict given to :func:`save_model`.
        extra: the ``extra`` dict given to :func:`save_model` ({} when none).
        format_version: the file format version (currently 1).
        gpvae_version: the gpvae version that wrote the files.
    """

    state_dict: dict[str, Tensor]
    config: dict[str, Any]
    extra: dict[str, Any]
    format_version: int
    gpvae_version: str


def save_model(
    path: str | os.PathLike[str],
    state_dict: Mapping[str, Tensor],
    config: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Save weights and JSON config to the directory ``path`` (created if needed).

    Both files are fully written and fsynced under temporary names before either replaces
    its predecessor; the weights are replaced first and ``config.json`` (which holds the
    weights' SHA-256) last. A crash before the first rename keeps the old model; a crash
    between the renames leaves a directory that :func:`load_model` rejects with a clear
    error, never one that loads mismatched parts.

    Args:
        path: model directory.
        state_dict: name -> tensor (any device; saved as contiguous CPU copies).
        config: JSON-serialisable model configuration.
        extra: optional JSON-serialisable extras (scaler state, history, ...).

    Raises:
        InputTypeError: a non-tensor value or non-string key in ``state_dict``.
        ValidationError: ``config`` or ``extra`` is not JSON-serialisable.
    """
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise ValidationError(f"path: expected a directory for the model, found a file {path}")
    if not isinstance(config, Mapping):
        raise InputTypeError(f"config: expected a dict, found {type(config).__name__}")
    if extra is not None and not isinstance(extra, Mapping):
        raise InputTypeError(f"extra: expected a dict or None, found {type(extra).__name__}")
    tensors = _tensors_for_saving(state_dict, "state_dict")
    weights = _st_save(tensors, metadata={"format": "pt"})
    document = {
        "format_version": FORMAT_VERSION,
        "gpvae_version": _gpvae_version(),
        "config": dict(config),
        "extra": dict(extra) if extra is not None else {},
        "weights": {"file": WEIGHTS_FILE, "sha256": hashlib.sha256(weights).hexdigest()},
    }
    _to_json(document["config"], "config")  # so that the error names the argument
    _to_json(document["extra"], "extra")
    doc_bytes = (_to_json(document, "config") + "\n").encode("utf-8")
    directory.mkdir(parents=True, exist_ok=True)
    tmp_weights = _write_temp(directory, WEIGHTS_FILE, weights)
    try:
        tmp_config = _write_temp(directory, CONFIG_FILE, doc_bytes)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_weights)
        raise
    try:
        os.replace(tmp_weights, directory / WEIGHTS_FILE)
        os.replace(tmp_config, directory / CONFIG_FILE)
    finally:
        for tmp in (tmp_weights, tmp_config):
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    _fsync_dir(directory)


def read_model(path: str | os.PathLike[str]) -> ModelFile:
    """Load and check a model directory written by :func:`save_model`.

    Reads only ``config.json`` (JSON) and ``model.safetensors`` (safetensors); other files in
    the directory (e.g. a pickled ``model.pt``) are ignored and never opened.

    Raises:
        ModelFileError: missing directory or files, invalid JSON, missing or unsupported
            ``format_version``, a malformed or truncated safetensors file, a pickle, or weights
            that do not match the SHA-256 recorded in ``config.json``.
    """
    directory = Path(path)
    if not directory.exists():
        raise ModelFileError(f"path: expected a model directory, found nothing at {directory}")
    if not directory.is_dir():
        kind = None
        if directory.is_file():
            with directory.open("rb") as f:
                kind = _describe_foreign(f.read(8))
        hint = f" ({kind}, which gpvae never loads)" if kind else ""
        raise ModelFileError(
            f"path: expected a model directory with {WEIGHTS_FILE} and {CONFIG_FILE}, found a "
            f"file {directory}{hint}"
        )
    raw = _read_bytes(directory / CONFIG_FILE, CONFIG_FILE)
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise ModelFileError(f"{CONFIG_FILE}: expected valid JSON, found {err}") from None
    if not isinstance(document, dict):
        raise ModelFileError(
            f"{CONFIG_FILE}: expected a JSON object, found {type(document).__name__}"
        )
    version = document.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise ModelFileError(
            f"{CONFIG_FILE}: expected format_version {FORMAT_VERSION}, found {version!r}"
            + (" (missing)" if version is None else " (written by another gpvae version?)")
        )
    config, extra = document.get("config"), document.get("extra", {})
    if not isinstance(config, dict) or not isinstance(extra, dict):
        raise ModelFileError(f"{CONFIG_FILE}: expected 'config' and 'extra' objects")
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        others = sorted(p.name for p in directory.iterdir() if p.suffix in (".pt", ".pth", ".pkl"))
        hint = f"; found {others}, which gpvae never loads (pickle)" if others else ""
        raise ModelFileError(f"{WEIGHTS_FILE}: expected the weights file, found none{hint}")
    data = _read_bytes(weights_path, WEIGHTS_FILE)
    weights_info = document.get("weights")
    expected_hash = weights_info.get("sha256") if isinstance(weights_info, dict) else None
    state_dict, _ = _decode_safetensors(data, WEIGHTS_FILE)
    if expected_hash is not None and hashlib.sha256(data).hexdigest() != expected_hash:
        raise ModelFileError(
            f"{WEIGHTS_FILE}: expected the weights recorded in {CONFIG_FILE} (sha256 "
            f"{str(expected_hash)[:12]}...), found different content (interrupted save or "
            "replaced file)"
        )
    return ModelFile(
        state_dict=state_dict,
        config=config,
        extra=extra,
        format_version=int(version),
        gpvae_version=str(document.get("gpvae_version", "unknown")),
    )


def load_model(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Load ``(state_dict, config)`` from a model directory; see :func:`read_model`."""
    model = read_model(path)
    return model.state_dict, model.config


def check_state_dict(
    state_dict: Mapping[str, Tensor], expected: Mapping[str, tuple[int, ...] | torch.Size]
) -> None:
    """Check names and shapes of loaded weights against what a model expects.

    Args:
        state_dict: loaded name -> tensor.
        expected: name -> shape, e.g. ``{k: v.shape for k, v in module.state_dict().items()}``.

    Raises:
        ModelFileError: listing every missing key, unexpected key and shape mismatch by name.
    """
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = [
        f"{k}: expected {tuple(expected[k])}, found {tuple(state_dict[k].shape)}"
        for k in sorted(set(expected) & set(state_dict))
        if tuple(state_dict[k].shape) != tuple(expected[k])
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if mismatched:
        problems.append("shape mismatches: " + "; ".join(mismatched))
    if problems:
        raise ModelFileError(
            "state_dict: does not match the model configuration: " + "; ".join(problems)
        )


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(
    path: str | os.PathLike[str], tensors: Mapping[str, Tensor], meta: Mapping[str, Any]
) -> None:
    """Atomically write a checkpoint file: tensors + JSON metadata in one safetensors file.

    Args:
        path: checkpoint file (its directory must exist), e.g. ``run/last.safetensors``.
        tensors: name -> tensor.
        meta: JSON-serialisable metadata (epoch, step, history, ...).
    """
    if not isinstance(meta, Mapping):
        raise InputTypeError(f"meta: expected a dict, found {type(meta).__name__}")
    payload = {
        "format_version": FORMAT_VERSION,
        "gpvae_version": _gpvae_version(),
        "meta": dict(meta),
    }
    _to_json(payload["meta"], "meta")
    saved = _tensors_for_saving(tensors, "tensors")
    payload["sha256"] = _tensor_digest(saved)  # load_checkpoint checks it (flipped bytes)
    data = _st_save(saved, metadata={_CKPT_META_KEY: _to_json(payload, "meta")})
    atomic_write_bytes(path, data)


def _tensor_digest(tensors: Mapping[str, Tensor]) -> str:
    """SHA-256 of every tensor's name, dtype, shape and bytes (in name order)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint` (never unpickles).

    Returns:
        (tensors, meta).

    Raises:
        ModelFileError: missing, truncated or malformed file, a pickle, or a wrong version.
    """
    target = Path(path)
    what = f"checkpoint {target.name}"
    data = _read_bytes(target, what)
    tensors, metadata = _decode_safetensors(data, what)
    try:
        payload = json.loads(metadata[_CKPT_META_KEY])
    except (KeyError, TypeError, ValueError):
        raise ModelFileError(f"{what}: expected gpvae checkpoint metadata, found none") from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        found = payload.get("format_version") if isinstance(payload, dict) else payload
        raise ModelFileError(f"{what}: expected format_version {FORMAT_VERSION}, found {found!r}")
    meta = payload.get("meta")
    if not isinstance(meta, dict):
        raise ModelFileError(f"{what}: expected a metadata object, found {type(meta).__name__}")
    digest = payload.get("sha256")  # checkpoints before it have none
    if digest is not None and digest != _tensor_digest(tensors):
        raise ModelFileError(
            f"{what}: expected tensors matching the SHA-256 recorded in the checkpoint, found "
            "other bytes (a corrupted file); delete it to fit afresh"
        )
    return tensors, meta


def flatten_state(state: Any, prefix: str = "") -> tuple[dict[str, Tensor], Any]:
    """Split a nested state into tensors and a JSON-able skeleton (no pickle needed).

    Dicts (any str/int/float/bool/None keys), lists, tuples, tensors, str, int, float (also
    NaN/Inf), bool and None are supported, e.g. ``optimizer.state_dict()`` or
    ``torch.get_rng_state()``. Each tensor is replaced by ``{"__tensor__": name}``.

    Args:
        state: the nested state.
        prefix: name prefix for the tensors.

    Returns:
        (tensors, skeleton): give both to :func:`unflatten_state` to rebuild ``state``.

    Raises:
        InputTypeError: an unsupported value type (names its path).
    """
    tensors: dict[str, Tensor] = {}

    def walk(obj: Any, where: str) -> Any:
        if isinstance(obj, Tensor):
            key = f"{prefix}{len(tensors)}"
            tensors[key] = obj
            return {"__tensor__": key}
        if obj is None or isinstance(obj, (bool, int, str)):
            return obj
        if isinstance(obj, float):
            return obj if math.isfinite(obj) else {"__float__": repr(obj)}
        if isinstance(obj, (list, tuple)):
            items = [walk(v, f"{where}[{i}]") for i, v in enumerate(obj)]
            return items if isinstance(obj, list) else {"__tuple__": items}
        if isinstance(obj, Mapping):
            pairs = []
            for k, v in obj.items():
                if not (k is None or isinstance(k, (bool, int, float, str))):
                    raise InputTypeError(f"state{where}: expected simple keys, found {k!r}")
                pairs.append([walk(k, where), walk(v, f"{where}[{k!r}]")])
            return {"__dict__": pairs}
        raise InputTypeError(
            f"state{where}: expected tensors, numbers, str, None, lists or dicts, found "
            f"{type(obj).__name__}"
        )

    return tensors, walk(state, "")


def unflatten_state(tensors: Mapping[str, Tensor], skeleton: Any) -> Any:
    """Inverse of :func:`flatten_state`.

    Raises:
        ModelFileError: the skeleton refers to a tensor that is missing, or is malformed.
    """

    def walk(obj: Any) -> Any:
        if isinstance(obj, list):
            return [walk(v) for v in obj]
        if not isinstance(obj, dict):
            return obj
        if "__tensor__" in obj:
            key = obj["__tensor__"]
            if key not in tensors:
                raise ModelFileError(f"checkpoint: expected tensor {key!r}, found none")
            return tensors[key]
        if "__float__" in obj:
            return float(obj["__float__"])
        if "__tuple__" in obj:
            return tuple(walk(v) for v in obj["__tuple__"])
        if "__dict__" in obj:
            return {walk(k): walk(v) for k, v in obj["__dict__"]}
        raise ModelFileError(f"checkpoint: unexpected entry {sorted(obj)} in the state skeleton")

    return walk(skeleton)
