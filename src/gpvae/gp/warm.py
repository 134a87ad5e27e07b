"""Compile the numba loops of the Markov backend ahead of the first fit.

On the CPU the Markov backend runs loops compiled by numba on first use and cached beside
the package (``cache=True``). A fresh installation pays for that compilation (about a
minute or two on a 2-core machine) inside its first fit, and every process of a
multi-process fit (``torchrun``) or a parallel test run that starts before the cache exists
compiles the same loops again. :func:`compile_loops` runs every compiled path once on a
tiny problem, so that later processes load the loops from the cache:

.. code-block:: bash

    python -m gpvae.gp.warm          # once per installation, e.g. in an image build

It also writes the bytecode caches of gpvae's modules (:func:`compile_bytecode`), which a
source checkout run with ``PYTHONDONTWRITEBYTECODE`` never gets.

numba uses a cache only in a folder the running user can write: beside the package
(``gpvae/gp/__pycache__``), else in the user's ``~/.cache``, or in ``NUMBA_CACHE_DIR`` when
that is set. So a cache warmed by the owner of a read-only installation (root in an image
build, an administrator) is not used by the other users: their first fit compiles the loops
again into their own ``~/.cache``, and a user who has no writable home gets them compiled in
every process (after a warning naming ``NUMBA_CACHE_DIR``). For an installation shared by
several users, or a container run as another user, set ``NUMBA_CACHE_DIR`` to one folder for
everyone, warm it once with the variable set, and let the users write in it (numba skips a
cache folder it cannot write, even to read it):

.. code-block:: bash

    export NUMBA_CACHE_DIR=/opt/gpvae-numba-cache   # the same for every user and process
    python -m gpvae.gp.warm
    chmod -R a+rwX "$NUMBA_CACHE_DIR"

Nothing here changes a result: it calls the public posterior methods and throws their
outputs away.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from gpvae import settings
from gpvae.errors import ValidationError, invalid
from gpvae.gp._compiled import _numba
from gpvae.gp.markov import MarkovGPPosterior
from gpvae.kernels import Kernel, Matern12, Matern32, Matern52

__all__ = ["compile_bytecode", "compile_loops"]

#: (method, fused layout) of every compiled path: the per-step loops, the fused pass per
#: chain, and the fused pass on struct-of-arrays buffers.
_PATHS = (("compiled", "auto"), ("fused", "chains"), ("fused", "soa"))


def _kernel_sets() -> list[list[Kernel]]:
    """Channel kernels covering state dimensions 1, 2 and 3, alone and mixed."""
    return [
        [Matern12(lengthscale=2.0)],
        [Matern32(lengthscale=2.0)],
        [Matern52(lengthscale=2.0)],
        [Matern12(lengthscale=1.5), Matern32(lengthscale=3.0), Matern52(lengthscale=4.0)],
    ]


def _problem(L: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Two series of 7 points: irregular steps, a repeated point, trailing padding and an
    excluded entry, so that every branch of the loops is taken."""
    g = torch.Generator().manual_seed(0)
    x = torch.tensor([[0.0, 0.5, 0.5, 2.0, 3.5, 4.0, 4.0], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    mean = torch.randn(2, 7, L, generator=g, dtype=torch.float64).to(dtype)
    var = (0.5 + torch.rand(2, 7, L, generator=g, dtype=torch.float64)).to(dtype)
    var[0, 3, 0] = torch.inf
    valid = torch.ones(2, 7, dtype=torch.bool)
    valid[0, -1] = False
    return x[..., None].to(dtype), mean.requires_grad_(), var.requires_grad_(), valid


def _run(kernels: Sequence[Kernel], method: str, layout: str, dtype: torch.dtype) -> None:
    x, mean, var, valid = _problem(len(kernels), dtype)
    post = MarkovGPPosterior(kernels, x, mean, var, valid, method=method)
    post._fused_layout = layout
    g = torch.Generator().manual_seed(1)
    loss = post.sample(2, g).sum() + post.kl().sum() + post.log_marginal.sum()
    m, v = post.marginals()
    loss = loss + m.sum() + v.sum()
    pm, pv = post.predict(x[:, :3] + 0.25)
    (loss + pm.sum() + pv.sum()).backward()
    post.sample_at(x[:, :3] + 0.25, 1, g)


#: The parts :func:`compile_loops` can be asked for: every compiled path on float64 and
#: float32 data with the float64 kernel, and the float32 struct-of-arrays kernel
#: (``settings.FUSED_SOA_FLOAT32``, on by default: a default fit on float32 data runs it). Two
#: processes can compile one part each at the same time.
PARTS = ("default", "float32-kernel")


def _steps(part: str) -> list[tuple[str, str, torch.dtype, bool]]:
    """(method, layout, data dtype, float32 kernel) of every run of ``part``."""
    if part == "float32-kernel":
        return [("fused", "soa", torch.float32, True)]
    return [
        (method, layout, dtype, False)
        for method, layout in _PATHS
        for dtype in (torch.float64, torch.float32)
    ]


def compile_loops(
    parts: Sequence[str] = PARTS, *, progress: Callable[[str], None] | None = None
) -> float:
    """Compile (or load from numba's cache) the compiled loops of the Markov backend.

    Part "default" runs each compiled path (per-step loops, fused per chain, fused on
    struct-of-arrays buffers) on float64 and float32 data; part "float32-kernel" the
    struct-of-arrays pass with its float32 kernel. Each for Matern 1/2, 3/2, 5/2 and a mix
    of them, forward and backward.

    Args:
        parts: a subset of :data:`PARTS`.
        progress: called with a short line per path, or None.

    Returns:
        The wall time taken, in seconds.

    Raises:
        ValidationError: an unknown part.
        ImportError: numba is not installed (the Markov backend then runs its torch loops,
            several times slower, and there is nothing to compile).
    """
    for part in parts:
        if part not in PARTS:
            raise invalid("parts", f"a subset of {list(PARTS)}", repr(part))
    if not _numba():
        raise ImportError(
            "numba is not installed (or does not import), so there are no compiled loops to "
            "warm: the Markov backend runs its torch loops, several times slower; install "
            "numba (pip install numba)"
        )
    start = time.perf_counter()
    saved = settings.FUSED_SOA_FLOAT32
    try:
        for part in parts:
            for method, layout, dtype, float32_kernel in _steps(part):
                settings.FUSED_SOA_FLOAT32 = float32_kernel
                for kernels in _kernel_sets():
                    _run(kernels, method, layout, dtype)
                if progress is not None:
                    kind = "float32 kernel" if float32_kernel else f"{str(dtype)[6:]} data"
                    took = time.perf_counter() - start
                    progress(f"{method} {layout}, {kind}: {took:.0f} s")
    finally:
        settings.FUSED_SOA_FLOAT32 = saved
    return time.perf_counter() - start


def compile_bytecode() -> bool:
    """Write the bytecode caches (``__pycache__/*.pyc``) of gpvae's modules that lack a
    current one, as ``pip install`` does for an installed package.

    The loops modules are imported inside the first fit (numba is imported on first use),
    so without their bytecode that fit compiles their source (~0.1 s for the
    struct-of-arrays module on a 2-core machine). Python writes the caches at the first
    import itself, except in an editable or source checkout run with
    ``PYTHONDONTWRITEBYTECODE`` set (or ``python -B``): there every process compiles them
    again. Writing them here (which that setting does not prevent) makes such a checkout
    start like an installed package.

    Returns:
        Whether every module compiled and its cache could be written (a read-only
        installation, whose caches pip wrote, returns False and changes nothing).
    """
    import compileall
    from pathlib import Path

    package = Path(__file__).resolve().parents[1]  # gpvae/ (this file is gpvae/gp/warm.py)
    return bool(compileall.compile_dir(package, quiet=2))


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m gpvae.gp.warm [PART ...]``: compile the given parts (default: all) and the
    bytecode of gpvae's modules (:func:`compile_bytecode`; not with ``--no-bytecode``)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m gpvae.gp.warm", description="Compile gpvae's numba loops once."
    )
    parser.add_argument("parts", nargs="*", help=f"Any of {', '.join(PARTS)} (default: all).")
    parser.add_argument("--quiet", action="store_true", help="Print only the total time.")
    parser.add_argument(
        "--no-bytecode",
        action="store_true",
        help="Do not write the bytecode caches (__pycache__) of gpvae's modules.",
    )
    args = parser.parse_args(argv)
    parts = args.parts or list(PARTS)
    try:
        took = compile_loops(parts, progress=None if args.quiet else print)
    except (ValidationError, ImportError) as err:
        parser.error(str(err))
    print(f"gpvae: numba loops ready ({', '.join(parts)}: {took:.0f} s)")
    if not args.no_bytecode:
        written = compile_bytecode()
        print(f"gpvae: bytecode caches {'written' if written else 'not all writable'}")


if __name__ == "__main__":
    main()
