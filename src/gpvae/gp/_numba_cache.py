"""Loading gpvae's compiled loops from numba's on-disk cache without numba's full start.

A numba dispatcher with ``cache=True`` loads a cached function through
``FunctionCache.load_overload``, which first calls ``target_context.refresh()``: on its
first call in a process that imports every implementation registry numba has (numba.cpython,
numba.np, numba.typed, numba.experimental, ...; ``numba.np.arraymath`` imports
``scipy.linalg`` to check for BLAS) and installs them in the typing and target contexts.
That is what numba needs to *compile* a function; a cached function is machine code
already, and loading it needs only numba's runtime (NRT) symbols in LLVM's symbol table
(``rtsys.initialize``; the C helpers and math functions are installed when the target
context is made). Measured in a fresh process (S2's one-epoch fit at T=48, gpvae imported):
the refresh is ~0.3 s of the ~0.8 s that numba costs a first fit.

:func:`lean_loading` gives the dispatchers of a loops module a cache whose
``load_overload`` skips the refresh. A cache miss still compiles through numba's compiler,
which refreshes the contexts itself (``CompilerBase.__init__``), and so does any numba
function compiled later in the process (the user's own): nothing numba needs is skipped,
it is only not done for a load that does not use it. The machine code run is the same
(the same cache entry), so results are the same bit for bit (tested in a fresh process).

Off with :data:`gpvae.settings.NUMBA_LEAN_LOAD` = False (environment variable
``GPVAE_NUMBA_LEAN_LOAD=0``), and skipped when numba's caching classes do not have the
methods used here (another numba version): numba's own loading then runs.
"""

from __future__ import annotations

from types import ModuleType, SimpleNamespace
from typing import Any

from gpvae import settings

__all__ = ["lean_loading"]


def _lean_cache_class() -> type | None:
    """A ``FunctionCache`` whose ``load_overload`` skips the context refresh, or None when
    this numba's classes lack what it relies on."""
    try:
        from numba.core.caching import FunctionCache
        from numba.core.runtime import rtsys
    except ImportError:  # pragma: no cover - another numba layout
        return None
    needed = ("_load_overload", "_guard_against_spurious_io_errors", "load_overload")
    if not all(hasattr(FunctionCache, name) for name in needed):  # pragma: no cover
        return None

    class LeanFunctionCache(FunctionCache):
        """numba's function cache, loading without ``target_context.refresh()``."""

        def load_overload(self, sig: Any, target_context: Any) -> Any:
            rtsys.initialize(target_context)  # NRT's symbols: what loaded code links to
            with self._guard_against_spurious_io_errors():
                return self._load_overload(sig, target_context)

    return LeanFunctionCache


def lean_loading(module: ModuleType | SimpleNamespace) -> int:
    """Give every caching numba dispatcher among ``module``'s attributes (a loops module, or
    the namespace of loops :func:`gpvae.gp._loops.loops` builds) the lean cache (see the
    module docstring); returns how many were given it (0 when off or not applicable)."""
    if not settings.NUMBA_LEAN_LOAD:
        return 0
    cls = _lean_cache_class()
    if cls is None:  # pragma: no cover - another numba version
        return 0
    from numba.core.caching import FunctionCache
    from numba.core.dispatcher import Dispatcher

    count = 0
    for value in vars(module).values():
        cache = getattr(value, "_cache", None) if isinstance(value, Dispatcher) else None
        if type(cache) is FunctionCache:
            # the subclass adds no state: the cache made at decoration changes its class in
            # place (a new one would locate the function's cache files again, one per dispatcher)
            cache.__class__ = cls
            count += 1
    return count
