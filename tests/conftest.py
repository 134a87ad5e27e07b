"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(int(os.environ.get("GPVAE_TEST_THREADS", "1")))

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def data_dir() -> Path:
    """The shared real-data directory (``GPVAE_DATA`` or ../shared/data); skip if absent."""
    path = Path(os.environ.get("GPVAE_DATA", ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"real data directory not found at {path} (set GPVAE_DATA)")
    return path
