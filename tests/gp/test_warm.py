"""``gpvae.gp.warm``: compiling the numba loops ahead of the first fit."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpvae import settings
from gpvae.errors import ValidationError
from gpvae.gp.warm import PARTS, compile_loops, main

#: In a fresh process: compile the given part, then print the dtypes of the array arguments
#: of every signature of the struct-of-arrays forward and backward loops it compiled or loaded.
_PROBE = """
import sys
from pathlib import Path
from gpvae.gp import _soa_loops
from gpvae.gp.warm import compile_loops
compile_loops([sys.argv[1]])
for fn in (_soa_loops.forward, _soa_loops.backward):
    print(sorted({str(a.dtype) for sig in fn.signatures for a in sig if hasattr(a, "ndim")}))
"""


def _probe(code: str, *argv: str, timeout: float = 600) -> str:
    """Run ``code`` in a fresh interpreter (one torch thread); its stdout, after checking it
    exited cleanly."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code, *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize(("part", "dtype"), [("default", "float64"), ("float32-kernel", "float32")])
def test_each_part_compiles_the_struct_of_arrays_loops_of_its_dtype(part: str, dtype: str) -> None:
    forward, backward = (ast.literal_eval(line) for line in _probe(_PROBE, part).splitlines())
    assert dtype in forward
    assert dtype in backward


@pytest.mark.parametrize("before", [False, True])
def test_the_float32_setting_is_restored(monkeypatch: pytest.MonkeyPatch, before: bool) -> None:
    monkeypatch.setattr(settings, "FUSED_SOA_FLOAT32", before)
    compile_loops(PARTS)
    assert settings.FUSED_SOA_FLOAT32 is before


def test_an_unknown_part_is_named() -> None:
    with pytest.raises(ValidationError, match=r"parts: expected a subset of .*'float64'"):
        compile_loops(["default", "float64"])


def test_the_command_line_names_a_bad_part(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["nonsense"])
    assert exc.value.code == 2
    assert "parts: expected a subset of" in capsys.readouterr().err


def test_the_command_line_reports_the_parts_it_compiled(capsys: pytest.CaptureFixture[str]) -> None:
    main(["float32-kernel", "--quiet"])
    out = capsys.readouterr().out
    assert out.startswith("gpvae: numba loops ready (float32-kernel: ")
    assert "gpvae: bytecode caches " in out


def test_the_default_part_compiles_the_matern32_tables_loop() -> None:
    # the compiled Matern-3/2 tables (gpvae.gp._tables_loops) run in every Matern-3/2 fit:
    # the default part compiles (or loads) them in a fresh process
    probe = (
        "from gpvae.gp import _transitions\n"
        "from gpvae.gp.warm import compile_loops\n"
        "compile_loops(['default'])\n"
        "print(len(_transitions._tables_loops().matern32.signatures))\n"
    )
    assert int(_probe(probe).strip()) >= 1


@pytest.mark.parametrize(("value", "expected"), [("", "True"), ("0", "False"), ("1", "True")])
def test_the_float32_kernel_switch_reads_its_environment_variable(value, expected) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "GPVAE_FUSED_SOA_FLOAT32": value}
    code = "from gpvae import settings; print(settings.FUSED_SOA_FLOAT32)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected


def test_a_bad_float32_kernel_switch_is_named() -> None:
    env = {**os.environ, "GPVAE_FUSED_SOA_FLOAT32": "yes"}
    code = "import gpvae.settings"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert "GPVAE_FUSED_SOA_FLOAT32: expected 0 or 1, found 'yes'" in out.stderr


def test_fits_after_the_warm_up_compile_no_new_signature() -> None:
    # a default fit over several latent channels (one group: the struct-of-arrays loops) and
    # one over few chains (the per-chain loops) load every loop the warm-up compiled, with
    # the same signatures (before, a group of several channels passed its inclusion mask in
    # C layout where the warm-up's groups of one channel passed F and A layouts, so a first
    # fit after the warm-up still compiled for minutes)
    probe = (
        "import numpy as np\n"
        "from numba.core.dispatcher import Dispatcher\n"
        "from gpvae import GPVAE\n"
        "from gpvae.gp import _fused_loops, _soa_loops, _tables_loops\n"
        "from gpvae.gp.warm import compile_loops\n"
        "compile_loops()\n"
        "fns = [f for mod in (_soa_loops, _fused_loops, _tables_loops)\n"
        "       for f in vars(mod).values() if isinstance(f, Dispatcher)]\n"
        "before = [set(f.signatures) for f in fns]\n"
        "rng = np.random.default_rng(0)\n"
        "for n, L in ((16, 4), (2, 3)):\n"
        "    X = rng.standard_normal((n, 12, 3)).astype(np.float32)\n"
        "    X[rng.random(X.shape) < 0.2] = np.nan\n"
        "    GPVAE(latent_dim=L, hidden=(8,), batch_size=16, epochs=1, patience=None,\n"
        "          val_fraction=0.0, calibrate=False, progress=False).fit(X)\n"
        "print([f.py_func.__name__ for f, b in zip(fns, before) if set(f.signatures) != b])\n"
    )
    assert ast.literal_eval(_probe(probe, timeout=900).strip().splitlines()[-1]) == []


def test_bytecode_caches_are_written_where_imports_do_not_write_them(tmp_path: Path) -> None:
    # PYTHONDONTWRITEBYTECODE: imports write no cache, so every process compiled the source
    # of the loops modules inside its first fit; compile_bytecode writes them regardless
    # (redirected here to tmp_path by PYTHONPYCACHEPREFIX)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(tmp_path)}
    code = (
        "import importlib.util, os, sys\n"
        "import gpvae.gp._transitions as t\n"
        "cached = importlib.util.cache_from_source(t.__file__)\n"
        "print(os.path.exists(cached))\n"
        "from gpvae.gp.warm import compile_bytecode\n"
        "print(compile_bytecode())\n"
        "soa = importlib.util.find_spec('gpvae.gp._soa_loops').origin\n"
        "print(os.path.exists(cached), os.path.exists(importlib.util.cache_from_source(soa)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True", "True", "True"]
