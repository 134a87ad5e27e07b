"""``gpvae.gp._numba_cache``: the compiled loops load from numba's cache without numba's
context refresh, and compute the same numbers as with numba's own loading."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from gpvae import settings
from gpvae.gp import _compiled
from gpvae.gp._numba_cache import lean_loading

#: In a fresh process: every compiled path of the Markov backend the warm-up runs (per-step
#: loops, fused per chain, fused struct-of-arrays in float64 and with the float32 kernel,
#: Matern 1/2, 3/2, 5/2 and their mix; values, draws and gradients), then a digest of all
#: outputs and whether numba's implementation registries were loaded (``numba.np.arraymath``
#: is imported by the refresh, by nothing gpvae imports).
_PROBE = """
import hashlib, sys
import torch
from gpvae import settings
from gpvae.gp import warm
from gpvae.gp.markov import MarkovGPPosterior

digest = hashlib.sha256()
for method, layout, dtype, float32_kernel in warm._steps("default") + warm._steps("float32-kernel"):
    settings.FUSED_SOA_FLOAT32 = float32_kernel
    for kernels in warm._kernel_sets():
        x, mean, var, valid = warm._problem(len(kernels), dtype)
        post = MarkovGPPosterior(kernels, x, mean, var, valid, method=method)
        post._fused_layout = layout
        g = torch.Generator().manual_seed(1)
        outs = [post.sample(2, g), post.kl(), post.log_marginal, *post.marginals()]
        outs += [*post.predict(x[:, :3] + 0.25), post.sample_at(x[:, :3] + 0.25, 1, g)]
        sum(o.sum() for o in outs).backward()
        outs += [mean.grad, var.grad] + [p.grad for k in kernels for p in k.parameters()]
        for o in outs:
            digest.update(o.detach().double().contiguous().numpy().tobytes())
print(digest.hexdigest(), "numba.np.arraymath" in sys.modules)
"""


def _run(lean: bool) -> tuple[str, bool]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GPVAE_NUMBA_LEAN_LOAD": "1" if lean else "0"}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=1800
    )
    assert out.returncode == 0, out.stderr
    digest, refreshed = out.stdout.split()[-2:]
    return digest, refreshed == "True"


@pytest.mark.slow
def test_lean_loading_gives_numbas_numbers_without_its_refresh() -> None:
    # numba's own loading first: it compiles whatever the cache lacks (and refreshes)
    digest, refreshed = _run(lean=False)
    assert refreshed
    lean_digest, lean_refreshed = _run(lean=True)
    assert lean_digest == digest  # the same machine code: the same numbers bit for bit
    assert not lean_refreshed


def test_lean_loading_covers_the_loops_modules_dispatchers() -> None:
    from numba.core.dispatcher import Dispatcher

    soa = _compiled.loops_module("_soa_loops")
    caches = {type(f._cache).__name__ for f in vars(soa).values() if isinstance(f, Dispatcher)}
    assert caches == {"LeanFunctionCache"}
    per_step = _compiled._Loops.loops(2)
    caches = {type(f._cache).__name__ for f in vars(per_step).values()}
    assert caches == {"LeanFunctionCache"}


def test_lean_loading_off_leaves_numbas_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    import numba

    @numba.njit(cache=True)
    def twice(x: float) -> float:  # never called: nothing compiled or written
        return 2.0 * x

    module = types.SimpleNamespace(twice=twice)
    monkeypatch.setattr(settings, "NUMBA_LEAN_LOAD", False)
    assert lean_loading(module) == 0
    assert type(twice._cache).__name__ == "FunctionCache"
    monkeypatch.setattr(settings, "NUMBA_LEAN_LOAD", True)
    assert lean_loading(module) == 1
    assert type(twice._cache).__name__ == "LeanFunctionCache"
    assert lean_loading(module) == 0  # given once


def test_a_bad_lean_load_switch_is_named() -> None:
    env = {**os.environ, "GPVAE_NUMBA_LEAN_LOAD": "yes"}
    out = subprocess.run(
        [sys.executable, "-c", "import gpvae.settings"], env=env, capture_output=True, text=True
    )
    assert out.returncode != 0
    assert "GPVAE_NUMBA_LEAN_LOAD: expected 0 or 1, found 'yes'" in out.stderr


def test_elf_defined_symbols_reads_defined_names_only() -> None:
    from gpvae.gp._numba_cache import elf_defined_symbols

    assert elf_defined_symbols(b"\x7fELF") is None  # too short
    assert elf_defined_symbols(b"\xcf\xfa\xed\xfe" + bytes(100)) is None  # Mach-O
    # a relocatable ELF64 object: section 0 (null), 1 (.text), 2 (.symtab), 3 (.strtab)
    strtab = b"\0f\0g\0undef\0sect\0"
    symbols = [  # (name offset, info = binding << 4 | type, section index)
        (0, 0, 0),  # the null symbol
        (1, 0x12, 1),  # f: global function in .text
        (3, 0x01, 1),  # g: local object
        (5, 0x12, 0),  # undef: referenced, not defined
        (11, 0x03, 1),  # sect: a section symbol
    ]
    symtab = b"".join(struct.pack("<IBBHQQ", n, info, 0, shndx, 0, 0) for n, info, shndx in symbols)
    sym_off = 64  # right after the file header
    str_off = sym_off + len(symtab)
    shoff = str_off + len(strtab)
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x28, shoff)
    struct.pack_into("<HHH", header, 0x3A, 64, 4, 0)

    def section(kind: int, offset: int, size: int, link: int, entsize: int) -> bytes:
        return struct.pack("<IIQQQQIIQQ", 0, kind, 0, 0, offset, size, link, 0, 1, entsize)

    sections = section(0, 0, 0, 0, 0) + section(1, 0, 0, 0, 0)
    sections += section(2, sym_off, len(symtab), 3, 24) + section(3, str_off, len(strtab), 0, 0)
    obj = bytes(header) + symtab + strtab + sections
    assert elf_defined_symbols(obj) == {"f", "g"}


#: A module with one cached numba function, compiled into its cache by the first run; the
#: second run loads it through the lean cache, then checks the rebuilt library and links it
#: into a function numba compiles in that process.
_MODULE = """
import numba

@numba.njit(cache=True)
def affine(x, a, b):
    return a * x + b
"""

_LEAN_PROBE = """
import sys
import numba
import numpy as np
import probe_module
from gpvae.gp import _numba_cache
from gpvae.gp._numba_cache import lean_loading

read = []  # the symbol sets read from object files
def reading(obj, _read=_numba_cache.elf_defined_symbols):
    read.append(_read(obj))
    return read[-1]
_numba_cache.elf_defined_symbols = reading
if sys.argv[1] == "compile":
    probe_module.affine(np.arange(3.0), 2.0, 1.0)
    sys.exit(0)
assert lean_loading(probe_module) == 1
x = np.arange(5.0)
assert np.array_equal(probe_module.affine(x, 2.0, 1.0), 2.0 * x + 1.0)
assert probe_module.affine.stats.cache_hits, "not loaded from the cache"
library = probe_module.affine.overloads[probe_module.affine.signatures[0]].library
assert type(library).__name__ == "LazyJITCodeLibrary", type(library)
assert "_lean_bitcode" in library.__dict__  # not parsed yet
module = library._shared_module  # parsed now, as numba would have at load
defined = {g.name for gs in (module.functions, module.global_variables) for g in gs
           if not g.is_declaration}
engine = library.codegen._engine
assert read == [defined]  # the object file's symbols: those numba reads from the bitcode
assert defined <= engine._defined_symbols
@numba.njit
def caller(x):  # compiled here: links the lean library's module
    return probe_module.affine(x, 3.0, -1.0).sum()
assert caller(x) == (3.0 * x - 1.0).sum()
print("ok", len(defined))
"""


def test_lean_rebuild_records_numbas_symbols_and_links_later(tmp_path: Path) -> None:
    (tmp_path / "probe_module.py").write_text(_MODULE)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "GPVAE_NUMBA_LEAN_LOAD": "1",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]),
    }
    for step in ("compile", "load"):
        out = subprocess.run(
            [sys.executable, "-c", _LEAN_PROBE, step],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "ok"


def test_lean_rebuild_falls_back_to_numba_and_nests() -> None:
    from gpvae.gp._numba_cache import _lean_rebuild

    class Codegen:
        def unserialize_library(self, state: tuple[str, str, bytes]) -> str:
            return f"numba's rebuild of {state[0]}"

    codegen = Codegen()
    with _lean_rebuild(codegen):
        with _lean_rebuild(codegen):  # a nested load
            assert "unserialize_library" in vars(codegen)
        assert "unserialize_library" in vars(codegen)  # still the outer block's
        # bitcode entries and object files that are not ELF go to numba's rebuild
        assert codegen.unserialize_library(("f", "bitcode", b"")) == "numba's rebuild of f"
        macho = b"\xcf\xfa\xed\xfe" + bytes(100)
        assert codegen.unserialize_library(("g", "object", (macho, b""))) == "numba's rebuild of g"
    assert "unserialize_library" not in vars(codegen)
