"""The package version (its own module, so that low layers can read it without importing
the package's top level)."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0.dev0"
