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

The lean cache also rebuilds a loaded library without parsing its bitcode. numba's cache
entry holds the function's machine code (an object file) and the LLVM bitcode of its whole
module; loading parses the bitcode (~1-2 MB for the struct-of-arrays passes) only to list
the symbols the module defines, which the JIT engine checks before it hands out a
function's address. The machine code itself goes to the JIT through an empty module. An
ELF object file (Linux) lists the same defined symbols in its symbol table, read here
directly (:func:`elf_defined_symbols`); the bitcode is kept and parsed only if numba asks
for the module later (to link the function into another one it compiles). Measured in a
fresh process (S2's one-epoch fit at T=48): parsing and scanning the bitcode took
~0.17 s of the ~0.24 s that loading the fit's four cached functions took. Other object
formats (macOS, Windows) load through numba's own rebuild.

Off with :data:`gpvae.settings.NUMBA_LEAN_LOAD` = False (environment variable
``GPVAE_NUMBA_LEAN_LOAD=0``), and skipped when numba's caching classes do not have the
methods used here (another numba version): numba's own loading then runs.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from types import ModuleType, SimpleNamespace
from typing import Any

from gpvae import settings

__all__ = ["elf_defined_symbols", "lean_loading"]

#: ELF symbol types that name code or data (no type, object, function); section and file
#: symbols are left out.
_ELF_NAMED_TYPES = (0, 1, 2)
_ELF_SYMTAB = 2  # section type of a symbol table


def elf_defined_symbols(obj: bytes) -> frozenset[str] | None:
    """The names of the symbols a 64-bit little-endian ELF object file defines (code and
    data, any binding), or None when ``obj`` is not one.

    A symbol is defined when its section index is not ``SHN_UNDEF`` (0); common and absolute
    symbols count as defined, as LLVM's module counts a common global as a definition.
    """
    if len(obj) < 64 or obj[:4] != b"\x7fELF" or obj[4] != 2 or obj[5] != 1:
        return None
    (shoff,) = struct.unpack_from("<Q", obj, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", obj, 0x3A)
    # per section header: type, offset, size, linked section, entry size
    headers = [
        struct.unpack_from("<4xI16xQQI12xQ", obj, shoff + i * shentsize) for i in range(shnum)
    ]
    names: set[str] = set()
    for kind, offset, size, link, entsize in headers:
        if kind != _ELF_SYMTAB or entsize == 0:
            continue
        strings = headers[link][1]
        for k in range(size // entsize):
            name, info, _, shndx = struct.unpack_from("<IBBH", obj, offset + k * entsize)
            if shndx == 0 or name == 0 or info & 0xF not in _ELF_NAMED_TYPES:
                continue
            start = strings + name
            names.add(obj[start : obj.index(b"\0", start)].decode())
    return frozenset(names)


@cache
def _lazy_library_class(base: Any) -> type:
    """``base`` (numba's JIT code library) whose module for linking is parsed from its
    bitcode on first use."""

    class LazyLinkingLibrary(base):
        """A code library rebuilt from numba's cache without parsing its bitcode."""

        @property
        def _shared_module(self) -> Any:
            state = self.__dict__
            if state.get("_lean_module") is None and state.get("_lean_bitcode") is not None:
                import llvmlite.binding as ll

                state["_lean_module"] = ll.parse_bitcode(state.pop("_lean_bitcode"))
            return state.get("_lean_module")

        @_shared_module.setter
        def _shared_module(self, value: Any) -> None:
            self.__dict__.pop("_lean_bitcode", None)
            self.__dict__["_lean_module"] = value

    LazyLinkingLibrary.__name__ = LazyLinkingLibrary.__qualname__ = f"Lazy{base.__name__}"
    return LazyLinkingLibrary


def _rebuild_library(codegen: Any, state: tuple[str, str, Any]) -> Any | None:
    """The code library of a cache entry (``state``: numba's serialized library), its
    machine code loaded and its symbols recorded, without parsing its bitcode; None when
    the entry is not object code in ELF (numba's own rebuild then runs)."""
    name, kind, data = state
    if kind != "object":
        return None
    object_code, bitcode = data
    symbols = elf_defined_symbols(object_code)
    defined = getattr(getattr(codegen, "_engine", None), "_defined_symbols", None)
    if symbols is None or not isinstance(defined, set):
        return None
    library = codegen.create_library(name)
    library.enable_object_caching()
    library._set_compiled_object(object_code)
    library.__class__ = _lazy_library_class(library.__class__)
    library.__dict__.pop("_shared_module", None)  # set by the constructor; now the property
    library.__dict__["_lean_bitcode"] = bitcode
    library._finalize_final_module()  # the empty module: the JIT takes the object code
    defined |= symbols  # the JIT engine's record: what it hands out addresses for
    return library


@contextmanager
def _lean_rebuild(codegen: Any) -> Iterator[None]:
    """``codegen`` rebuilding libraries through :func:`_rebuild_library` inside the block.

    A block entered inside another one (a load that loads another function, or a second
    thread) leaves the override to the outer block, which removes it on leaving; a load
    after that uses numba's own rebuild, which gives the same library.
    """
    if "unserialize_library" in vars(codegen):
        yield
        return
    fallback = type(codegen).unserialize_library

    def unserialize_library(state: Any) -> Any:
        library = _rebuild_library(codegen, state)
        return fallback(codegen, state) if library is None else library

    codegen.unserialize_library = unserialize_library
    try:
        yield
    finally:
        vars(codegen).pop("unserialize_library", None)


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
    from numba.core.codegen import Codegen, CPUCodeLibrary

    library_needs = ("enable_object_caching", "_set_compiled_object", "_finalize_final_module")
    if not hasattr(Codegen, "unserialize_library") or not all(
        hasattr(CPUCodeLibrary, name) for name in library_needs
    ):  # pragma: no cover - another numba version
        return None

    class LeanFunctionCache(FunctionCache):
        """numba's function cache, loading without ``target_context.refresh()``."""

        def load_overload(self, sig: Any, target_context: Any) -> Any:
            rtsys.initialize(target_context)  # NRT's symbols: what loaded code links to
            codegen = target_context.codegen()
            with self._guard_against_spurious_io_errors(), _lean_rebuild(codegen):
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
