"""A kernel for slow, long-range variation that a forecast keeps: the trend.

:class:`Trend` is the Matern-5/2 kernel under a name of its own, so that the estimator can
start its lengthscale long: :data:`gpvae.settings.TREND_SPAN_FRACTION` of the training
span instead of a few time steps. Conditioned on a series' whole history, its state holds the
level, slope and curvature at the end of the history (``s = (f, f', f'')``), and the
forecast carries them on, relaxing to the long-run mean only over about a lengthscale: a
rising series is forecast to go on rising over horizons short against the lengthscale,
instead of falling back to its mean as a short-range kernel's forecast does within a few
lengthscales of a few steps.
"""

from __future__ import annotations

from gpvae.kernels.matern import Matern52

__all__ = ["Trend"]


class Trend(Matern52):
    """Matern-5/2 kernel for the trend of a series (see the module docstring).

    Args:
        lengthscale: positive lengthscale (the estimator starts it at a fraction of the
            training span).
        variance: positive output variance.
        input_dim: as for :class:`~gpvae.kernels.Stationary`.
    """
