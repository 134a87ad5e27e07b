"""The forecasting docs region (``benchmarks/make_forecast_table.py``) is the JSON records
rendered, and a record's refit (once before the earliest origin, or at each origin) is part
of its identity and of its row's name."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"


@pytest.fixture(scope="module")
def table(bench_script: Callable[[str], ModuleType]) -> ModuleType:
    return bench_script("make_forecast_table")


def test_docs_region_is_the_records_rendered(table: ModuleType, tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text((ROOT / "docs" / "benchmarks.md").read_text())
    table.main(["--docs", str(docs)])
    assert docs.read_text() == (ROOT / "docs" / "benchmarks.md").read_text()


def test_refit_is_part_of_the_key(table: ModuleType) -> None:
    forecasting = sys.modules["forecasting"]
    results = forecasting.ForecastResults.__new__(forecasting.ForecastResults)
    base = {
        "dataset": "employment",
        "horizon": 12,
        "method": "gpvae",
        "seed": 0,
        "forecast_holdout": 0,
        "forecast_blend": True,
        "difference": True,
        "screen": None,
        "kernel": None,
    }
    old = dict(base)  # made before refit was recorded: fitted once
    once = {**base, "refit": "once"}
    each = {**base, "refit": "each"}
    assert results._key(old) == results._key(once)
    assert results._key(once) != results._key(each)
    # a classical method has no refit of its own
    ets = {**base, "method": "ets", "refit": None}
    assert results._key(ets)[-1] is None


def test_rows_name_the_refit_that_differs_from_the_data_set(table: ModuleType) -> None:
    configured = table.REFIT["employment"]
    other = "once" if configured == "each" else "each"
    rec = {"dataset": "employment", "horizon": 12, "method": "vae"}
    assert table._method({**rec, "refit": configured}) == "vae"
    assert table._method({**rec, "refit": other}) == f"vae@{other}"
    assert table._name(f"vae@{other}").startswith("N(0, I) VAE, ")
    seattle = {"dataset": "seattle", "horizon": 28, "method": "gpvae", "difference": False}
    assert table.REFIT["seattle"] == "once"
    assert table._method(seattle) == "gpvae"  # no refit recorded: fitted once, as configured
    assert table._method({**seattle, "refit": "each"}) == "gpvae@each"


def test_ensemble_size_is_part_of_the_key_and_of_the_row(table: ModuleType) -> None:
    forecasting = sys.modules["forecasting"]
    results = forecasting.ForecastResults.__new__(forecasting.ForecastResults)
    levels = table.GPVAE_CONFIG["employment"]["level_features"]
    rec = {"dataset": "employment", "horizon": 12, "method": "gpvae", "difference": True}
    rec |= {"refit": table.REFIT["employment"], "forecast_blend": True, "level_features": levels}
    assert table.MEMBERS["employment"] == 5
    # a record made before members was recorded ran one model
    assert results._key(rec) == results._key({**rec, "members": 1})
    assert results._key({**rec, "members": 1}) != results._key({**rec, "members": 5})
    assert table._method(rec) == "gpvae-one"
    assert table._method({**rec, "members": 5}) == "gpvae"
    assert table._method({**rec, "members": 3}) == "gpvae-members"
    # every feature's increments (records made before level_features was configured)
    every = {**rec, "level_features": None}
    assert results._key(every) != results._key(rec)
    assert table._method({**every, "members": 5}) == "gpvae-all-increments"
    assert table._method(every) == "gpvae-all-increments+one"
    assert table._name("gpvae-all-increments+one").startswith("gpvae, one model, ")
    seattle = {"dataset": "seattle", "horizon": 28, "method": "gpvae", "difference": False}
    assert table._method(seattle) == "gpvae"  # one model is Seattle's configuration


def test_records_exist_for_every_configured_gpvae_row(table: ModuleType) -> None:
    records = json.loads((RESULTS / "forecasting.json").read_text())
    methods = {(r["dataset"], r["horizon"], table._method(r)) for r in records}
    for ds, h, _ in table.DATASETS:
        assert (ds, h, "gpvae") in methods


def test_level_features_are_what_the_per_feature_screen_picks(table: ModuleType) -> None:
    """US employment's configured level_features are the features whose levels model beat
    the increments model on the screen for every seed group (the rendered table marks any
    disagreement), and the screen holds such records."""
    screen = json.loads((RESULTS / "forecasting_screen.json").read_text())
    text = table.render_screen_features(screen)
    assert "| by its levels? |" in text
    rows = [line for line in text.splitlines() if line.endswith(("| yes |", "| no |"))]
    assert len(rows) == 23
    assert "not what this screen picks" not in text
    picked = [line.split(" | ")[0].lstrip("| ") for line in rows if line.endswith("| yes |")]
    assert picked == table.GPVAE_CONFIG["employment"]["level_features"]


def test_a_model_of_the_levels_has_one_key_whatever_was_recorded(table: ModuleType) -> None:
    forecasting = sys.modules["forecasting"]
    results = forecasting.ForecastResults.__new__(forecasting.ForecastResults)
    rec = {"dataset": "beijing", "horizon": 24, "method": "gpvae", "forecast_blend": True}
    # made before difference was recorded: the levels, as difference=False
    assert results._key(rec) == results._key({**rec, "difference": False})
    assert results._key(rec) != results._key({**rec, "difference": True})
    # level_features only matters for a model of the increments
    levels = table.GPVAE_CONFIG["employment"]["level_features"]
    flat = {**rec, "difference": False}
    assert results._key(flat) == results._key({**flat, "level_features": levels})
    steps = {**rec, "difference": True}
    assert results._key(steps) != results._key({**steps, "level_features": levels})
    # a classical method keeps what it recorded
    ets = {**rec, "method": "ets", "difference": None}
    assert results._key(ets) != results._key({**ets, "difference": False})


def test_a_row_names_the_configuration_its_record_ran(table: ModuleType) -> None:
    cfg = {"latent_dim": 4, "window": 48}
    main = {"dataset": "employment", "method": "gpvae", "config": cfg}
    # an override on the command line (--window 24) is what the record ran
    override = {**main, "window": 24, "forecast_blend": False}
    assert table._ran(override) == {"latent_dim": 4, "window": 24}
    # a record of a configuration that was changed since
    older = {**main, "config": {**cfg, "window": 24}, "forecast_blend": False}
    for r in (override, older):
        levels = table.GPVAE_CONFIG["employment"]["level_features"]
        configured = {**main, "difference": True, "members": 5, "level_features": levels}
        configured["refit"] = table.REFIT["employment"]
        assert table._method(configured) == "gpvae"
        notes = table._config([configured, r])
        assert any(n.endswith("ran another configuration, with `window=24`.") for n in notes)
