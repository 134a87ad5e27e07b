"""Smoke test of the imputation benchmark harness (``benchmarks/imputation.py``).

Runs the naive baselines and ``gpvae`` (1 epoch, tiny network) on 64 PhysioNet 2012 stays
and checks the record format, that the metrics are finite, that masks hide only observed
entries, and that finished records are skipped. The PyPOTS peers are never imported.
"""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
RECORD_KEYS = {
    "dataset",
    "pattern",
    "method",
    "seed",
    "mae",
    "mse",
    "auroc",
    "wall_s",
    "epochs",
    "settings",
}


@pytest.fixture(scope="module")
def harness() -> ModuleType:
    """``benchmarks/imputation.py`` imported as a module."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module("imputation")


@pytest.fixture(scope="module")
def prep(harness: ModuleType) -> Any:
    """64 PhysioNet stays, prepared by the protocol (skips without the data directory)."""
    import os

    root = Path(__file__).resolve().parents[2]
    path = Path(os.environ.get("GPVAE_DATA", root.parent / "shared" / "data"))
    if not (path / "physionet2012" / "set-a").is_dir():
        pytest.skip(f"PhysioNet 2012 data not found under {path} (set GPVAE_DATA)")
    protocol = importlib.import_module("_protocol")
    return protocol.prepare("physionet2012", path, subset=64)


@pytest.mark.parametrize("pattern", ["point", "block"])
def test_masks_hide_only_observed_entries(harness: ModuleType, prep: Any, pattern: str) -> None:
    protocol = importlib.import_module("_protocol")
    task = protocol.make_task(prep, pattern, seed=0)
    for X_in, X_ori, mask in (
        (task.X_val, task.X_val_ori, task.val_mask),
        (task.X_test, task.X_test_ori, task.test_mask),
    ):
        assert mask.any()
        assert not np.isnan(X_ori[mask]).any()  # only observed entries are hidden
        assert np.isnan(X_in[mask]).all()
        same = ~mask
        np.testing.assert_array_equal(X_in[same], X_ori[same])  # nothing else changed
    for rate in task.hidden_rates.values():
        assert 0.09 <= rate <= 0.2
    # Another seed draws other masks; the same seed the same ones.
    again = protocol.make_task(prep, pattern, seed=0)
    np.testing.assert_array_equal(again.test_mask, task.test_mask)
    other = protocol.make_task(prep, pattern, seed=1)
    assert (other.test_mask != task.test_mask).any()


def test_standardised_with_training_statistics(prep: Any) -> None:
    train = prep.X[prep.train]
    observed = ~np.isnan(train).all(axis=(0, 1))
    means = np.nanmean(train[:, :, observed], axis=(0, 1))
    np.testing.assert_allclose(means, 0.0, atol=1e-9)
    assert np.all(prep.std > 0)


@pytest.mark.parametrize("method", ["mean", "locf", "linear", "gpvae"])
def test_run_writes_valid_records(
    harness: ModuleType, prep: Any, method: str, tmp_path: Path
) -> None:
    protocol = importlib.import_module("_protocol")
    out = tmp_path / "imputation.json"
    results = protocol.ResultsFile(out)
    records = harness.run(
        "physionet2012", method, 0, results, epochs=1, patience=1, smoke=True, prep=prep
    )
    assert [r["pattern"] for r in records] == ["point", "downstream", "block"]
    for rec in records:
        assert set(rec) >= RECORD_KEYS
        assert (rec["dataset"], rec["method"], rec["seed"]) == ("physionet2012", method, 0)
        assert rec["wall_s"] >= 0
        assert isinstance(rec["epochs"], int)
        assert isinstance(rec["settings"], dict)
        if rec["pattern"] == "downstream":
            assert 0.0 <= rec["auroc"] <= 1.0
        else:
            assert math.isfinite(rec["mae"])
            assert math.isfinite(rec["mse"])
            assert rec["mae"] > 0
            assert rec["mse"] >= rec["mae"] ** 2 - 1e-12  # Jensen
    if method == "gpvae":
        assert all(r["epochs"] >= 1 for r in records)
    # The file holds the same records, and a second run skips them all.
    on_disk = protocol.ResultsFile(out).records
    assert len(on_disk) == 3
    again = harness.run("physionet2012", method, 0, results, epochs=1, smoke=True, prep=prep)
    assert again == []
    assert "pypots" not in sys.modules
    assert "_peers" not in sys.modules


def test_linear_beats_mean_on_points(harness: ModuleType, prep: Any, tmp_path: Path) -> None:
    protocol = importlib.import_module("_protocol")
    results = protocol.ResultsFile(tmp_path / "r.json")
    maes = {}
    for method in ("mean", "linear"):
        (rec,) = harness.run(
            "physionet2012",
            method,
            0,
            results,
            patterns=["point"],
            downstream=False,
            smoke=True,
            prep=prep,
        )
        maes[method] = rec["mae"]
    assert maes["linear"] < maes["mean"]


def test_records_name_their_command_without_this_machines_paths(
    harness: ModuleType, prep: Any, tmp_path: Path
) -> None:
    """main() writes the command line into every record, without --out and --data-dir (in
    either spelling; the other flags stay as typed), and the machine names torch's CPU
    capability."""
    import os

    root = Path(__file__).resolve().parents[2]
    data = str(Path(os.environ.get("GPVAE_DATA", root.parent / "shared" / "data")))
    out = tmp_path / "r.json"
    argv = ["--dataset", "physionet2012", "--method", "linear", "--seed", "0", "1"]
    argv += ["--smoke", "--pattern", "point", "--out", str(out), f"--data-dir={data}"]
    assert harness.main(argv) == 0
    records = importlib.import_module("_protocol").ResultsFile(out).records
    assert [(r["pattern"], r["seed"]) for r in records] == [
        ("point", 0),
        ("downstream", 0),
        ("point", 1),
        ("downstream", 1),
    ]
    want = (
        "python benchmarks/imputation.py --dataset physionet2012 --method linear --seed 0 1 "
        "--smoke --pattern point"
    )
    assert {r["command"] for r in records} == {want}
    import torch

    machine = records[0]["settings"]["machine"]
    assert machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert harness.record_command(["--out", "x.json", "--tag", "a b", "--data-dir", "d"]) == (
        "python benchmarks/imputation.py --tag 'a b'"
    )
    # run() without a command (tests, callers of the module) writes none.
    plain = harness.run(
        "physionet2012",
        "linear",
        2,
        importlib.import_module("_protocol").ResultsFile(tmp_path / "p.json"),
        patterns=["point"],
        downstream=False,
        smoke=True,
        prep=prep,
    )
    assert "command" not in plain[0]


def test_make_tables_keeps_other_sections(harness: ModuleType) -> None:
    tables = importlib.import_module("make_tables")
    other = "<!-- hmnist-table -->\nHMNIST numbers\n<!-- /hmnist-table -->\n"
    records = [
        {
            "dataset": "physionet2012",
            "pattern": pattern,
            "method": "linear",
            "seed": seed,
            "mae": 0.3 + 0.01 * seed if pattern != "downstream" else None,
            "mse": 0.4 if pattern != "downstream" else None,
            "auroc": 0.7 if pattern == "downstream" else None,
            "wall_s": 1.0,
            "epochs": 0,
            "settings": {},
        }
        for pattern in ("point", "block", "downstream")
        for seed in (0, 1, 2)
    ]
    region = tables.render(records)
    assert "0.310 +- 0.010 (3)" in region
    doc = "# Benchmarks\n\n" + other
    once = tables.replace_region(doc, region)
    assert other in once
    assert region in once
    assert tables.replace_region(once, region) == once


def test_make_tables_goals_and_convergence(harness: ModuleType) -> None:
    """The goals table compares gpvae with linear / BRITS / SAITS per cell and reports its
    coverage; the convergence table lists epochs run (best epoch) per seed."""
    tables = importlib.import_module("make_tables")

    def rec(method: str, mae: float, seed: int, **extra: Any) -> dict[str, Any]:
        return {
            "dataset": "beijing_air",
            "pattern": "point",
            "method": method,
            "seed": seed,
            "mae": mae,
            "mse": mae**2,
            "auroc": None,
            "wall_s": 1.0,
            "epochs": 20 if method in ("gpvae", "brits", "saits") else 0,
            "settings": {"best_epoch": 15} if method != "linear" else {},
            **extra,
        }

    records = [
        rec("linear", 0.12, 0),
        rec("brits", 0.13, 0),
        rec("saits", 0.10, 0),
        rec("gpvae", 0.11, 0, coverage90=0.9),
        rec("gpvae", 0.11, 1, coverage90=0.88),
        rec("linear", 0.25, 0, pattern="block"),
        rec("gpvae", 0.25, 0, pattern="block", coverage90=0.9),  # level: not below
    ]
    region = tables.render(records)
    row = next(line for line in region.splitlines() if line.startswith("| BeijingAir, points"))
    # Compared on the seeds all four have (0); the coverage is over gpvae's seeds.
    want = ["0", "0.1100", "0.1200", "yes (-8.33%)", "0.130", "yes", "0.100", "no"]
    assert row.split(" | ")[1:9] == want
    tie = next(line for line in region.splitlines() if line.startswith("| BeijingAir, blocks"))
    assert tie.split(" | ")[2:5] == ["0.2500", "0.2500", "no (+0.00%)"]
    assert "0.890 +- 0.014 (2)" in row
    # Only data with learned runs get columns (here BeijingAir: points, blocks).
    assert "| method | BeijingAir, points | BeijingAir, blocks |" in region
    assert "| gpvae | 20 (15), 20 (15) | 20 (15) |" in region


def test_subset_is_part_of_a_records_identity(
    harness: ModuleType, prep: Any, tmp_path: Path
) -> None:
    """A reduced-scale record (``subset``) neither replaces nor stands in for a record of the
    whole data set with the same (dataset, pattern, method, seed), and the reverse."""
    protocol = importlib.import_module("_protocol")
    results = protocol.ResultsFile(tmp_path / "r.json")
    (sub,) = harness.run(
        "physionet2012",
        "linear",
        0,
        results,
        patterns=["point"],
        downstream=False,
        prep=prep,
        subset=64,
    )
    assert sub["subset"] == 64
    assert results.has("physionet2012", "point", "linear", 0, 64)
    assert not results.has("physionet2012", "point", "linear", 0)
    (whole,) = harness.run(
        "physionet2012", "linear", 0, results, patterns=["point"], downstream=False, prep=prep
    )
    assert "subset" not in whole
    on_disk = protocol.ResultsFile(tmp_path / "r.json").records
    assert sorted(r.get("subset") or 0 for r in on_disk) == [0, 64]


def test_make_tables_cells_carry_epochs_and_coverage(harness: ModuleType) -> None:
    """Each cell of a data set's table gives MAE, epochs run (best) per seed and gpvae's
    coverage; a subset's records get their own table, titled with the subset."""
    tables = importlib.import_module("make_tables")

    def rec(method: str, pattern: str, subset: int | None, **extra: Any) -> dict[str, Any]:
        r = {
            "dataset": "physionet2012",
            "pattern": pattern,
            "method": method,
            "seed": 0,
            "mae": 0.3,
            "mse": 0.4,
            "auroc": None,
            "wall_s": 1.0,
            "epochs": 9 if method != "linear" else 0,
            "settings": {"best_epoch": 4, "protocol": {"data": {"n_train": 384}}},
            **extra,
        }
        if subset is not None:
            r["subset"] = subset
        return r

    records = [
        rec("linear", "point", None, mae=0.33),
        rec("linear", "point", 600, mae=0.35),
        rec("gpvae", "point", 600, coverage90=0.877),
        rec("gpvae", "block", 600, coverage90=0.861),
        rec("brits", "point", 600),
    ]
    region = tables.render(records)
    assert "### PhysioNet 2012 (set-a)\n" in region
    assert "### PhysioNet 2012 (set-a), first 600 stays (384 training; reduced scale)" in region
    whole, reduced = region.split("first 600 stays (384 training; reduced scale)\n", 1)
    assert "| linear | 0.330 (1) |" in whole
    assert "0.350" not in whole
    row = next(line for line in reduced.splitlines() if line.startswith("| gpvae |"))
    assert row.split(" | ")[1:9] == [
        "0.300 (1)",
        "0.400 (1)",
        "9 (4)",
        "0.877 (1)",
        "0.300 (1)",
        "0.400 (1)",
        "9 (4)",
        "0.861 (1)",
    ]
    brits = next(line for line in reduced.splitlines() if line.startswith("| brits |"))
    assert brits.split(" | ")[3:9] == ["9 (4)", "-", "-", "-", "-", "-"]


def test_make_tables_lists_the_whole_physionet_commands_and_old_calibrations(
    harness: ModuleType,
) -> None:
    """The Commands section lists the recorded commands of the runs on all PhysioNet stays
    (once each, in the order they ran, in the benchmark environment; subset runs and
    records without a command are left to the campaign's loop), and the goals' text names
    the gpvae records whose intervals were calibrated on the hidden validation entries."""
    tables = importlib.import_module("make_tables")
    cmd = "python benchmarks/imputation.py --dataset physionet2012 --method {} --seed 0"

    def rec(method: str, pattern: str, created: str, **extra: Any) -> dict[str, Any]:
        return {"dataset": "physionet2012", "pattern": pattern, "method": method, "seed": 0,
                "mae": 0.3, "mse": 0.4, "auroc": None, "wall_s": 1.0, "epochs": 9,
                "settings": {"best_epoch": 4}, "created": created, **extra}  # fmt: skip

    old = "MAE ...; 90% intervals calibrated on the same entries"
    records = [
        rec("saits", "point", "2026-12-03T22:00:00Z", command=cmd.format("saits")),
        rec("saits", "downstream", "2026-12-03T22:01:00Z", command=cmd.format("saits")),
        rec("gpvae", "point", "2026-12-03T21:00:00Z", command=cmd.format("gpvae") + " --force"),
        rec("gpvae", "block", "2026-12-01T00:00:00Z", settings={"early_stopping": old}),
        rec("brits", "point", "2026-12-03T23:00:00Z", subset=300, command=cmd.format("brits")),
        rec("linear", "point", "2026-12-01T00:00:00Z"),
    ]
    region = tables.render(records)
    block = region.split("that name their command", 1)[1]
    block = block.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    run = "OMP_NUM_THREADS=1 .venv-bench/bin/python benchmarks/imputation.py --dataset"
    assert block == [
        f"{run} physionet2012 --method gpvae --seed 0 --force",
        f"{run} physionet2012 --method saits --seed 0",
    ]
    assert (
        "shaped like the pattern, except PhysioNet 2012 (set-a), blocks, seed 0: older "
        "records whose intervals were calibrated on the hidden validation entries themselves)"
    ) in region
    assert "that name their command" not in tables.render(records[3:])
    assert "shaped like the pattern). " in tables.render(records[:3])


def test_make_tables_cells_hold_one_gpvae_configuration(harness: ModuleType) -> None:
    """A gpvae cell with records of the current GPVAE_CONFIG leaves out its records of an
    earlier one (named under the table); a cell with older records only keeps them (named
    too); the AUROC row likewise."""
    tables = importlib.import_module("make_tables")
    current = dict(harness.GPVAE_CONFIG)
    older = {k: v for k, v in current.items() if k != "interp_cross"}

    def rec(pattern: str, seed: int, cfg: dict[str, Any], mae: float) -> dict[str, Any]:
        down = pattern == "downstream"
        return {"dataset": "physionet2012", "pattern": pattern, "method": "gpvae",
                "seed": seed, "mae": None if down else mae, "mse": None if down else mae,
                "auroc": mae if down else None, "wall_s": 1.0, "epochs": 9,
                "settings": {"best_epoch": 4, "config": cfg}}  # fmt: skip

    records = [
        rec("point", 0, current, 0.2),
        rec("point", 1, older, 0.3),
        rec("downstream", 0, current, 0.71),
        rec("downstream", 1, older, 0.73),
        rec("block", 0, older, 0.4),
        rec("block", 1, older, 0.5),
    ]
    region = tables.render(records)
    row = next(line for line in region.splitlines() if line.startswith("| gpvae |"))
    assert row.split(" | ")[1:6] == ["0.200 (1)", "0.200 (1)", "9 (4)", "-", "0.450 +- 0.071 (2)"]
    assert "| gpvae | 0.710 (1) |" in region  # the AUROC row: seed 0 only
    assert (
        "gpvae's records here (blocks seed 0, blocks seed 1) ran an earlier configuration: it "
        "differs from the current `GPVAE_CONFIG` in `interp_cross` (not rerun)."
    ) in region
    assert "(differing in `interp_cross`; downstream seed 1, points seed 1), still in" in region
    # Every record of the current configuration: no note at all.
    assert "earlier configuration" not in tables.render([records[0], records[2]])


def test_make_tables_outer_check_sits_beside_the_protocols_auroc(harness: ModuleType) -> None:
    """The downstream check's rows (benchmarks/downstream_outer.py) carry the protocol's AUROC
    of the same method and seeds, and only those seeds."""
    tables = importlib.import_module("make_tables")

    def down(method: str, seed: int, auroc: float) -> dict[str, Any]:
        return {"dataset": "physionet2012", "pattern": "downstream", "method": method,
                "seed": seed, "subset": 300, "auroc": auroc, "wall_s": 1.0, "epochs": 1,
                "settings": {}}  # fmt: skip

    def outer(method: str, seed: int, value: float) -> dict[str, Any]:
        return {"dataset": "physionet2012", "pattern": "outer", "method": method, "seed": seed,
                "subset": 300, "auroc_outer": value, "auroc_selection": value - 0.1,
                "n_outer": 3700, "n_selection": 240, "epochs": 1}  # fmt: skip

    records = [down("gpvae", 0, 0.6), down("gpvae", 1, 0.7), down("linear", 0, 0.65)]
    checks = [outer("gpvae", 0, 0.72), outer("linear", 0, 0.69), outer("gpvae[old]", 0, 0.7)]
    region = tables.render(records, None, checks)
    assert "#### The PhysioNet-300 AUROC checked on more stays" in region
    lines = region.splitlines()
    row = next(line for line in lines if line.startswith("| gpvae | "))
    assert row.split(" | ")[1:] == ["0", "0.720 (1)", "0.620 (1)", "0.600 (1)", "0 |"]
    assert next(line for line in lines if line.startswith("| gpvae[old] |")).endswith("| - | - |")
    assert lines.index(next(x for x in lines if x.startswith("| linear | 0 |"))) < lines.index(row)
    assert "checked on more stays" not in tables.render(records)
    assert "did not retrace" not in region
    checks[0]["epochs"] = 3  # the protocol record ran 1 epoch
    note = "the protocol column is that record's): gpvae seed 0: 3 here, 1 there."
    assert note in tables.render(records, None, checks)


def test_make_tables_pairs_each_auroc_with_linear_on_the_same_folds(harness: ModuleType) -> None:
    """The downstream table's paired column: per (seed, fold) the method's fold AUROC minus
    linear interpolation's of the same seed and fold, averaged, and the pairs above linear;
    a seed without a linear record of its own is left out, and no pair at all gives "-"."""
    tables = importlib.import_module("make_tables")

    def down(method: str, seed: int, folds: list[float]) -> dict[str, Any]:
        return {"dataset": "physionet2012", "pattern": "downstream", "method": method,
                "seed": seed, "auroc": sum(folds) / len(folds), "auroc_folds": folds,
                "wall_s": 1.0, "epochs": 1, "settings": {}}  # fmt: skip

    records = [
        down("linear", 0, [0.70, 0.60]),
        down("linear", 1, [0.70, 0.60]),
        down("gpvae", 0, [0.75, 0.50]),  # +0.05, -0.10
        down("gpvae", 1, [0.80, 0.70]),  # +0.10, +0.10
        down("saits", 2, [0.90, 0.90]),  # no linear record of seed 2
    ]
    lines = tables.render(records).splitlines()

    def cell(method: str) -> str:
        row = next(x for x in lines if x.startswith("| PhysioNet") and f"| {method} |" in x)
        return row.split(" | ")[4]

    assert cell("gpvae") == "+0.0375 (3 of 4)"
    assert cell("saits") == "-"
    assert cell("linear") == "-"


def test_make_tables_auroc_goal_names_the_best_peer_and_linear(harness: ModuleType) -> None:
    """Under the goals table: gpvae's mean AUROC against the best learned peer's mean (the
    highest, whichever peer) and against linear interpolation's, unrounded."""
    tables = importlib.import_module("make_tables")

    def down(method: str, seed: int, folds: list[float]) -> dict[str, Any]:
        return {"dataset": "physionet2012", "pattern": "downstream", "method": method,
                "seed": seed, "auroc": sum(folds) / len(folds), "auroc_folds": folds,
                "wall_s": 1.0, "epochs": 1, "settings": {}}  # fmt: skip

    def cell(method: str, seed: int, mae: float) -> dict[str, Any]:
        return {"dataset": "physionet2012", "pattern": "point", "method": method, "seed": seed,
                "mae": mae, "mse": mae, "wall_s": 1.0, "epochs": 1, "settings": {}}  # fmt: skip

    records = [
        cell("gpvae", 0, 0.2), cell("linear", 0, 0.3),
        down("linear", 0, [0.70, 0.70]),
        down("gpvae", 0, [0.75, 0.64]),  # 0.695: below linear, above the best peer
        down("brits", 0, [0.69, 0.69]),  # the best peer
        down("saits", 0, [0.60, 0.60]),
    ]  # fmt: skip
    lines = tables.render(records).splitlines()
    row = next(x for x in lines if x.startswith("| PhysioNet 2012 (set-a) | 1 | 0.695 |"))
    assert row.split(" | ")[3:8] == ["brits 0.690", "yes", "0.700", "no", "-0.0050 (1 of 2) |"]
    records[3] = down("gpvae", 0, [0.75, 0.66])  # 0.705: above linear too
    row = next(x for x in tables.render(records).splitlines() if "| 0.705 |" in x)
    assert row.split(" | ")[4:7] == ["yes", "0.700", "yes"]


def test_make_tables_outer_check_prints_its_commands(harness: ModuleType) -> None:
    """The downstream check lists the command of every record: the recorded one, or the one
    a record's settings imply (older records), seeds of the same command on one line."""
    tables = importlib.import_module("make_tables")

    def outer(method: str, seed: int, **extra: Any) -> dict[str, Any]:
        return {"dataset": "physionet2012", "pattern": "outer", "method": method, "seed": seed,
                "subset": 300, "auroc_outer": 0.7, "auroc_selection": 0.6, "n_outer": 3700,
                "n_selection": 240, **extra}  # fmt: skip

    cmd = "python benchmarks/downstream_outer.py --method brits --seed {} --epochs 200"
    checks = [
        outer("brits", 1, command=cmd.format(1)),
        outer("brits", 0, command=cmd.format(0)),
        outer("saits", 0, settings={"epochs": 100, "patience": 5}),
        outer("saits", 1, settings={"epochs": 100, "patience": 5}),
        outer("gpvae[x]", 0, settings={"epochs": 100, "config": {"interp_cross": True}}),
        outer("linear", 0, settings={"epochs": 120, "patience": 7}),
    ]
    several = "python benchmarks/downstream_outer.py --method gpvae --seed 1 0 2 --patience 5"
    checks += [outer("gpvae", s, command=several) for s in (1, 0, 2)]  # one command, 3 seeds
    region = tables.render([], None, checks)
    block = region.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    run = "OMP_NUM_THREADS=1 python benchmarks/downstream_outer.py --method"
    assert block == [
        f"{run} linear --seed 0 --epochs 120 --patience 7",
        f"{run} gpvae --seed 0 1 2 --patience 5",
        f"{run} gpvae --seed 0 --config '{{\"interp_cross\": true}}' --tag x",
        f"{run} saits --seed 0 1",
        f"{run} brits --seed 0 1 --epochs 200",
    ]


def test_make_tables_renders_the_gap_analysis_under_the_outer_check(
    harness: ModuleType,
) -> None:
    """downstream_gaps.py's results: its command and one row per imputation, after the
    downstream check (and nothing without them)."""
    tables = importlib.import_module("make_tables")
    check = {"dataset": "physionet2012", "pattern": "outer", "method": "linear", "seed": 0,
             "subset": 300, "auroc_outer": 0.7, "auroc_selection": 0.6, "n_outer": 3700,
             "n_selection": 240}  # fmt: skip
    bands = [{"distance": [1, 1], "entries": 5, "slope": 0.94, "corr": 0.99},
             {"distance": [2, 48], "entries": 0, "slope": float("nan"), "corr": 0.5}]  # fmt: skip
    rec = {"name": "gpvae_0", "file": "x.npz", "selection": 0.6241, "bands": bands,
           "gaps_linear": 0.6014, "never_mean": 0.5888, "shrunk": {"8.0": 0.6993}}  # fmt: skip
    gaps = {"command": "python benchmarks/downstream_gaps.py gpvae_0=x.npz", "subset": 300,
            "repeats": 20, "n_selection": 240, "records": [rec]}  # fmt: skip
    region = tables.render([], None, [check], gaps)
    lines = region.splitlines()
    title = "#### What the imputers hand the classifier (training + validation stays only)"
    at = lines.index(title)
    assert at > lines.index("#### The PhysioNet-300 AUROC checked on more stays")
    assert "OMP_NUM_THREADS=1 python benchmarks/downstream_gaps.py gpvae_0=x.npz" in lines
    row = next(line for line in lines if line.startswith("| gpvae_0 |"))
    assert row == "| gpvae_0 | 0.624 | 0.94 (0.99) / - | 0.601 | 0.589 | 0.699 |"
    assert "distance 1 / 2-48 |" in lines[lines.index(row) - 2]
    assert lines[lines.index(row) - 1] == "|---|---|---|---|---|---|"
    assert "What the imputers hand" not in tables.render([], None, [check])
    assert "did not retrace the downstream check" not in region
    check["epochs"] = 7
    rec.update(method="linear", seed=0, epochs=9)
    assert "Refits that did not retrace the downstream check's record (the AUROC column is the "\
        "refit's): gpvae_0 ran 9 epochs where the record above ran 7." in tables.render(
        [], None, [check], gaps)  # fmt: skip


def test_make_tables_protocol_names_the_runs_rerun_with_a_larger_cap(
    harness: ModuleType,
) -> None:
    """The protocol's budget ("at most 100 epochs") names the runs whose records ran with a
    larger cap (reruns of runs still improving at the cap), with the epochs they ran."""
    tables = importlib.import_module("make_tables")

    def rec(seed: int, epochs: int, cap: int, **extra: Any) -> dict[str, Any]:
        settings = {"epochs": cap, "patience": 5, "best_epoch": epochs - 5}
        return {"dataset": "physionet2012", "pattern": "point", "method": "brits", "seed": seed,
                "mae": 0.3, "mse": 0.4, "auroc": None, "wall_s": 1.0, "epochs": epochs,
                "settings": settings, **extra}  # fmt: skip

    records = [
        rec(0, 112, 200, subset=300),
        rec(1, 89, 100, subset=300),
        rec(2, 117, 200, subset=300),
    ]
    protocol = next(ln for ln in tables.render(records).splitlines() if ln.startswith("Protocol"))
    assert (
        "at most 100 epochs (runs that used the whole cap with their best epoch within its last "
        "5 epochs, still improving, were run again with a larger cap, below: brits on PhysioNet "
        "2012 (set-a), first 300, points, seeds 0 and 2: cap 200, ran 112 and 117 epochs), "
        "patience 5," in protocol
    )
    plain = tables.render([rec(1, 89, 100, subset=300)])
    assert "at most 100 epochs, patience 5," in plain
    assert "larger cap" not in next(ln for ln in plain.splitlines() if ln.startswith("Protocol"))


def test_docs_imputation_region_is_the_records_rendered(harness: ModuleType) -> None:
    """docs/benchmarks.md's imputation region is make_tables' rendering of the committed
    records (regenerate it with ``python benchmarks/make_tables.py``)."""
    import json

    tables = importlib.import_module("make_tables")
    records = json.loads(tables.RESULTS.read_text())
    explore = json.loads(tables.EXPLORE.read_text())
    docs = tables.DOCS.read_text()
    start, stop = docs.index(tables.BEGIN), docs.index(tables.END) + len(tables.END)
    outer = json.loads(tables.OUTER.read_text()) if tables.OUTER.is_file() else []
    gaps = json.loads(tables.GAPS.read_text()) if tables.GAPS.is_file() else None
    assert docs[start:stop].strip() == tables.render(records, explore, outer, gaps).strip()


def test_make_tables_names_the_machines_of_the_records(harness: ModuleType) -> None:
    """Records from two machines: the region names each (platform, CPU capability or 'not
    recorded') with its records' methods; records from one machine: no such note."""
    tables = importlib.import_module("make_tables")

    def rec(method: str, seed: int, platform: str, capability: str | None) -> dict[str, Any]:
        machine = {"platform": platform, "cpus": 2, "torch": "2.13", "torch_threads": 1}
        if capability is not None:
            machine["cpu_capability"] = capability
        return {
            "dataset": "beijing_air",
            "pattern": "point",
            "method": method,
            "seed": seed,
            "mae": 0.1,
            "mse": 0.1,
            "auroc": None,
            "wall_s": 1.0,
            "epochs": 3,
            "settings": {"machine": machine},
        }

    old = [rec("saits", s, "Linux-a", None) for s in (0, 1)] + [rec("linear", 0, "Linux-a", None)]
    new = [rec("gpvae", s, "Linux-b", "AVX512") for s in (0, 1, 2)]
    region = tables.render(old + new)
    assert (
        "Linux-a (CPU capability not recorded): 3 records (linear, saits); "
        "Linux-b (CPU capability AVX512): 3 records (gpvae)." in region
    )
    assert "ATEN_CPU_CAPABILITY=avx2" in region
    assert "more than one machine" not in tables.render(new)


def test_make_tables_gpvae_settings_name_the_blocks_patterns_own(harness: ModuleType) -> None:
    """The settings line shows gpvae's points settings, whichever record came last, and the
    ones that differ for the blocks pattern after them."""
    tables = importlib.import_module("make_tables")

    def rec(pattern: str, mask: dict[str, Any]) -> dict[str, Any]:
        resolved = {"latent_dim": 16, "mask_rate": 0.2, **mask}
        return {
            "dataset": "beijing_air",
            "pattern": pattern,
            "method": "gpvae",
            "seed": 0,
            "mae": 0.1,
            "mse": 0.1,
            "auroc": None,
            "wall_s": 1.0,
            "epochs": 3,
            "settings": {"epochs": 100, "patience": 5, "resolved": resolved},
        }

    point = rec("point", {"mask_pattern": "points"})
    block = rec("block", {"mask_pattern": "blocks", "block_lengths": [5, 24]})
    want = (
        'settings {"latent_dim": 16, "mask_rate": 0.2, "mask_pattern": "points"} '
        '({"mask_pattern": "blocks", "block_lengths": [5, 24]} for the blocks pattern);'
    )
    for records in ([point, block], [block, point]):
        assert want in tables.render(records)
    assert "for the blocks pattern" not in tables.render([point])


def test_records_name_the_kernel_precision(harness: ModuleType, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from gpvae import settings

    protocol = importlib.import_module("_protocol")
    for on in (True, False):
        monkeypatch.setattr(settings, "FUSED_SOA_FLOAT32", on)
        assert protocol.machine_info()["float32_kernel"] is on


def test_smoke_run_trains_the_given_config(
    harness: ModuleType, prep: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--smoke --config`` smoke-tests that configuration: its settings replace those of
    the small SMOKE_GPVAE (they were dropped, the smoke run trained SMOKE_GPVAE as it is)."""
    trained: list[dict[str, Any]] = []

    class Stop(Exception):
        pass

    def spy_fit(self: Any, task: Any) -> None:
        trained.append(dict(self.config))
        raise Stop

    monkeypatch.setattr(harness.GPVAEImputer, "fit", spy_fit)
    results = importlib.import_module("_protocol").ResultsFile(tmp_path / "r.json")
    config = {"latent_dim": 3, "likelihood": "student_t"}
    for given in (config, None):
        with pytest.raises(Stop):
            harness.run("physionet2012", "gpvae", 0, results, patterns=["point"],
                        downstream=False, smoke=True, prep=prep, config=given)  # fmt: skip
    assert trained == [{**harness.SMOKE_GPVAE, **config}, harness.SMOKE_GPVAE]
