"""The start of the package, which the command line imports first.

- ``import gpvae`` imports the estimator, ``gp`` and ``kernels`` on first use; every name of
  ``gpvae.__all__`` is there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

#: Modules that take seconds to import and that the group's own help does not need.
HEAVY = ("torch", "pandas")


def _fresh(code: str, **env: str) -> dict[str, object]:
    """Run ``code`` in a new interpreter; it prints one JSON object, returned."""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    return out


def test_import_gpvae_is_light_and_every_public_name_is_there() -> None:
    code = (
        "import json, sys\n"
        "import gpvae\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "from gpvae import GPVAE, GPVAEEnsemble, gp, kernels\n"
        "names = {n: type(getattr(gpvae, n)).__name__ for n in gpvae.__all__}\n"
        "same = GPVAE is gpvae.estimator.GPVAE and gp is sys.modules['gpvae.gp']\n"
        "print(json.dumps({'heavy': heavy, 'names': names, 'same': same,\n"
        "                  'dir': sorted(set(gpvae.__all__) - set(dir(gpvae)))}))\n"
    )
    found = _fresh(code)
    assert found["heavy"] == []
    assert found["names"] == {
        "GPVAE": "type",
        "GPVAEEnsemble": "type",
        "__version__": "str",
        "errors": "module",
        "gp": "module",
        "kernels": "module",
        "limit_heap_fragmentation": "function",
    }
    assert found["same"] is True
    assert found["dir"] == []


def test_unknown_attribute_of_gpvae_is_an_attribute_error() -> None:
    import gpvae

    with pytest.raises(AttributeError, match="module 'gpvae' has no attribute 'GPVae'"):
        _ = gpvae.GPVae  # type: ignore[attr-defined]
