"""``gpvae.gp._numba_cache``: the compiled loops load from numba's cache without numba's
context refresh, and compute the same numbers as with numba's own loading."""

from __future__ import annotations

import os
import subprocess
import sys

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
