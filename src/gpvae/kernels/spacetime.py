"""Separable space x time kernel over index points ``(s_1, ..., s_{d-1}, t)``.

``SpaceTime(spatial, temporal)`` is ``k((s, t), (s', t')) = k_s(s, s') k_t(t, t')``: the
spatial kernel acts on the first d - 1 columns of the index points (planar coordinates, e.g.
easting and northing in km), the temporal kernel on the last one (time). It is the default
prior of spatio-temporal data: each latent channel is a GP over space and time whose spatial
correlation is the same at every time. With a temporal kernel that has a state-space form
(Matern 1/2, 3/2, 5/2 and sums of them), the ``spacetime`` and ``sparse`` GP backends
(:mod:`gpvae.gp.spacetime`) run a Kalman filter along time with the spatial covariance of the
sites as the spatial block of the state, instead of factorising the (S T) x (S T) matrix.

Shapes: N, M points; d index dimension (d - 1 spatial columns, then time).
"""

from __future__ import annotations

from torch import Tensor

from gpvae.errors import ShapeError
from gpvae.kernels.base import Kernel

__all__ = ["SpaceTime", "split_space_time"]


class SpaceTime(Kernel):
    """Separable kernel ``k_s(s, s') k_t(t, t')`` on index points ``(s, t)``.

    Args:
        spatial: kernel of the spatial columns ``x[..., :-1]`` (e.g. ``Matern32(input_dim=2)``
            for ARD lengthscales in the two planar directions). Its variance and the temporal
            kernel's multiply, so one of them may be frozen at 1 without loss.
        temporal: kernel of the time column ``x[..., -1:]``.

    Example:
        >>> k = SpaceTime(Matern32(lengthscale=5.0, input_dim=2), Matern32(lengthscale=24.0))
        >>> K = k(x)  # x (N, 3): easting km, northing km, time -> (N, N)
    """

    def __init__(self, spatial: Kernel, temporal: Kernel) -> None:
        super().__init__()
        self.spatial = spatial
        self.temporal = temporal

    def forward(self, x1: Tensor, x2: Tensor | None = None, diag: bool = False) -> Tensor:
        """Covariance ``k_s(s1, s2) k_t(t1, t2)``.

        Args:
            x1: (..., N, d) index points, d >= 2 (time last).
            x2: (..., M, d) index points, or None for ``x1``.
            diag: only the diagonal (..., N).

        Returns:
            (..., N, M) covariance, or (..., N) when ``diag``.
        """
        if x1.ndim < 2 or x1.shape[-1] < 2:
            raise ShapeError(
                f"x1: SpaceTime expects (..., N, d) index points with d >= 2 (spatial columns "
                f"then time), found shape {tuple(x1.shape)}"
            )
        s1, t1 = x1[..., :-1], x1[..., -1:]
        s2 = None if x2 is None else x2[..., :-1]
        t2 = None if x2 is None else x2[..., -1:]
        return self.spatial(s1, s2, diag=diag) * self.temporal(t1, t2, diag=diag)


def split_space_time(kernel: Kernel) -> tuple[Kernel, Kernel | None]:
    """The spatial and temporal parts of a kernel.

    A :class:`SpaceTime` kernel gives ``(spatial, temporal)``; any other kernel is read as a
    purely spatial kernel over every index column: ``(kernel, None)``.
    """
    if isinstance(kernel, SpaceTime):
        return kernel.spatial, kernel.temporal
    return kernel, None
