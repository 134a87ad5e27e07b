"""``python -m gpvae ...`` runs the command line (the ``gpvae`` script), e.g. under torchrun."""

from __future__ import annotations

import sys

from gpvae.app.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
