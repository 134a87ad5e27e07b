"""Several GP-VAEs of one configuration, fitted from different seeds, forecasting together.

A GP-VAE fitted to a few short series ends where its early stopping happens to catch it:
on US employment (23 monthly series, 48-month windows) one seed stopped after 21 epochs
and another after 102 on the same data, and their forecasts differ by more than the
forecast error's own spread between origins. :class:`GPVAEEnsemble` fits ``members`` copies
of one configuration with the seeds ``seed, seed + 1, ...`` and forecasts with the
**mixture** of their predictive distributions: every member contributes an equal share of
the joint sample paths (each member's draws already calibrated and blended as its own fit
chose), the mean is the members' mean forecast, and the interval ends are quantiles of the
pooled paths, read at the predictive positions p (S + 1) as a single model's are
(:func:`gpvae.model.sorted_quantiles`). A mixture's CRPS is never above the members'
average CRPS (the CRPS is convex in the forecast distribution), and it is usually below it
by the share of the error the members disagree on.

The ensemble forecasts (:meth:`GPVAEEnsemble.forecast`, :meth:`GPVAEEnsemble.backtest`)
and saves / loads its members; the other methods of :class:`gpvae.GPVAE` (imputation,
anomaly scores, sampling) are the members' own (``ensemble.members_[k]``).
:meth:`GPVAEEnsemble.best_member` is the member with the lowest validation score: the
best of several restarts, for uses that need one model (anomaly scores).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from gpvae.arguments import int_arg, member_draws_arg, warn_few_draws
from gpvae.errors import ModelFileError, NotFittedError, invalid
from gpvae.estimator.backtest import BacktestResult, Estimator, backtest, shown_warnings
from gpvae.estimator.estimator import GPVAE
from gpvae.estimator.modelfile import ENSEMBLE_FILE, check_single, drop_single, make_folder
from gpvae.estimator.results import ForecastResult
from gpvae.kernels import kernel_from_spec
from gpvae.model import sorted_quantiles

__all__ = ["ENSEMBLE_FILE", "GPVAEEnsemble"]

#: The file in an ensemble's folder that names it one (and holds the member count).


#: The start of a member's note on what its interrupted fit keeps (not the ensemble's).
_MEMBER_KEPT = "fit: interrupted (KeyboardInterrupt)"


class GPVAEEnsemble:
    """``members`` GP-VAEs of one configuration, fitted from the seeds ``seed`` ..
    ``seed + members - 1``; forecasts are the mixture of their predictive distributions
    (see the module docstring).

    Args:
        members: how many models (>= 1).
        **params: the configuration, every argument of :class:`gpvae.GPVAE` (``seed`` is the
            first member's seed, at most ``2**63 - members``).

    Attributes (after fit):
        members_: the fitted :class:`gpvae.GPVAE` of every member, in seed order.
        history_: the first member's training history (``histories_`` holds every member's).
    """

    def __init__(self, members: int = 5, **params: Any) -> None:
        self.members = int_arg("members", members)
        self.params = dict(params)
        self._template = GPVAE(**self.params)  # checks the configuration now, before any fit
        last = self._template.seed + self.members - 1  # the last member's seed
        if last >= 2**63:  # the generators take 64-bit signed seeds
            raise invalid(
                "seed",
                f"an integer in [0, 2**63 - {self.members}] (the members' seeds are seed .. "
                f"seed + {self.members - 1}, each at most 2**63 - 1)",
                self._template.seed,
            )
        self.members_: list[GPVAE] = []

    def __repr__(self) -> str:
        fitted = "fitted" if self.is_fitted else "not fitted"
        t = self._template
        return (
            f"GPVAEEnsemble(members={self.members}, seed={t.seed}, latent_dim={t.latent_dim}, "
            f"kernel={t.kernel!r}, posterior={t.posterior!r}, likelihood={t.likelihood!r}; "
            f"{fitted})"
        )

    @property
    def is_fitted(self) -> bool:
        """True after :meth:`fit` or :meth:`load`."""
        return bool(self.members_)

    @property
    def progress(self) -> bool:
        """Whether fits show a progress bar (every member's, and the fresh copies a
        backtest fits)."""
        return bool(self._template.progress)

    @progress.setter
    def progress(self, value: bool) -> None:
        self.params["progress"] = value
        self._template = GPVAE(**self.params)
        for m in self.members_:
            m.progress = value

    def _member(self, k: int) -> GPVAE:
        """Member k's estimator: seed ``seed + k``, checkpoints (if any) in a folder
        ``member_<k>`` of its own inside ``checkpoint_dir``."""
        params = {**self.params, "seed": self._template.seed + k}
        if self._template.checkpoint_dir is not None:
            params["checkpoint_dir"] = str(Path(self._template.checkpoint_dir) / f"member_{k}")
        return GPVAE(**params)

    def get_config(self) -> dict[str, Any]:
        """The members' configuration (:meth:`gpvae.GPVAE.get_config`, the first member's
        seed) and ``members``."""
        return {**self._template.get_config(), "members": self.members}

    @property
    def histories_(self) -> list[list[dict[str, float]]]:
        return [m.history_ for m in self._fitted("histories_")]

    @property
    def history_(self) -> list[dict[str, float]]:
        return self._fitted("history_")[0].history_

    def kernel_summary(self) -> Any:
        """Every member's :meth:`GPVAE.kernel_summary`, one table with a first column
        ``member`` (0, 1, ...)."""
        import pandas as pd

        tables = [m.kernel_summary() for m in self._fitted("kernel_summary")]
        return pd.concat(
            [t.assign(member=k)[["member", *t.columns]] for k, t in enumerate(tables)],
            ignore_index=True,
        )

    def _fitted(self, method: str) -> list[GPVAE]:
        if not self.members_:
            raise NotFittedError(f"{method}: the ensemble is not fitted; call fit first")
        return self.members_

    def best_member(self) -> GPVAE:
        """The member whose fit reached the lowest ``val_score`` (the score its early stopping
        kept the weights by: the validation MAE of entries hidden from training, or the
        training loss when none were): the best of ``members`` restarts, chosen without
        labels. The first of equals; a member with no finite score counts as the worst.

        Each member holds out its own random validation entries (its seed draws them), so
        the scores compare the members on different entries, and part of the difference
        between them is the hold-outs'; with ``X_val_target`` (hidden ground truth) every
        member is scored on the same entries.

        Raises:
            NotFittedError: before fit.
        """
        members = self._fitted("best_member")

        def best(member: GPVAE) -> float:
            scores = [h.get("val_score", np.nan) for h in member.history_]
            finite = [v for v in scores if np.isfinite(v)]
            return min(finite) if finite else np.inf

        return members[int(np.argmin([best(m) for m in members]))]

    def fit(self, X: Any, times: Any = None, **kwargs: Any) -> GPVAEEnsemble:
        """Fit every member on the same data (:meth:`gpvae.GPVAE.fit`, the same keyword
        arguments), one after the other. The previous members are replaced only when all
        the new ones are fitted. Returns self.

        The members' warnings (about the data, the settings, their training) are said once
        each, at the caller's line, however many members gave them (the filters decide what
        a member's fit shows, so no count of members is given)."""
        fitted = []
        caught: list[list[warnings.WarningMessage]] = []
        interrupted = False
        try:
            for k in range(self.members):
                with shown_warnings(globals()) as mine:  # every member's, said once below
                    caught.append(mine)
                    fitted.append(self._member(k).fit(X, times, **kwargs))
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:  # also those given before a member's fit failed
            said = dict.fromkeys((w.category, str(w.message)) for c in caught for w in c)
            for category, text in said:
                if interrupted and text.startswith(_MEMBER_KEPT):
                    continue  # the member's own note: the ensemble keeps none of it
                warnings.warn(text, category, stacklevel=2)  # the caller of fit
            if interrupted:
                before = "its members of before" if self.members_ else "nothing (not fitted)"
                warnings.warn(
                    f"fit: interrupted (KeyboardInterrupt) while member {len(fitted) + 1} of "
                    f"{self.members} trained; the ensemble keeps {before}: the members are "
                    "replaced only when all the new ones are fitted",
                    UserWarning,
                    stacklevel=2,
                )
        self.members_ = fitted
        return self

    def forecast(
        self,
        X: Any,
        times: Any = None,
        horizon: int | None = None,
        future_times: Any = None,
        num_samples: int = 100,
        quantiles: Sequence[float] = (0.05, 0.95),
        return_samples: bool = False,
    ) -> ForecastResult:
        """The mixture forecast (arguments as :meth:`gpvae.GPVAE.forecast`): ``num_samples``
        joint paths in all, shared out evenly between the members (at least two each, so
        ``num_samples`` >= 2 x members), the mean of the members' means, and the
        ``quantiles`` of the pooled paths."""
        members = self._fitted("forecast")
        S, q_lo, q_hi = member_draws_arg(num_samples, quantiles, len(members))  # pooled
        share = [S // len(members) + (k < S % len(members)) for k in range(len(members))]
        with shown_warnings(globals()) as caught:  # the filters left alone
            parts = [
                m.forecast(X, times, horizon, future_times, s, quantiles, return_samples=True)
                for m, s in zip(members, share)
            ]
        said = set()
        for w in caught:  # the members' warnings (about the data, the calibration) once each
            text = str(w.message)
            if text.startswith("num_samples: ") or text in said:
                continue  # a member's own interval (from its share of the draws) is not reported
            said.add(text)
            warnings.warn(text, w.category, stacklevel=2)
        warn_few_draws(S, q_lo, q_hi, 3)  # the pooled draws' interval, inputs checked
        draws = np.concatenate([np.asarray(p.samples) for p in parts], axis=0)
        mean = np.mean([np.asarray(p.mean) for p in parts], axis=0)
        # the predictive positions p (S + 1), as a single model's interval (numpy's default,
        # p (S - 1), gives a 90% interval from S pooled draws about (S - 1) / (S + 1) of it)
        lower, upper = (
            q.numpy() for q in sorted_quantiles(torch.from_numpy(draws), (q_lo, q_hi), "predictive")
        )
        frame = parts[0].frame
        if frame is not None:  # id / time columns, then D means, D lower and D upper ends
            n, H, D = mean.shape
            frame = frame.copy()
            block = np.concatenate([a.reshape(n * H, D) for a in (mean, lower, upper)], axis=1)
            frame.iloc[:, frame.shape[1] - 3 * D :] = block
        return replace(
            parts[0],
            mean=mean,
            lower=lower,
            upper=upper,
            samples=draws if return_samples else None,
            frame=frame,
        )

    def backtest(self, X: Any, times: Any = None, **kwargs: Any) -> BacktestResult:
        """Rolling-origin backtest of the ensemble's configuration
        (:func:`gpvae.estimator.backtest.backtest`; every refit fits all members)."""
        return backtest(cast(Estimator, self), X, times, **kwargs)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write every member to ``path/member_<k>`` (:meth:`gpvae.GPVAE.save`) and the
        member count to ``path/ensemble.json``; a single model saved in ``path`` before is
        removed.

        Raises:
            NotFittedError: before fit.
            ValidationError: ``path`` holds a ``config.json`` or ``model.safetensors`` that
                gpvae did not write (nothing is written then), or cannot be created as a
                folder.
        """
        members = self._fitted("save")
        root = Path(path)
        check_single(root)
        make_folder(root)
        for k, m in enumerate(members):
            m.save(root / f"member_{k}")
        (root / ENSEMBLE_FILE).write_text(json.dumps({"members": len(members)}) + "\n")
        drop_single(root, len(members))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> GPVAEEnsemble:
        """Read a folder written by :meth:`save` (raises ModelFileError naming what is
        missing or malformed)."""
        root = Path(path)
        try:
            info = json.loads((root / ENSEMBLE_FILE).read_text())
            count = int(info["members"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelFileError(
                f"path: expected an ensemble folder with {ENSEMBLE_FILE} holding the member count, "
                f"found {root} ({exc})"
            ) from None
        if count < 1:
            raise ModelFileError(f"{ENSEMBLE_FILE}: expected members >= 1, found {count}")
        members = [GPVAE.load(root / f"member_{k}") for k in range(count)]
        config = members[0].get_config()
        if config.get("checkpoint_dir") is not None:  # the first member's own folder
            config["checkpoint_dir"] = str(Path(config["checkpoint_dir"]).parent)
        config["kernel"] = kernel_from_spec(config["kernel"])
        config["hidden"] = tuple(config["hidden"])
        config["block_lengths"] = tuple(config["block_lengths"])
        out = cls(count, **config)
        out.members_ = members
        return out
