"""Likelihood base class: p(y | decoder parameters), summed over observed entries only.

The decoder emits ``num_params`` tensors per feature, each (..., N, D), passed as one tensor
when ``num_params == 1`` and as a tuple otherwise. Leading axes (...) are typically (S, B).

What a likelihood offers is declared here, so the layers above never probe for methods:

- every likelihood: :meth:`~Likelihood.log_prob_entries`, :meth:`~Likelihood.log_prob`,
  :meth:`~Likelihood.mean`, :meth:`~Likelihood.variance`, :meth:`~Likelihood.sample`;
- prediction given the observed entries (:meth:`~Likelihood.conditional`,
  :meth:`~Likelihood.predict`, :meth:`~Likelihood.predictive_sample`,
  :meth:`~Likelihood.log_predictive_entries`, :meth:`~Likelihood.sample_path`): the defaults
  here are exact for likelihoods whose entries are independent given z (they ignore the
  observed values); a likelihood whose noise is correlated along the index sets
  :attr:`~Likelihood.needs_index` and overrides them all
  (:class:`~gpvae.likelihoods.gp_noise.GPNoiseGaussian`).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from gpvae.batch import where_zero
from gpvae.errors import InputTypeError, ShapeError, ValidationError

__all__ = ["Likelihood", "Params"]

#: What a decoder returns: one (..., N, D) tensor, or a tuple of them.
Params = Tensor | tuple[Tensor, ...]


class Likelihood(nn.Module, abc.ABC):
    """Observation model for each entry of y given the decoder's per-feature parameters.

    Attributes:
        num_params: how many (..., N, D) tensors the decoder must emit.
        num_features: D when the likelihood has per-feature parameters, else None.
        needs_index: the noise is correlated along the index: :meth:`log_prob` needs the
            index points and padding mask, and prediction conditions on the observed entries
            (a forecast then needs the latents jointly over history and future).
        location_first: the first decoder output is the location of y (its mean or centre,
            in y's units), so a base value may be added to it (the model's ``interp_skip``).
    """

    num_params: int = 1
    num_features: int | None = None
    needs_index: bool = False
    location_first: bool = False

    def split(self, params: Params) -> tuple[Tensor, ...]:
        """Check the decoder output and return it as a tuple of ``num_params`` tensors."""
        parts = (params,) if isinstance(params, Tensor) else tuple(params)
        if len(parts) != self.num_params or not all(isinstance(p, Tensor) for p in parts):
            raise InputTypeError(
                f"params: expected {self.num_params} tensor(s) from the decoder for "
                f"{type(self).__name__}, found {len(parts)} item(s)"
            )
        shape = parts[0].shape
        if any(p.shape != shape for p in parts):
            raise ShapeError(
                f"params: expected tensors of one shape, found {[tuple(p.shape) for p in parts]}"
            )
        if self.num_features is not None and shape[-1] != self.num_features:
            raise ShapeError(
                f"params: expected {self.num_features} features (last axis), found {shape[-1]}"
            )
        return parts

    @abc.abstractmethod
    def log_prob_entries(self, params: Params, y: Tensor) -> Tensor:
        """Log density of every entry, observed or not: (..., N, D)."""

    def log_prob(
        self,
        params: Params,
        y: Tensor,
        observed: Tensor,
        index: Tensor | None = None,
        valid: Tensor | None = None,
    ) -> Tensor:
        """Log-likelihood of the observed entries, summed over N and D.

        Args:
            params: decoder output, (..., N, D) tensor(s).
            y: (B, N, D) values (zeros where unobserved), broadcast against params.
            observed: (B, N, D) bool mask.
            index: (B, N, d) index points (used only when :attr:`needs_index`).
            valid: (B, N) padding mask (used only when :attr:`needs_index`).

        Returns:
            (...,), e.g. (S, B).
        """
        if observed.dtype != torch.bool:
            raise InputTypeError(f"observed: expected a bool tensor, found {observed.dtype}")
        lp = self.log_prob_entries(params, y)  # (..., N, D)
        if lp.shape[-observed.ndim :] != observed.shape:
            raise ShapeError(
                f"observed: expected shape {tuple(lp.shape[-observed.ndim :])} to match the "
                f"decoder output, found {tuple(observed.shape)}"
            )
        # torch.where(observed, lp, 0) with its gradient, bit for bit, in a fraction of the time
        return where_zero(observed, lp).sum(dim=(-2, -1))

    @abc.abstractmethod
    def mean(self, params: Params) -> Tensor:
        """E[y | params]: (..., N, D)."""

    @abc.abstractmethod
    def variance(self, params: Params) -> Tensor:
        """Var[y | params]: (..., N, D)."""

    @abc.abstractmethod
    def sample(self, params: Params, generator: torch.Generator | None = None) -> Tensor:
        """One draw of y for every entry: (..., N, D)."""

    # ------------------------------------------------------------ prediction given data

    def conditional(
        self,
        params: Params,
        y: Tensor,
        observed: Tensor,
        index: Tensor,
        valid: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Mean and variance of every entry of y given z and the observed entries.

        Independent entries: ``(mean(params), variance(params))``.

        Returns:
            (mean, var), each shaped like the decoder output (..., B, N, D).
        """
        return self.mean(params), self.variance(params)

    def predict(
        self,
        params: Params,
        y: Tensor,
        observed: Tensor,
        index: Tensor,
        new_params: Params,
        new_index: Tensor,
        valid: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Mean and variance of y at new index points given z there and the observed history.

        Independent entries: ``(mean(new_params), variance(new_params))``.

        Args:
            params: decoder output at the history's index points, (..., B, N, D).
            y, observed, index, valid: the history, as in :meth:`log_prob`.
            new_params: decoder output at the new points, (..., B, H, D).
            new_index: (B, H, d) new index points.

        Returns:
            (mean, var), each (..., B, H, D).
        """
        return self.mean(new_params), self.variance(new_params)

    def predictive_sample(
        self,
        params: Params,
        y: Tensor,
        observed: Tensor,
        index: Tensor,
        valid: Tensor,
        generators: Sequence[torch.Generator],
    ) -> tuple[Tensor, Tensor]:
        """Mean and one draw of y at every entry given z and the observed entries, series b's
        draws from ``generators[b]`` (zeros on padding).

        Args:
            params: decoder output, (S, B, N, D).
            y, observed, index, valid: the batch.
            generators: B generators, one per series.

        Returns:
            (mean, draws), each (S, B, N, D).
        """
        parts = self.split(params)
        lengths = [int(v) for v in valid.sum(dim=-1).tolist()]
        mean = self.mean(params)
        out = torch.zeros_like(mean)
        for b, (gen, T) in enumerate(zip(generators, lengths)):
            sub = tuple(p[:, b : b + 1, :T] for p in parts)
            one: Params = sub[0] if len(sub) == 1 else sub
            out[:, b : b + 1, :T] = self.sample(one, gen)
        return mean, out

    def entry_draws(
        self, params: Params, entries: Tensor, generators: Sequence[torch.Generator]
    ) -> tuple[Tensor, Tensor]:
        """Mean and one draw of y at some entries only, for likelihoods whose entries are
        independent given z (not :attr:`needs_index`): each draw has the distribution of
        :meth:`predictive_sample`'s at its entry.

        Args:
            params: decoder output, (S, B, N, D).
            entries: (B, N, D) bool, the entries wanted (none on padding).
            generators: B generators, one per series; series b's draws come from
                ``generators[b]`` alone.

        Returns:
            (mean, draws), each (S, M) at the M wanted entries in row-major order (series,
            then step, then feature).
        """
        parts = self.split(params)
        draws = []
        for b, gen in enumerate(generators):
            rows = torch.nonzero(entries[b].any(-1)).reshape(-1)  # steps with a wanted entry
            if not len(rows):
                continue
            sub = tuple(p[:, b : b + 1, rows] for p in parts)
            one: Params = sub[0] if len(sub) == 1 else sub
            draws.append(self.sample(one, gen)[:, 0][:, entries[b, rows]])
        mean = self.mean(params)[:, entries]
        return mean, torch.cat(draws, dim=1) if draws else mean.new_zeros(mean.shape)

    def log_predictive_entries(
        self,
        params: Params,
        y: Tensor,
        observed: Tensor,
        index: Tensor,
        valid: Tensor | None = None,
    ) -> Tensor:
        """log p(y | z, observed entries) of every entry, in float64: (..., B, N, D).

        Independent entries: :meth:`log_prob_entries` (in float64: a value far from the
        training data has a squared residual beyond float32).
        """
        parts = tuple(p.double() for p in self.split(params))
        return self.log_prob_entries(parts[0] if len(parts) == 1 else parts, y.double())

    def sample_path(
        self, params: Params, index: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draws of y at every entry of new series (no observed entries), (S, B, N, D).

        Independent entries: :meth:`sample`.
        """
        return self.sample(params, generator)


def check_num_features(num_features: int | None) -> None:
    """Raise a ValidationError unless ``num_features`` is None or a positive integer."""
    if num_features is None:
        return
    if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
        raise ValidationError(
            f"num_features: expected a positive integer or None, found {num_features!r}"
        )


def check_positive(name: str, value: float) -> float:
    """Return ``float(value)`` or raise a ValidationError naming ``name``."""
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise InputTypeError(f"{name}: expected a positive number, found {value!r}") from exc
    if not v > 0 or v == float("inf"):
        raise ValidationError(f"{name}: expected a finite positive number, found {value!r}")
    return v
