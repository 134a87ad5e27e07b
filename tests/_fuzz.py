"""Shared set-up of the fuzz tests (``test_fuzz_estimator.py``, ``test_fuzz_cli.py``)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, settings

#: ``GPVAE_FUZZ_SCALE`` multiplies every example count.
SCALE = float(os.environ.get("GPVAE_FUZZ_SCALE", "1"))

#: Hypothesis settings of every fuzz test: no deadline (a fit takes a while).
FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)


def scaled(n: int) -> int:
    """``n`` examples times ``GPVAE_FUZZ_SCALE`` (at least 1)."""
    return max(1, int(n * SCALE))


def case_report(label: str, counts: Counter[str]) -> Callable[[], Iterator[None]]:
    """A module-wide autouse fixture printing ``counts`` (``pytest -s`` shows it) at the end."""

    @pytest.fixture(scope="module", autouse=True)
    def _report() -> Iterator[None]:
        yield
        total = sum(v for k, v in counts.items() if k.endswith(":cases"))
        parts = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        print(f"\n[{label}] {total} cases ({parts})")

    return _report
