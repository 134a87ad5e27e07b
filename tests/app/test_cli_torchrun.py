"""The command line under ``torchrun --nproc-per-node 2`` (gloo, CPU).

- ``fit`` of a CSV file (every process reads it and takes its rows of every batch) writes a
  model whose weights and threshold are the one-process fit's (float32 round-off);
  ``impute`` of the file by two processes (process 0 gathers the rows into one file) equals
  the one-process imputation.
- ``fit`` of a folder of Parquet files (each process reads only its series) writes a model
  that loads and imputes in one process, with detect's threshold profile the one that one
  process learns from every series; ``impute`` of the folder into a folder of parts
  (one per process) equals the one-process imputation, and observed values are unchanged.
- A bad series in process 1's part ends the job with one error from process 0 naming it.
- A spatial fit (``--coord-cols``) stops on both processes before reading DATA, with one
  error naming the reason.
- A fit whose process 1 is killed (SIGKILL) mid-fit ends with a message from process 0
  naming the checkpoint; ``--resume`` then finishes it with a loadable model.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from gpvae import GPVAE, settings
from gpvae.app.cli import main
from gpvae.app.cli.columns import ColumnSpec
from gpvae.io import load_checkpoint
from gpvae.training import CHECKPOINT_FILE

TORCHRUN = Path(sys.executable).with_name("torchrun")
#: One thread per process; a process that dies of a signal prints every thread's Python stack.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "PYTHONFAULTHANDLER": "1"}
OPTIONS = ["--time-col", "t", "--id-col", "id", "--latent-dim", "2", "--hidden", "16",
           "--batch-size", "4", "--quiet"]  # fmt: skip

pytestmark = pytest.mark.skipif(
    not TORCHRUN.exists() or not torch.distributed.is_gloo_available(),
    reason="torchrun with the gloo backend is not available",
)


def _torchrun(*args: str | Path, cwd: Path) -> subprocess.Popen[str]:
    cmd = [str(TORCHRUN), "--standalone", "--nproc-per-node", "2", "-m", "gpvae", *map(str, args)]
    return subprocess.Popen(
        cmd, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _run(*args: str | Path, cwd: Path) -> tuple[int, str, str]:
    proc = _torchrun(*args, cwd=cwd)
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out, err


def _gpvae_errors(stderr: str) -> list[str]:
    """gpvae's own error lines (torchrun adds its report of the failed processes)."""
    return [ln for ln in stderr.splitlines() if ln.startswith("error")]


def _frame(n: int = 13, seed: int = 1) -> pd.DataFrame:
    """n series of 15-24 steps, two smooth features, 20% of the values missing."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        for t in range(int(rng.integers(15, 25))):
            a = np.sin(t / 3 + i) + 0.1 * rng.normal()
            b = np.cos(t / 4 + i) + 0.1 * rng.normal()
            rows.append((f"s{i:02d}", float(t), a, b))
    frame = pd.DataFrame(rows, columns=["id", "t", "a", "b"])
    for col in ("a", "b"):
        frame.loc[rng.random(len(frame)) < 0.2, col] = np.nan
    return frame


def _folder(frame: pd.DataFrame, path: Path) -> Path:
    """The frame as a folder of three Parquet files (sorted by id, small row groups)."""
    path.mkdir()
    for k, part in enumerate(np.array_split(np.arange(len(frame)), 3)):
        frame.iloc[part].to_parquet(path / f"part{k}.parquet", index=False, row_group_size=40)
    return path


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return GPVAE.load(model_dir / "model").model_.state_dict()


@pytest.mark.slow  # three launches
def test_impute_gives_a_column_one_type_whichever_process_holds_its_gaps(tmp_path: Path) -> None:
    """True/False and whole-number features with gaps in process 1's series only: process 0
    saw no gap and kept DATA's types (bool, int) for its rows while process 1 wrote floats,
    so a Parquet OUT file failed after the work (ArrowInvalid: could not convert 1.0 to
    boolean), a folder's parts had types that cannot be read together, and a CSV OUT wrote
    one column's observed TRUE cells as TRUE and as 1.0. The types are one process's."""
    frame = _frame(seed=3)
    rng = np.random.default_rng(3)
    frame["flag"] = pd.array(rng.random(len(frame)) < 0.5, dtype="boolean")
    frame["cnt"] = pd.array(rng.integers(0, 9, len(frame)), dtype="Int64")
    late = np.flatnonzero((frame["id"] == "s11").to_numpy())[:2]  # process 1's series
    frame.loc[late, ["flag", "cnt"]] = pd.NA
    frame.to_parquet(tmp_path / "data.parquet", index=False)
    assert main(["fit", str(tmp_path / "data.parquet"), "-o", str(tmp_path / "m"), *OPTIONS,
                 "--epochs", "2"]) == 0  # fmt: skip
    assert main(["impute", str(tmp_path / "m"), str(tmp_path / "data.parquet"),
                 "-o", str(tmp_path / "one.parquet")]) == 0  # fmt: skip
    one = pd.read_parquet(tmp_path / "one.parquet")
    for out in ("two.parquet", "parts"):
        code, _, err = _run("impute", "m", "data.parquet", "-o", out, cwd=tmp_path)
        assert code == 0, err
        two = pd.read_parquet(tmp_path / out)
        for col in ("flag", "cnt", "flag_lower", "cnt_upper"):
            assert two[col].dtype == one[col].dtype == np.float64, (out, col)
    text = frame.assign(flag=frame["flag"].map({True: "TRUE", False: "FALSE"}))
    text.to_csv(tmp_path / "data.csv", index=False)  # the gaps: empty cells
    code, _, err = _run("impute", "m", "data.csv", "-o", "two.csv", cwd=tmp_path)
    assert code == 0, err
    back = pd.read_csv(tmp_path / "two.csv", dtype=str, keep_default_na=False)
    seen = frame["flag"].notna().to_numpy()
    for col in ("flag", "flag_lower", "flag_upper"):
        assert back.loc[seen, col].tolist() == text.loc[seen, "flag"].tolist(), col


@pytest.mark.slow  # two launches; the step-for-step equality is tests/test_distributed.py's
def test_fit_and_impute_a_file_like_one_process(tmp_path: Path) -> None:
    frame = _frame()
    frame.to_csv(tmp_path / "data.csv", index=False)
    code, out, err = _run("fit", "data.csv", "-o", "m2", *OPTIONS, "--epochs", "3", cwd=tmp_path)
    assert code == 0, err
    assert out.count("fitted on 13 series") == 1  # process 0 reports, once
    assert "by 2 processes" in out
    one = ["fit", str(tmp_path / "data.csv"), "-o", str(tmp_path / "m1"), *OPTIONS]
    assert main([*one, "--epochs", "3"]) == 0
    w2, w1 = _weights(tmp_path / "m2"), _weights(tmp_path / "m1")
    for key, want in w1.items():
        torch.testing.assert_close(w2[key], want, rtol=1e-4, atol=1e-5)
    spec1, spec2 = ColumnSpec.load(tmp_path / "m1"), ColumnSpec.load(tmp_path / "m2")
    # cli.json's threshold is no longer computed (detect uses the profile, checked below)
    assert spec1.threshold is None
    assert spec2.threshold is None
    code, out, err = _run("impute", "m2", "data.csv", "-o", "imp2.csv", cwd=tmp_path)
    assert code == 0, err
    assert main(["impute", str(tmp_path / "m2"), str(tmp_path / "data.csv"),
                 "-o", str(tmp_path / "imp1.csv")]) == 0  # fmt: skip
    two, one_proc = pd.read_csv(tmp_path / "imp2.csv"), pd.read_csv(tmp_path / "imp1.csv")
    assert list(two.columns) == list(one_proc.columns)
    assert two[["id", "t"]].equals(one_proc[["id", "t"]])  # rows in DATA's order
    np.testing.assert_allclose(two[["a", "b", "a_lower", "b_upper"]],
                               one_proc[["a", "b", "a_lower", "b_upper"]], atol=1e-5)  # fmt: skip


def test_parquet_folder_fit_and_impute_in_parts(tmp_path: Path) -> None:
    frame = _frame(seed=2)
    _folder(frame, tmp_path / "data")
    code, out, err = _run("fit", "data", "-o", "m", *OPTIONS, "--epochs", "3", cwd=tmp_path)
    assert code == 0, err
    assert "fitted on 13 series" in out
    model = GPVAE.load(tmp_path / "m" / "model")  # loads and imputes in one process
    res = model.impute(frame, num_samples=20)
    imputed = res.to_frame()
    obs = frame[["a", "b"]].notna().to_numpy()
    assert np.array_equal(imputed[["a", "b"]].to_numpy()[obs], frame[["a", "b"]].to_numpy()[obs])
    assert imputed[["a", "b"]].notna().all().all()
    spec = ColumnSpec.load(tmp_path / "m")
    assert spec.time_step == 1.0
    assert spec.time_start == 0.0
    # detect's threshold profile: stored (a torchrun fit dropped it without a word), and
    # the one that one process learns from all the series with the same settings
    two_proc = model.anomaly_profile_
    assert two_proc is not None
    one_proc = GPVAE.load(tmp_path / "m" / "model").fit_threshold(
        frame, false_alarm_rate=two_proc.false_alarm_rate, num_samples=two_proc.num_samples,
        num_folds=two_proc.num_folds, window=two_proc.window, smooth=two_proc.smooth,
        baseline=two_proc.baseline, alarm_smooth=two_proc.alarm_smooth,
        prior_weight=two_proc.prior_weight, causal=two_proc.causal, spread=two_proc.spread,
        feature_scale=two_proc.feature_scale, combine=two_proc.combine,
        novelty="cap" if two_proc.alarm_cap is not None else "extrapolate",
        spread_quantile=two_proc.spread_quantile, rank_window=two_proc.rank_window,
    ).anomaly_profile_  # fmt: skip
    assert one_proc is not None
    assert two_proc.threshold == pytest.approx(one_proc.threshold, rel=1e-9)
    np.testing.assert_allclose(two_proc.scale, one_proc.scale, rtol=1e-9)
    assert two_proc.rank_window == settings.ANOMALY_RANK_WINDOW
    np.testing.assert_allclose(two_proc.rank_reference, one_proc.rank_reference, rtol=1e-9)
    code, out, err = _run("impute", "m", "data", "-o", "parts", cwd=tmp_path)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == [
        "part-00000.parquet",
        "part-00001.parquet",
    ]
    ids = [set(pd.read_parquet(tmp_path / "parts" / p)["id"]) for p in sorted(
        os.listdir(tmp_path / "parts"))]  # fmt: skip
    assert not ids[0] & ids[1]  # each process wrote its own series
    assert main(["impute", str(tmp_path / "m"), str(tmp_path / "data"),
                 "-o", str(tmp_path / "one.parquet")]) == 0  # fmt: skip
    two = pd.read_parquet(tmp_path / "parts").sort_values(["id", "t"]).reset_index(drop=True)
    one = pd.read_parquet(tmp_path / "one.parquet").sort_values(["id", "t"]).reset_index(drop=True)
    assert two.shape == one.shape == (len(frame), 8)
    np.testing.assert_allclose(two[["a", "b", "a_upper"]], one[["a", "b", "a_upper"]], atol=1e-5)


def test_a_bad_series_on_one_process_is_reported_once(tmp_path: Path) -> None:
    frame = _frame(seed=3)
    rows = frame.index[frame["id"] == "s12"][:2]  # the last series: process 1's part
    frame.loc[rows[1], "t"] = frame.loc[rows[0], "t"]
    _folder(frame, tmp_path / "data")
    code, _, err = _run("fit", "data", "-o", "m", *OPTIONS, "--epochs", "2", cwd=tmp_path)
    assert code != 0
    lines = _gpvae_errors(err)
    assert len(lines) == 1, err
    assert lines[0].startswith("error: DATA['t']: expected distinct times")
    assert "'s12'" in lines[0]
    assert "(in process 1 of 2)" in lines[0]
    assert not (tmp_path / "m" / "model").exists()


def test_a_spatial_fit_stops_on_every_process_with_the_reason(tmp_path: Path) -> None:
    frame = _frame(n=4, seed=4)
    frame["x"] = frame["id"].str[1:].astype(float)
    frame["y"] = 0.0
    frame.to_csv(tmp_path / "field.csv", index=False)
    code, _, err = _run("fit", "field.csv", "-o", "m", *OPTIONS, "--coord-cols", "x,y",
                        "--window", "5", cwd=tmp_path)  # fmt: skip
    assert code != 0
    lines = _gpvae_errors(err)
    assert len(lines) == 1, err  # both processes stop; process 0 reports
    assert lines[0].startswith("error: --coord-cols: expected one process: a spatial fit")
    assert "found 2 processes" in lines[0]
    assert not (tmp_path / "m").exists()


def test_predict_sites_stops_on_every_process_before_any_work(tmp_path: Path) -> None:
    """Each process predicted every new site and wrote OUT: refused, reported once, before
    MODEL_DIR or DATA is read (neither exists here)."""
    code, _, err = _run("predict-sites", "nomodel", "data.csv", "sites.csv", "-o", "out.csv",
                        cwd=tmp_path)  # fmt: skip
    assert code != 0
    lines = _gpvae_errors(err)
    assert len(lines) == 1, err
    assert lines[0].startswith("error: MODEL_DIR: expected one process for predict-sites")
    assert "found 2 processes (run it without torchrun)" in lines[0]
    assert not (tmp_path / "out.csv").exists()


def _child(parent: int, rank: int) -> int | None:
    """The pid of the process torchrun started as ``RANK=rank``."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == parent and f"RANK={rank}".encode() in (proc / "environ").read_bytes().split(
                b"\0"
            ):
                return int(proc.name)
        except (OSError, IndexError, ValueError):
            continue
    return None


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_kill_of_one_process_then_resume(tmp_path: Path) -> None:
    _frame(seed=4).to_csv(tmp_path / "data.csv", index=False)
    args = ("fit", "data.csv", "-o", "m", *OPTIONS, "--epochs", "40", "--patience", "0",
            "--resume")  # fmt: skip
    proc = _torchrun(*args, cwd=tmp_path)
    ckpt = tmp_path / "m" / "checkpoints" / CHECKPOINT_FILE
    deadline = time.monotonic() + 300
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    victim = _child(proc.pid, 1)
    assert victim is not None, "process 1 not found"
    os.kill(victim, signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    lines = _gpvae_errors(err)
    assert len(lines) == 1, err
    assert "another process of the job stopped" in lines[0] or "SIGTERM" in lines[0]
    assert "--resume" in lines[0]
    _, meta = load_checkpoint(ckpt)  # the last good checkpoint is whole
    stopped_at = int(meta["train_state"]["epoch"])
    assert 1 <= stopped_at < 40
    code, out, err = _run(*args, cwd=tmp_path)
    assert code == 0, err
    assert "after 40 epochs" in out
    _, meta = load_checkpoint(ckpt)
    assert meta["train_state"]["epoch"] == 40
    model = GPVAE.load(tmp_path / "m" / "model")
    frame = pd.read_csv(tmp_path / "data.csv")
    assert model.impute(frame, num_samples=10).to_frame()[["a", "b"]].notna().all().all()


def test_data_errors_are_reported_once_and_a_wide_folder_is_imputed(tmp_path: Path) -> None:
    """An error reading DATA was printed by every process; a model fitted on a wide file
    imputing a folder of Parquet files was refused with "expected --id-col", an option
    impute does not have (one process imputed it): process 0 now reads the one series."""
    wide = _frame(n=1, seed=5).drop(columns="id")
    wide.to_csv(tmp_path / "wide.csv", index=False)
    (tmp_path / "wide").mkdir()
    wide.iloc[:10].to_parquet(tmp_path / "wide" / "a.parquet", index=False)
    wide.iloc[10:].to_parquet(tmp_path / "wide" / "b.parquet", index=False)
    fit = ["fit", str(tmp_path / "wide.csv"), "-o", str(tmp_path / "m"), "--time-col", "t",
           "--latent-dim", "2", "--hidden", "8", "--epochs", "2", "--quiet"]  # fmt: skip
    assert main(fit) == 0
    code, _, err = _run("impute", "m", "missing.csv", "-o", "x.csv", cwd=tmp_path)
    assert code != 0
    lines = _gpvae_errors(err)
    assert lines == ["error: DATA: file not found: 'missing.csv'"], err
    code, _, err = _run("impute", "m", "wide", "-o", "two.csv", cwd=tmp_path)
    assert code == 0, err
    assert main(["impute", str(tmp_path / "m"), str(tmp_path / "wide"),
                 "-o", str(tmp_path / "one.csv")]) == 0  # fmt: skip
    two, one = pd.read_csv(tmp_path / "two.csv"), pd.read_csv(tmp_path / "one.csv")
    assert two.shape == one.shape == (len(wide), 7)
    np.testing.assert_allclose(two[["a", "b"]], one[["a", "b"]], atol=1e-5)


def test_sigterm_raises_only_while_the_command_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process's SIGTERM handler (torchrun stopping the job: an error saying so) stayed
    after the command ended: a SIGTERM while the interpreter exited raised in an exit
    handler, printed as "Exception ignored in atexit callback" with a traceback."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    before = signal.getsignal(signal.SIGTERM)
    seen = []
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        monkeypatch.setattr("gpvae.app.cli.cli.main", lambda **kw: seen.append(
            signal.getsignal(signal.SIGTERM)))  # fmt: skip
        assert main(["--version"]) == 0
        assert callable(seen[0])  # while the command runs: the handler that raises
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, before)
