"""``python -m gpvae.app.demo``: rerun :func:`~gpvae.app.demo.model.tune` (the settings search
on a validation mask) and print every candidate's validation MAE, best first."""

from __future__ import annotations

import sys

from gpvae.app.demo.model import tune

__all__: list[str] = []

if __name__ == "__main__":
    for settings, score, seconds in tune():
        print(f"{score:.4f} {seconds:6.1f} s {settings}")
    sys.exit(0)
