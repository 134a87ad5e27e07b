"""Tests of the packaging: what pyproject.toml declares and what the distributions ship."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def _project() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def _lower_bound(requirement: str) -> tuple[int, ...]:
    match = re.search(r">=\s*([0-9.]+)", requirement)
    assert match is not None, requirement
    return tuple(int(part) for part in match.group(1).split("."))


def test_pandas_lower_bound_has_what_the_cli_imports() -> None:
    # the CLI reads dates with pandas.tseries.api.guess_datetime_format (pandas >= 2.2)
    (pandas,) = [r for r in _project()["project"]["dependencies"] if r.startswith("pandas")]
    assert _lower_bound(pandas) >= (2, 2)


def test_licence_is_an_spdx_expression_with_its_text_shipped() -> None:
    project = _project()
    assert project["project"]["license"] == "MIT"
    assert project["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 the gpvae developers" in text
    # license-files and an SPDX string need setuptools >= 77 to build
    (setuptools,) = [r for r in project["build-system"]["requires"] if "setuptools" in r]
    assert _lower_bound(setuptools) >= (77,)


def test_sdist_leaves_out_the_tests() -> None:
    # setuptools would ship tests/test_*.py alone, without the conftest, helpers and data
    # they need: an sdist whose tests cannot run
    lines = (ROOT / "MANIFEST.in").read_text().splitlines()
    assert "prune tests" in [line.strip() for line in lines]


def test_cli_reads_and_writes_csv_without_pyarrow(tmp_path: Path) -> None:
    # pyarrow was imported when the command line was (gpvae.data.parquet, imported by the
    # CLI's table files): without it every command died at import, CSV files too
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['pyarrow'] = None  # import pyarrow raises ImportError\n"
        "import pandas as pd\n"
        "from gpvae.app.cli import main\n"
        "from gpvae.app.cli.errors import CLIError\n"
        "from gpvae.app.cli.tables import read_table, write_table\n"
        "assert main(['--help']) == 0\n"
        "frame = pd.DataFrame({'id': [1, 1, 2], 'x': [0.5, 1.5, 2.5]})\n"
        "write_table(frame, 'table.csv')\n"
        "pd.testing.assert_frame_equal(read_table('table.csv'), frame)\n"
        "try:\n"
        "    write_table(frame, 'table.parquet')\n"
        "except CLIError as err:\n"
        "    print(err.format_message())\n"
        "assert 'pyarrow' not in sys.modules or sys.modules['pyarrow'] is None\n"
    )
    import os

    path = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}  # this checkout's gpvae, from tmp_path too
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert out.returncode == 0, out.stderr
    assert "OUT: could not write 'table.parquet'" in out.stdout
    assert "pyarrow" in out.stdout.splitlines()[-1]  # the engine pandas looked for


# ----------------------------------------------------------------------------------------
# matplotlib (plots): checked before any work


@pytest.fixture
def no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """matplotlib's figure modules do not import (as when it is missing or broken)."""
    import sys

    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.usefixtures("no_matplotlib")
def test_check_plot_says_to_install_matplotlib_before_any_work(tmp_path: Path) -> None:
    # the commands wrote their table, then failed with a raw ModuleNotFoundError
    from gpvae.app.cli.errors import CLIError
    from gpvae.app.cli.tables import check_plot

    assert check_plot(None) is None  # no plot asked for: matplotlib not needed
    with pytest.raises(CLIError, match=r"^--series-plot: drawing the plot needs matplotlib") as e:
        check_plot(str(tmp_path / "series.png"), "--series-plot")
    assert "install matplotlib (pip install matplotlib), or leave out --series-plot" in str(e.value)


@pytest.mark.usefixtures("no_matplotlib")
def test_demo_checks_matplotlib_before_the_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # it fitted for 45 s, then failed drawing the plots and lost its results
    from gpvae.app.demo import run

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the demo started its work")

    monkeypatch.setattr(run, "load_weather", never)
    monkeypatch.setattr(run, "fit_model", never)
    with pytest.raises(ImportError, match=r"matplotlib.*pip install matplotlib"):
        run.run_demo(tmp_path / "demo", quick=True, progress=False, echo=lambda line: None)
    assert not (tmp_path / "demo").exists()


def test_demo_writes_its_tables_and_metrics_before_the_plots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a plot that fails (a broken matplotlib, a full disk) loses none of the results
    from gpvae.app.demo import run

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("plotting failed")

    from dataclasses import replace

    small = replace(run.QUICK, epochs=1, stride=30, latent_dim=2, hidden=(16,), num_samples=20)
    monkeypatch.setattr(run, "demo_settings", lambda quick, epochs: small)
    monkeypatch.setattr(run, "draw_plots", broken)
    out = tmp_path / "demo"
    with pytest.raises(RuntimeError, match="plotting failed"):
        run.run_demo(out, quick=True, progress=False, echo=lambda line: None)
    for name in ["imputed.csv", "forecast.csv", "anomalies.csv", "metrics.json"]:
        assert (out / name).is_file(), name
    import json

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 1
    assert set(metrics["imputation_mae"]) == {"gpvae", "mean", "LOCF", "linear"}
