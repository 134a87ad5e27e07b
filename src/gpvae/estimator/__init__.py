"""The estimator layer: the public :class:`GPVAE` and what it needs.

- :mod:`~gpvae.estimator.estimator`: the class (argument checks, data in and out);
- :mod:`~gpvae.estimator.assembly`: a model from the estimator's names;
- :mod:`~gpvae.estimator.imputation`, :mod:`~gpvae.estimator.forecasting`,
  :mod:`~gpvae.estimator.anomaly`: the prediction methods' bodies;
- :mod:`~gpvae.estimator.calibration`: interval recalibration on held-out entries;
- :mod:`~gpvae.estimator.results`: result objects in the input's form;
- :mod:`~gpvae.estimator.modelfile`: the model folder (weights + JSON, no pickle, no paths).
"""

from __future__ import annotations

from gpvae.estimator.ensemble import GPVAEEnsemble
from gpvae.estimator.estimator import GPVAE

__all__ = ["GPVAE", "GPVAEEnsemble"]
