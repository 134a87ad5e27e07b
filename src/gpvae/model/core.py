"""GPVAEModel and its bounds (the package docstring of :mod:`gpvae.model` has the maths)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from gpvae.batch import Batch, where_zero
from gpvae.data.holdout import MASK_PATTERNS, check_lengths, hide_mask
from gpvae.data.interpolate import neighbour_interpolation, space_interpolation
from gpvae.errors import InputTypeError, ShapeError, ValidationError, invalid
from gpvae.gp.prior import GPPrior
from gpvae.likelihoods.base import Likelihood, Params
from gpvae.model.sampling import check_count, sample_chunks
from gpvae.nets.interp import FieldFusion, InterpolationFusion, cross_options
from gpvae.posteriors.base import PosteriorFamily, VariationalPosterior
from gpvae.posteriors.structured import StructuredQ
from gpvae.rng import per_series_normal

__all__ = ["ELBOResult", "GPVAEModel", "Interpolated"]


def one_sided(x: Tensor, observed: Tensor, valid: Tensor | None, gap: Tensor) -> Tensor:
    """(B, N, D) bool: the entries whose feature has an observed neighbour (in time, as in
    :func:`~gpvae.data.interpolate.neighbour_interpolation`, whose ``gap`` it takes) on one
    side only. Between two neighbours the interpolated time is the time itself; with one, it
    is the neighbour's, a whole ``gap`` away."""
    t = x[..., -1:].detach().to(gap.dtype).expand_as(gap)
    t_near = neighbour_interpolation(x, t, observed, valid)[0]
    return torch.isfinite(gap) & ((t_near - t).abs() > 0.5 * gap)


class ELBOResult(NamedTuple):
    """Per-series bounds and their parts, each (B,).

    Attributes:
        elbo: ``loglik - beta * kl``.
        loglik: expected log-likelihood of the observed entries (Monte Carlo over samples).
        kl: KL(q || GP prior), summed over channels and valid points (closed form).
        iwae: the importance-weighted bound when ``iwae > 1``, else None.
    """

    elbo: Tensor
    loglik: Tensor
    kl: Tensor
    iwae: Tensor | None = None

    @property
    def bound(self) -> Tensor:
        """(B,) the bound to maximise: ``iwae`` when computed, else ``elbo``."""
        return self.elbo if self.iwae is None else self.iwae


class Interpolated(NamedTuple):
    """What the interpolation fusion reads of a batch's observed entries, each (B, N, D).

    Attributes:
        value: each feature interpolated between its observed neighbours
            (:func:`~gpvae.data.interpolate.neighbour_interpolation`).
        gap: the distance to the nearer observed neighbour (inf with none).
        regressed: the feature regression ``p`` of ``interp_cross`` (None without it).
    """

    value: Tensor
    gap: Tensor
    regressed: Tensor | None = None


class GPVAEModel(nn.Module):
    """Gaussian-process-prior VAE.

    Args:
        encoder: ``encoder(y (B, N, D), observed (B, N, D))`` -> tuple of (B, N, L) tensors
            (``posterior.num_encoder_outputs`` of them), e.g. :class:`gpvae.nets.MLPEncoder`;
            an encoder with a true ``reads_valid`` attribute also gets ``valid=`` (B, N)
            (:class:`gpvae.nets.GRUEncoder`).
        posterior: a :class:`~gpvae.posteriors.base.PosteriorFamily` (structured, banded,
            diagonal).
        prior: the :class:`~gpvae.gp.prior.GPPrior` over the L latent channels.
        decoder: ``decoder(z (S, B, N, L))`` -> likelihood parameters (S, B, N, D) (one
            tensor, or a tuple of ``likelihood.num_params``), e.g. :class:`gpvae.nets.MLPDecoder`.
        likelihood: a :class:`~gpvae.likelihoods.base.Likelihood`.
        beta: weight of the KL term (1 gives the ELBO).
        mask_rate: artificial missingness in training: in train mode, :meth:`elbo` hides this
            share of the observed entries from the encoder (drawn afresh at every call) and
            still scores them in the expected log-likelihood, so the encoder learns to infer
            z from incomplete series and the decoder to predict what it did not see (SAITS's
            masked-imputation task). The bound stays a valid ELBO: q may be any distribution.
            0 (default) hides nothing; eval mode never hides.
        mask_pattern: ``"points"`` (entries hidden independently), ``"blocks"`` (runs of
            one feature), ``"steps"`` (runs of whole time steps, every feature hidden) or
            ``"sites"`` (every entry of a site, space x time fields); see
            :func:`gpvae.data.holdout.hide_mask`.
        mask_lengths: (shortest, longest) run length of ``"blocks"`` and ``"steps"``.
        interp_skip: the location of y (the likelihood's first parameter) is a residual on
            each feature's linear interpolation between its nearest observed entries before
            and after the step (:func:`~gpvae.data.interpolate.neighbour_interpolation`,
            computed from the entries the encoder sees; an observed entry is interpolated
            from its neighbours, not from itself), predicted from the decoder output, the
            interpolated values and the distances to the neighbours
            (:class:`~gpvae.nets.InterpolationFusion`; it starts at plain interpolation).
            Needs a likelihood with ``location_first`` and a known D. Series drawn from the
            prior (no observed entries) get the decoder output alone.
        interp_space: with ``interp_skip`` on a space x time field (index points: sites,
            then time), the distance (km) at which the spatial closeness is 1/2: the fusion
            also gets each feature's inverse distance weighting over the other sites at the
            same time (:func:`~gpvae.data.interpolate.space_interpolation`,
            :class:`~gpvae.nets.FieldFusion`), and interpolation in time runs within each
            site. None (default): the fusion in time only.
        interp_cross: with ``interp_skip`` (in time only), a feature regression from the other
            features seen at the same step, whose residual is interpolated instead of the
            value (``InterpolationFusion(cross=True)``, BRITS's feature regression).

    Example:
        >>> model = GPVAEModel(MLPEncoder(D, L), StructuredPosterior(),
        ...                    GPPrior(Matern32(), L), MLPDecoder(L, D), Gaussian(D))
        >>> loss = -model.elbo(batch).elbo.sum() / batch.observed.sum()
    """

    def __init__(
        self,
        encoder: nn.Module,
        posterior: PosteriorFamily,
        prior: GPPrior,
        decoder: nn.Module,
        likelihood: Likelihood,
        beta: float = 1.0,
        mask_rate: float = 0.0,
        mask_pattern: str = "points",
        mask_lengths: tuple[int, int] = (2, 24),
        interp_skip: bool = False,
        interp_space: float | None = None,
        interp_cross: bool | str = False,
    ) -> None:
        super().__init__()
        for name, value, kind in [
            ("encoder", encoder, nn.Module),
            ("posterior", posterior, PosteriorFamily),
            ("prior", prior, GPPrior),
            ("decoder", decoder, nn.Module),
            ("likelihood", likelihood, Likelihood),
        ]:
            if not isinstance(value, kind):
                raise InputTypeError(
                    f"{name}: expected a {kind.__name__}, found {type(value).__name__}"
                )
        self.encoder = encoder
        self.posterior = posterior
        self.prior = prior
        self.decoder = decoder
        self.likelihood = likelihood
        self.beta = beta
        if not (isinstance(mask_rate, (int, float)) and 0.0 <= mask_rate < 1.0):
            raise invalid("mask_rate", "a number in [0, 1)", mask_rate)
        if mask_pattern not in MASK_PATTERNS:
            raise ValidationError(
                f"mask_pattern: expected one of {MASK_PATTERNS}, found {mask_pattern!r}"
            )
        self.mask_rate = float(mask_rate)
        self.mask_pattern = mask_pattern
        self.mask_lengths = check_lengths(mask_lengths, "mask_lengths")
        if not isinstance(interp_skip, bool):
            raise InputTypeError(f"interp_skip: expected True or False, found {interp_skip!r}")
        if interp_skip and not likelihood.location_first:
            raise ValidationError(
                f"interp_skip: expected a likelihood whose first parameter is the location of "
                f"y (gaussian, student_t, gaussian_gp), found {type(likelihood).__name__}"
            )
        self.interp_skip = interp_skip
        try:
            options = cross_options(interp_cross)
        except ValueError as err:
            raise ValidationError(str(err)) from None
        if options is not None and interp_space is not None:
            raise invalid("interp_cross", "False with interp_space", interp_cross)
        self.interp_fusion: InterpolationFusion | FieldFusion | None = None
        if interp_space is not None and not (
            isinstance(interp_space, (int, float))
            and math.isfinite(interp_space)
            and interp_space > 0
        ):
            raise invalid("interp_space", "a positive distance or None", interp_space)
        if interp_skip:
            D = self.num_features
            if D is None:
                raise ValidationError(
                    "interp_skip: expected a likelihood or encoder that declares the number "
                    "of features D (the gate has one weight per feature), found none"
                )
            self.interp_fusion = (
                InterpolationFusion(D, cross=interp_cross)
                if interp_space is None
                else FieldFusion(D, interp_space)
            )

    @property
    def beta(self) -> float:
        """Weight of the KL term."""
        return self._beta

    @beta.setter
    def beta(self, value: float) -> None:
        try:
            v = float(value)
        except (TypeError, ValueError) as exc:
            raise InputTypeError(f"beta: expected a number, found {value!r}") from exc
        if not math.isfinite(v) or v < 0:
            raise invalid("beta", "a finite number >= 0", value)
        self._beta = v

    @property
    def latent_dim(self) -> int:
        """L, the number of latent channels."""
        return self.prior.latent_dim

    @property
    def num_features(self) -> int | None:
        """D, when the likelihood or the encoder declares it."""
        if self.likelihood.num_features is not None:
            return self.likelihood.num_features
        d = getattr(self.encoder, "num_features", None)
        return d if isinstance(d, int) else None

    def check_batch(self, batch: Batch) -> None:
        """Raise a :class:`~gpvae.errors.GPVAEError` naming the bad field of ``batch``."""
        if not isinstance(batch, Batch):
            raise InputTypeError(
                f"batch: expected a gpvae.batch.Batch, found {type(batch).__name__}"
            )
        batch.validate(num_features=self.num_features)
        param = next(self.parameters(), None)
        if param is not None and batch.y.dtype != param.dtype:
            raise InputTypeError(
                f"y: expected dtype {param.dtype} (that of the model's parameters), "
                f"found {batch.y.dtype}"
            )
        if batch.x.dtype != batch.y.dtype:
            raise InputTypeError(
                f"x: expected dtype {batch.y.dtype} (that of y), found {batch.x.dtype}"
            )

    def encode(self, batch: Batch) -> VariationalPosterior:
        """q(z | y) for a checked batch (see :mod:`gpvae.posteriors`)."""
        self.check_batch(batch)
        y = where_zero(batch.observed, batch.y)  # torch.where(observed, y, 0), bit for bit
        if getattr(self.encoder, "reads_valid", False):  # runs within each series' steps
            out = self.encoder(y, batch.observed, valid=batch.valid)
        else:
            out = self.encoder(y, batch.observed)
        if isinstance(out, Tensor):
            raise InputTypeError(
                "encoder: expected a tuple of (B, N, L) tensors (mean, var, ...), found a "
                "single tensor"
            )
        return self.posterior(tuple(out), batch, self.prior)

    def decode(
        self, z: Tensor, batch: Batch | None = None, interpolated: Interpolated | None = None
    ) -> Params:
        """Likelihood parameters for latents z (..., B, N, L): (..., B, N, D) tensor(s).

        With ``interp_skip``, the location is fused with the per-feature interpolation of
        ``batch``'s observed entries (the decoder output alone when ``batch`` is None);
        ``interpolated``: :meth:`interpolated` of ``batch`` when already computed (else it
        is computed here).
        """
        params = self.decoder(z)
        if self.interp_fusion is None or batch is None:
            return params
        return self._fuse(params, batch, 0, interpolated)

    def decode_at(self, z: Tensor, batch: Batch, x_new: Tensor) -> Params:
        """Likelihood parameters for latents z (..., B, H, L) at new index points x_new
        (B, H, d), where nothing is observed: with ``interp_skip`` the location is fused with
        the interpolation of ``batch``'s observed entries at those points."""
        params = self.decoder(z)
        if self.interp_fusion is None:
            return params
        return self._fuse(params, self._forecast_batch(batch, x_new), batch.x.shape[1])

    def interpolated(self, batch: Batch) -> Interpolated:
        """The interpolation of ``batch``'s observed entries (padding steps count as
        unobserved) and, with ``interp_cross``, the feature regression from them: computed
        once per step in training and shared by :meth:`decode` and :meth:`cross_fit`."""
        value, gap = neighbour_interpolation(batch.x, batch.y, batch.observed, batch.valid)
        fuse = self.interp_fusion
        if not isinstance(fuse, InterpolationFusion) or not fuse.cross:
            return Interpolated(value, gap)
        filled = torch.where(torch.isfinite(gap), value, torch.zeros_like(value))
        seen = batch.observed & batch.valid[..., None]
        return Interpolated(value, gap, fuse.regression(batch.y, seen, filled))

    def _fuse(
        self, params: Params, batch: Batch, start: int, interpolated: Interpolated | None = None
    ) -> Params:
        """``params`` (of ``batch``'s points from ``start`` on) with the location fused with
        the interpolation of ``batch``'s observed entries (``interpolated``, computed here
        when None)."""
        fuse = self.interp_fusion
        if fuse is None:
            return params
        obs, valid = batch.observed, batch.valid
        value, gap, p = self.interpolated(batch) if interpolated is None else interpolated
        args: tuple[Tensor, ...] = (value[:, start:], gap[:, start:])
        if isinstance(fuse, FieldFusion):
            s_value, s_dist = space_interpolation(batch.x, batch.y, obs, valid, fuse.space_power)
            args = (*args, s_value[:, start:], s_dist[:, start:])
        args = (*args, obs[:, start:])
        if isinstance(fuse, InterpolationFusion) and fuse.cross:
            if p is None:
                raise ValueError("interpolated: expected the regression with interp_cross")
            p_near = neighbour_interpolation(batch.x, p, obs, valid, grad=True)[0]
            args = (*args, p[:, start:], p_near[:, start:])
            if fuse.fade_rate is not None:
                args = (*args, one_sided(batch.x, obs, valid, gap)[:, start:])
        if isinstance(params, Tensor):
            return fuse(params, *args)
        return (fuse(params[0], *args), *params[1:])

    def cross_fit(
        self, seen: Batch, batch: Batch, interpolated: Interpolated | None = None
    ) -> Tensor:
        """(B,) the feature regression's absolute error summed over ``batch``'s observed
        entries, the regression reading ``seen``'s (the ``fit`` option of ``interp_cross``:
        BRITS's feature regression loss, subtracted from the ELBO in training); zeros
        without the option. ``interpolated``: :meth:`interpolated` of ``seen`` when already
        computed (else it is computed here)."""
        fuse = self._regression_fusion()
        if fuse is None:
            return batch.y.new_zeros(batch.y.shape[0])
        p = (self.interpolated(seen) if interpolated is None else interpolated).regressed
        if p is None:
            raise ValueError("interpolated: expected the regression with interp_cross")
        target = batch.observed & batch.valid[..., None]
        err = torch.where(target, (batch.y - p).abs(), torch.zeros_like(p))
        return err.sum(dim=(-2, -1))

    def _regression_fusion(self) -> InterpolationFusion | None:
        """The interpolation fusion when :meth:`cross_fit` has a loss (the ``fit`` option of
        ``interp_cross``), else None."""
        fuse = self.interp_fusion
        return fuse if isinstance(fuse, InterpolationFusion) and "fit" in fuse.options else None

    def _forecast_batch(self, batch: Batch, x_new: Tensor) -> Batch:
        """History and the new index points as one batch (the new steps unobserved)."""
        B, H = x_new.shape[:2]
        D = batch.y.shape[-1]
        new = batch.y.new_zeros((B, H, D))
        return Batch(
            torch.cat([batch.x, x_new], dim=1),
            torch.cat([batch.y, new], dim=1),
            torch.cat([batch.observed, new.bool()], dim=1),
            torch.cat([batch.valid, batch.valid.new_ones((B, H))], dim=1),
        )

    def elbo(
        self,
        batch: Batch,
        num_samples: int = 1,
        iwae: int = 1,
        generator: torch.Generator | None = None,
    ) -> ELBOResult:
        """Per-series ELBO and its parts, and the IWAE bound when ``iwae > 1``.

        Args:
            batch: x (B, N, d), y (B, N, D), observed (B, N, D), valid (B, N).
            num_samples: S, Monte Carlo samples (for the IWAE bound: independent groups).
            iwae: K, importance samples per group; ``S * K`` samples are drawn in all and the
                ELBO's expected log-likelihood averages over all of them.
            generator: source of randomness, or None for the global one.

        Returns:
            :class:`ELBOResult` with (B,) tensors.
        """
        S = check_count("num_samples", num_samples)
        K = check_count("iwae", iwae)
        seen = self._training_input(batch, generator)
        q = self.encode(seen)
        B = batch.y.shape[0]
        z = q.rsample(S * K, generator)  # (S K, B, N, L)
        shared = None if self.interp_fusion is None else self.interpolated(seen)
        ll = self.log_likelihood(self.decode(z, seen, shared), batch)  # (S K, B)
        kl = q.kl()  # (B,)
        loglik = ll.mean(0)  # (B,)
        # beta = 1 and no feature regression (the usual case): the same values without a
        # product by 1 and a difference with zeros, nor their backward nodes
        elbo = loglik - kl if self.beta == 1.0 else loglik - self.beta * kl
        if self.training and self._regression_fusion() is not None:
            elbo = elbo - self.cross_fit(seen, batch, shared)
        bound = None
        if K > 1:
            log_w = ll + self.beta * q.log_ratio(z)  # (S K, B)
            log_w = log_w.reshape(S, K, B)
            bound = (torch.logsumexp(log_w, dim=1) - math.log(K)).mean(0)  # (B,)
        return ELBOResult(elbo=elbo, loglik=loglik, kl=kl, iwae=bound)

    def _training_input(self, batch: Batch, generator: torch.Generator | None) -> Batch:
        """The batch the encoder sees in :meth:`elbo`: in train mode with ``mask_rate > 0``,
        a random share of the observed entries hidden; else the batch itself."""
        if not self.training or self.mask_rate == 0.0:
            return batch
        hide = hide_mask(
            batch.observed,
            self.mask_rate,
            self.mask_pattern,
            self.mask_lengths,
            generator,
            x=batch.x,
        )
        return Batch(batch.x, batch.y, batch.observed & ~hide, batch.valid)

    def log_likelihood(self, params: Params, batch: Batch) -> Tensor:
        """log p(y_obs | z) of the batch's observed entries for decoded params (..., B).

        The likelihood gets the index points and the padding mask (used by those whose noise
        is correlated along the index, e.g.
        :class:`~gpvae.likelihoods.gp_noise.GPNoiseGaussian`).
        """
        return self.likelihood.log_prob(
            params, batch.y, batch.observed, index=batch.x, valid=batch.valid
        )

    def predictive(self, params: Params, batch: Batch) -> tuple[Tensor, Tensor]:
        """Mean and variance of every entry of y given z and the batch's observed entries
        (:meth:`~gpvae.likelihoods.base.Likelihood.conditional`).

        Returns:
            (mean, var), each shaped like the decoder output (..., B, N, D).
        """
        return self.likelihood.conditional(params, batch.y, batch.observed, batch.x, batch.valid)

    # ------------------------------------------------------------ predictive maths

    @torch.no_grad()
    def predictive_draws(
        self,
        batch: Batch,
        generators: Sequence[torch.Generator],
        num_samples: int,
        on_chunk: Callable[[int], object] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Posterior-predictive mean (B, N, D) and S draws (S, B, N, D) of y for a batch.

        z ~ q(z | observed entries), joint over each series; y ~ p(y | z), conditioned on
        the observed entries when the likelihood's noise is correlated along the index.
        Draws come in chunks (:func:`sample_chunks`), series b's from ``generators[b]``
        alone, so a series' draws do not depend on the rest of the batch. ``on_chunk``: when
        given, called with each chunk's number of draws once they are made (a progress bar).
        """
        S = check_count("num_samples", num_samples)
        sampler = self.encode(batch).series_sampler(generators)
        lik = self.likelihood
        mean_sum = torch.zeros_like(batch.y)  # (B, N, D)
        # every chunk's draws go straight into their place among the S: no list of chunks
        # to concatenate, which held the draws twice (4 more bytes per draw and entry)
        draws: Tensor | None = None
        start = 0
        for s in sample_chunks(S):
            params = self.decode(sampler.draw(s), batch)  # z: (s, B, N, L)
            m, y = lik.predictive_sample(
                params, batch.y, batch.observed, batch.x, batch.valid, generators
            )  # (s, B, N, D) each
            mean_sum = mean_sum + m.sum(0)
            if draws is None:
                draws = y.new_empty((S, *y.shape[1:]))
            draws[start : start + s] = y
            start += s
            if on_chunk is not None:
                on_chunk(s)
        assert draws is not None  # S >= 1: at least one chunk
        return mean_sum / S, draws

    @torch.no_grad()
    def predictive_step_draws(
        self,
        batch: Batch,
        generators: Sequence[torch.Generator],
        num_samples: int,
        steps: Sequence[Tensor],
    ) -> tuple[Tensor, Tensor]:
        """:meth:`predictive_draws` at a few steps of each series: mean (B, K, D) and S draws
        (S, B, K, D) at series b's ``steps[b]`` (ascending positions, padded to the longest
        list K; zeros on the padding).

        Every entry's draws have the distribution of :meth:`predictive_draws`'. When the
        likelihood's entries are independent given z (and without ``interp_skip``), entry
        (n, d) depends on z at step n only: z comes from q's marginals at the steps
        (series b's noise from ``generators[b]``) and only the steps are decoded. Else the
        whole series is drawn and the steps are picked out.
        """
        S = check_count("num_samples", num_samples)
        counts = [len(st) for st in steps]
        K = max(counts, default=0)
        dev = batch.y.device
        pos = _step_positions(steps, K, dev)  # (B, K)
        sel = torch.arange(K, device=dev) < torch.tensor(counts, device=dev)[:, None]  # (B, K)

        def at(t: Tensor) -> Tensor:  # (..., B, N, C) -> (..., B, K, C) at the steps
            return t.gather(-2, pos[..., None].expand(*t.shape[:-3], *pos.shape, t.shape[-1]))

        if self.likelihood.needs_index or self.interp_fusion is not None:
            mean, y = self.predictive_draws(batch, generators, S)
            return torch.where(sel[..., None], at(mean), 0.0), torch.where(
                sel[..., None], at(y), 0.0
            )
        m_all, v_all = self.encode(batch).marginals()  # (B, N, L) each
        m, sd = at(m_all), at(v_all).clamp_min(0.0).sqrt()
        sub = Batch(at(batch.x), at(batch.y), at(batch.observed) & sel[..., None], sel)
        mean_sum = torch.zeros_like(sub.y)  # (B, K, D)
        ys = []
        for s in sample_chunks(S):
            z = m + sd * per_series_normal(generators, counts, s, K, (m.shape[-1],), m)
            mu, y = self.likelihood.predictive_sample(
                self.decode(z), sub.y, sub.observed, sub.x, sub.valid, generators
            )  # (s, B, K, D) each
            mean_sum = mean_sum + torch.where(sel[..., None], mu, 0.0).sum(0)
            ys.append(y)
        return mean_sum / S, torch.cat(ys)

    @torch.no_grad()
    def predictive_entry_draws(
        self,
        batch: Batch,
        generators: Sequence[torch.Generator],
        num_samples: int,
        steps: Sequence[Tensor],
        entries: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """:meth:`predictive_step_draws` of some entries at the steps only: the mean (M,)
        and S draws (S, M) of the M entries where ``entries`` (B, K, D) is true (row-major
        order: series, step, feature; K and the padding as in :meth:`predictive_step_draws`,
        no entry on the padding).

        Every entry's draws have the distribution of :meth:`predictive_draws`'. When the
        likelihood's entries are independent given z (and without ``interp_skip``), z is
        drawn at the steps and only the wanted entries get observation noise
        (:meth:`~gpvae.likelihoods.Likelihood.entry_draws`; series b's noise from
        ``generators[b]``); else the entries are picked from :meth:`predictive_step_draws`.
        """
        S = check_count("num_samples", num_samples)
        counts = [len(st) for st in steps]
        K = max(counts, default=0)
        if entries.shape[:2] != (len(counts), K):
            raise ShapeError(
                f"entries: expected shape ({len(counts)}, {K}, D), found {tuple(entries.shape)}"
            )
        if self.likelihood.needs_index or self.interp_fusion is not None:
            mean, y = self.predictive_step_draws(batch, generators, S, steps)
            return mean[entries], y[:, entries]
        dev = batch.y.device
        pos = _step_positions(steps, K, dev)  # (B, K)
        m_all, v_all = self.encode(batch).marginals()  # (B, N, L) each
        index = pos[..., None].expand(*pos.shape, m_all.shape[-1])
        m, sd = m_all.gather(-2, index), v_all.gather(-2, index).clamp_min(0.0).sqrt()
        entries = entries.to(dev)
        mean_sum = m.new_zeros(int(entries.sum()))
        ys = []
        for s in sample_chunks(S):
            z = m + sd * per_series_normal(generators, counts, s, K, (m.shape[-1],), m)
            mu, y = self.likelihood.entry_draws(self.decode(z), entries, generators)
            mean_sum = mean_sum + mu.sum(0)
            ys.append(y)
        return mean_sum / S, torch.cat(ys)

    @torch.no_grad()
    def forecast_draws(
        self,
        batch: Batch,
        x_new: Tensor,
        num_samples: int,
        generator: torch.Generator,
        on_latents: Callable[[StructuredQ, Tensor], None] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Predictive mean (B, H, D) and S draws (S, B, H, D) of y at new index points.

        The latent paths at ``x_new`` (B, H, d) are joint draws from each series' posterior
        GP (needs the structured posterior); a likelihood whose noise is correlated along
        the index also conditions its noise on the observed history, which needs the
        latents jointly over history and future.

        ``on_latents``: when given, called with the batch's posterior and the latent draws
        at ``x_new`` (S, B, H, L) before they are decoded (the forecast's check of where
        they went, :func:`gpvae.estimator.forecasting.latent_reach`); the draws are the
        same either way.
        """
        S = check_count("num_samples", num_samples)
        q = self.encode(batch)
        if not isinstance(q, StructuredQ):
            raise ValidationError(
                f"posterior: forecasting expected a structured posterior (a GP that can be "
                f"evaluated at new points), found {type(self.posterior).__name__}"
            )
        lik = self.likelihood
        N = batch.x.shape[1]
        joint = self._forecast_batch(batch, x_new)
        if not lik.needs_index:
            z = q.gp.sample_at(x_new, S, generator)
            if on_latents is not None:
                on_latents(q, z)
            params = self.decode_at(z, batch, x_new)
            return lik.mean(params).mean(0), lik.sample(params, generator)
        z = q.gp.sample_at(joint.x, S, generator)
        if on_latents is not None:
            on_latents(q, z[..., N:, :])
        parts = lik.split(self.decode(z, joint))  # each (S, B, N + H, D)
        hist = tuple(p[..., :N, :] for p in parts)
        new = tuple(p[..., N:, :] for p in parts)
        m, v = lik.predict(
            hist[0] if len(hist) == 1 else hist,
            batch.y,
            batch.observed,
            batch.x,
            new[0] if len(new) == 1 else new,
            x_new,
            batch.valid,
        )  # (S, B, H, D) each
        eps = torch.randn(m.shape, generator=generator, dtype=m.dtype, device=m.device)
        return m.mean(0), m + v.sqrt() * eps

    @torch.no_grad()
    def sample_series(
        self, x: Tensor, num_samples: int, generator: torch.Generator, noise: bool = True
    ) -> Tensor:
        """New series: z ~ GP prior at ``x`` (B, N, d), y ~ p(y | z): (S, B, N, D); with
        ``noise=False`` the likelihood's mean E[y | z] along each path instead."""
        S = check_count("num_samples", num_samples)
        z = self.prior.sample(x, S, generator)  # (S, B, N, L)
        params = self.decode(z)
        if not noise:
            return self.likelihood.mean(params)
        return self.likelihood.sample_path(params, x, generator)

    def forward(
        self,
        batch: Batch,
        num_samples: int = 1,
        iwae: int = 1,
        generator: torch.Generator | None = None,
    ) -> ELBOResult:
        """Same as :meth:`elbo`."""
        return self.elbo(batch, num_samples=num_samples, iwae=iwae, generator=generator)

    @torch.no_grad()
    def reconstruct(
        self, batch: Batch, num_samples: int = 1, generator: torch.Generator | None = None
    ) -> Tensor:
        """Posterior-predictive mean of y at every entry, ``E_q[E[y | z]]``: (B, N, D).

        Averages the likelihood's mean over ``num_samples`` joint samples of q (the exact
        expectation needs samples because the decoder is nonlinear).
        """
        S = check_count("num_samples", num_samples)
        q = self.encode(batch)
        z = q.rsample(S, generator)  # (S, B, N, L)
        return self.predictive(self.decode(z, batch), batch)[0].mean(0)

    def extra_repr(self) -> str:
        return f"beta={self._beta:g}"


def _step_positions(steps: Sequence[Tensor], K: int, device: torch.device) -> Tensor:
    """(B, K) the positions of each series' ``steps``, padded with 0 to K."""
    pos = torch.zeros((len(steps), K), dtype=torch.long, device=device)
    for b, st in enumerate(steps):
        pos[b, : len(st)] = st.to(device)
    return pos
