"""User-facing errors.

Every error caused by what a user passed in is a :class:`GPVAEError`. The subclasses also
derive from the matching built-in (``ValueError``, ``TypeError``, ...) so that generic
``except ValueError`` code keeps working. Messages name the argument, what was expected
and what was found.
"""

from __future__ import annotations

import os
import sys

__all__ = [
    "DistributedError",
    "GPVAEError",
    "InputTypeError",
    "ModelFileError",
    "NotFittedError",
    "NumericalError",
    "ShapeError",
    "ValidationError",
    "invalid",
    "outside_stacklevel",
]


class GPVAEError(Exception):
    """Base class of every error that gpvae raises on purpose."""


class ValidationError(GPVAEError, ValueError):
    """An argument has a bad value (non-finite, out of range, unknown name, ...)."""


class ShapeError(GPVAEError, ValueError):
    """An argument has the wrong shape or does not match another argument's shape."""


class InputTypeError(GPVAEError, TypeError):
    """An argument has the wrong type or dtype."""


class NotFittedError(GPVAEError, RuntimeError):
    """A method that needs a fitted model was called before ``fit``."""


class NumericalError(GPVAEError, ArithmeticError):
    """A computation failed numerically (e.g. a Cholesky factorisation) after retries."""


class ModelFileError(GPVAEError, ValueError):
    """A model file or directory is missing, malformed or of an unsupported version."""


class DistributedError(GPVAEError, RuntimeError):
    """A distributed job cannot go on: another process failed, stopped or cannot be reached."""


def invalid(argument: str, expected: str, found: object) -> ValidationError:
    """Build a :class:`ValidationError` with the standard message.

    Example: ``raise invalid("var", "positive values", "a minimum of -0.5")``.
    """
    return ValidationError(f"{argument}: expected {expected}, found {found}")


def outside_stacklevel() -> int:
    """The ``stacklevel`` at which a warning raised by the caller of this function points at
    the first frame outside the gpvae package (the user's call of ``fit``), however many of
    the package's calls lie between (a fit, an ensemble's, a resumed or distributed one),
    where a fixed level pointed inside the package."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame = sys._getframe(1)  # the function that warns: stacklevel 1
    level = 1
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(
        package + os.sep
    ):
        frame = frame.f_back
        level += 1
    return level
