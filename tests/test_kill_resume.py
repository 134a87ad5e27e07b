"""Crash-safe training: fits killed with SIGKILL at random moments resume and finish.

A subprocess runs ``GPVAE(..., checkpoint_dir=...).fit(..., resume=True)`` (and, separately,
``gpvae fit ... --resume``); it is killed with SIGKILL ``KILLS`` times at random moments of
its training and restarted each time. The moments are found from the checkpoints, not from
a clock, so that they come while the fit runs on a machine of any speed: each run is killed
at a random time within about an epoch (by the epoch times the checkpoint records) after its
checkpoint first records a random number of epochs, more than the last run's kill left and
at most ``EPOCHS - MARGIN``. After every kill, every checkpoint present must load (none is
ever corrupt) and the number of finished epochs it records never goes down; the last run then
finishes with a loadable model whose outputs are finite and whose weights and history equal
an uninterrupted fit's, bit for bit. ``pytest -s`` prints the figures (kills, the epochs
recorded at each kill, times).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from _kill_resume_fit import OPTIONS, data, frame
from gpvae import GPVAE
from gpvae.io import load_checkpoint, read_model
from gpvae.training import CHECKPOINT_FILE

SCRIPT = Path(__file__).with_name("_kill_resume_fit.py")
KILLS = 5
EPOCHS = 40
MARGIN = 10  # epochs left after the latest checkpoint a kill waits for
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _checkpoints(directory: Path) -> int | None:
    """Load every checkpoint in ``directory``; the epochs recorded (None: none yet)."""
    if not directory.is_dir():
        return None
    epoch = None
    for path in directory.iterdir():
        if path.name != CHECKPOINT_FILE:
            assert path.name.startswith(f".{CHECKPOINT_FILE}."), path  # only our temp files
            continue
        tensors, meta = load_checkpoint(path)  # raises on a corrupt file
        state = meta["train_state"]
        epoch = int(state["epoch"])
        assert len(state["history"]) == epoch
        assert all(bool(torch.isfinite(t).all()) for k, t in tensors.items() if "/" in k
                   and t.is_floating_point() and k.startswith(("model/", "best/")))  # fmt: skip
    return epoch


def _temps(directory: Path) -> int:
    return len(list(directory.glob(f".{CHECKPOINT_FILE}.*.tmp"))) if directory.is_dir() else 0


def _progress(path: Path, seen: tuple[int, int] | None) -> tuple[int, float, Any] | None:
    """The epochs and the median epoch's seconds (a run's first epoch is slower) that the
    checkpoint at ``path`` records, and the file's identity (inode, modification time),
    when that is not ``seen`` (None: not written yet, or not again)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    if (info.st_ino, info.st_mtime_ns) == seen:
        return None
    _, meta = load_checkpoint(path)  # written to a temporary file and renamed: whole
    state = meta["train_state"]
    seconds = float(np.median([h["seconds"] for h in state["history"]]))
    return int(state["epoch"]), seconds, (info.st_ino, info.st_mtime_ns)


def _kill_loop(
    start: Any, ckpt: Path, rng: random.Random, wait_ready: bool
) -> list[dict[str, Any]]:
    """Start; once the checkpoint records a random number of epochs (at most ``EPOCHS -
    MARGIN``, and at least one more than the last kill left), wait a random part of about
    an epoch (up to 1.5 times the median epoch's seconds: into the next epoch or its
    checkpoint's write), SIGKILL, check the checkpoints; one record per kill."""
    records: list[dict[str, Any]] = []
    last = -1
    targets = sorted(rng.sample(range(1, EPOCHS - MARGIN + 1), KILLS))
    for target in targets:
        goal = max(target, last + 1)  # a new checkpoint, even after a kill past the target
        proc = start()
        t0 = time.perf_counter()
        if wait_ready:
            assert proc.stdout.readline().strip() == "ready"
        seen, epochs, seconds = None, -1, 0.0
        while epochs < goal:
            assert proc.poll() is None, f"the fit ended before its checkpoint recorded {goal}"
            assert time.perf_counter() - t0 < 600, f"no checkpoint of {goal} epochs in 600 s"
            time.sleep(0.01)
            found = _progress(ckpt / CHECKPOINT_FILE, seen)
            if found is not None:
                epochs, seconds, seen = found
        time.sleep(rng.uniform(0.0, 1.5 * seconds))
        finished = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        alive = time.perf_counter() - t0
        epoch = _checkpoints(ckpt)
        current = -1 if epoch is None else epoch
        assert current >= last, (current, last)  # progress is never lost
        last = current
        records.append({"after_s": round(alive, 2), "epochs": epoch, "temps": _temps(ckpt),
                        "waited_for": goal, "finished_before_kill": finished})  # fmt: skip
        if proc.stdout is not None:
            proc.stdout.close()
    return records


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _history(h: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "seconds"} for e in h]


@pytest.mark.slow
def test_estimator_fit_survives_sigkill(tmp_path: Path) -> None:
    rng = random.Random(20240917)
    ckpt, model = tmp_path / "ckpt", tmp_path / "model"
    cmd = [sys.executable, str(SCRIPT), "fit", str(ckpt), str(model), str(EPOCHS)]

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=ENV)

    t0 = time.perf_counter()
    records = _kill_loop(start, ckpt, rng, wait_ready=True)
    final = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    total = time.perf_counter() - t0
    assert final.returncode == 0, final.stderr
    assert final.stdout.strip().splitlines()[-1] == f"done {EPOCHS}"
    assert _checkpoints(ckpt) == EPOCHS
    assert _temps(ckpt) == 0  # a finished run leaves no temporary files behind

    est = GPVAE.load(model)
    X, t = data()
    res = est.impute(X, t, num_samples=10)
    assert np.isfinite(res.mean).all()
    assert np.isfinite(res.upper).all()
    obs = ~np.isnan(X)
    assert res.mean[obs].tobytes() == X[obs].tobytes()
    assert np.isfinite(est.forecast(X, t, horizon=3, num_samples=10).mean).all()
    ref = GPVAE(**OPTIONS, epochs=EPOCHS).fit(X, t)  # never interrupted
    _same_state(est.model_.state_dict(), ref.model_.state_dict())
    assert _history(est.history_) == _history(ref.history_)
    print(f"\n[kill/resume estimator] {len(records)} SIGKILLs, epochs of {EPOCHS} recorded at "
          f"each kill: {[r['epochs'] for r in records]} (waited for "
          f"{[r['waited_for'] for r in records]}); kills after (s, from process start): "
          f"{[r['after_s'] for r in records]}; temp files left by kills: "
          f"{[r['temps'] for r in records]}; total {total:.1f} s; final weights == "
          "uninterrupted fit's")  # fmt: skip
    assert sum(not r["finished_before_kill"] for r in records) == KILLS


@pytest.mark.slow
def test_cli_fit_resume_survives_sigkill(tmp_path: Path) -> None:
    rng = random.Random(77)
    csv = tmp_path / "data.csv"
    frame().to_csv(csv, index=False)
    out = tmp_path / "model"
    ckpt = out / "checkpoints"
    options = ["--time-col", "t", "--id-col", "id", "--epochs", str(EPOCHS), "--latent-dim",
               "2", "--hidden", "32", "--batch-size", "8", "--patience", "0", "--seed", "0",
               "--quiet"]  # fmt: skip
    cmd = [sys.executable, "-m", "gpvae", "fit", str(csv), "-o", str(out), *options,
           "--resume"]  # fmt: skip

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, env=ENV)  # fmt: skip

    t0 = time.perf_counter()
    records = _kill_loop(start, ckpt, rng, wait_ready=False)
    final = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    total = time.perf_counter() - t0
    assert final.returncode == 0, final.stderr
    assert f"after {EPOCHS} epochs" in final.stdout
    assert _checkpoints(ckpt) == EPOCHS
    assert _temps(ckpt) == 0

    imputed = tmp_path / "imputed.csv"
    proc = subprocess.run([sys.executable, "-m", "gpvae", "impute", str(out), str(csv), "-o",
                           str(imputed), "--num-samples", "10"], capture_output=True, text=True,
                          env=ENV, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    table = json.loads((out / "cli.json").read_text())
    import pandas as pd

    result, source = pd.read_csv(imputed), pd.read_csv(csv)
    for f in table["features"]:
        for part in ("", "_lower", "_upper"):
            assert np.isfinite(result[f + part].to_numpy()).all()
        obs = source[f].notna().to_numpy()
        assert result[f].to_numpy()[obs].tobytes() == source[f].to_numpy()[obs].tobytes()

    ref_out = tmp_path / "reference"  # the same fit, never interrupted
    ref_cmd = [sys.executable, "-m", "gpvae", "fit", str(csv), "-o", str(ref_out), *options]
    ref = subprocess.run(ref_cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert ref.returncode == 0, ref.stderr
    _same_state(read_model(out / "model").state_dict, read_model(ref_out / "model").state_dict)
    assert json.loads((ref_out / "cli.json").read_text()) == table
    print(f"\n[kill/resume cli] {len(records)} SIGKILLs of 'gpvae fit --resume', epochs of "
          f"{EPOCHS} recorded at each kill: {[r['epochs'] for r in records]} (waited for "
          f"{[r['waited_for'] for r in records]}); kills after (s, "
          f"from process start): {[r['after_s'] for r in records]}; temp files left by kills: "
          f"{[r['temps'] for r in records]}; total {total:.1f} s; final weights and cli.json == "
          "uninterrupted fit's")  # fmt: skip
    assert sum(not r["finished_before_kill"] for r in records) == KILLS


def test_resume_removes_stale_temporary_checkpoints(tmp_path: Path) -> None:
    """A temporary file left by a run killed mid-write is deleted by the next fit; the
    checkpoint itself is kept and resumed from."""
    X, t = data(n=6, T=8)
    options = {**OPTIONS, "hidden": (8,), "epochs": 2, "checkpoint_dir": tmp_path}
    GPVAE(**options).fit(X, t, resume=True)
    stale = tmp_path / f".{CHECKPOINT_FILE}.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / "notes.txt"
    other.write_text("not ours")
    est = GPVAE(**{**options, "epochs": 3}).fit(X, t, resume=True)
    assert not stale.exists()
    assert other.exists()
    assert len(est.history_) == 3
    _, meta = load_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert meta["train_state"]["epoch"] == 3


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_saved_files_get_the_usual_permissions(tmp_path: Path) -> None:
    """Checkpoints and models are written like any other file (0666 minus the umask), not
    0600 as ``tempfile.mkstemp`` would make them."""
    X, t = data(n=4, T=6)
    old = os.umask(0o022)
    try:
        est = GPVAE(**{**OPTIONS, "hidden": (8,)}, epochs=1, checkpoint_dir=tmp_path / "c")
        est.fit(X, t)
        est.save(tmp_path / "m")
    finally:
        os.umask(old)
    files = [tmp_path / "c" / CHECKPOINT_FILE, *sorted((tmp_path / "m").iterdir())]
    assert len(files) == 3
    for path in files:
        assert path.stat().st_mode & 0o777 == 0o644, path


def test_an_interrupted_fit_keeps_its_best_epoch_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audit A3 #6: Ctrl-C during fit threw away every epoch trained (is_fitted False,
    history_ empty) though the loop held the best weights; the interrupt still goes on."""
    from gpvae.training import FitSession

    X, t = data(n=6, T=8)
    end = FitSession.on_epoch_end
    kept: list[dict[str, torch.Tensor]] = []

    def interrupt(self: FitSession, state: Any, optimizer: Any) -> None:
        end(self, state, optimizer)
        if state.epoch == state.best_epoch:
            kept.append({k: v.clone() for k, v in self.model.state_dict().items()})
        if state.epoch == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(FitSession, "on_epoch_end", interrupt)
    est = GPVAE(**{**OPTIONS, "hidden": (8,)}, epochs=10, checkpoint_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt), pytest.warns(
        UserWarning, match=r"^fit: interrupted \(KeyboardInterrupt\) after 3 finished epochs "
        r"\(of epochs=10\); the estimator is fitted with the best weights so far \(epoch \d, "
        r"validation MAE [\d.]+\).*not calibrated; the checkpoint in .* holds epoch 3: "
        r"resume=True goes on from it"
    ):  # fmt: skip
        est.fit(X, t)
    assert est.is_fitted
    assert [h["epoch"] for h in est.history_] == [1.0, 2.0, 3.0]
    _same_state(est._model.state_dict(), kept[-1])  # the best epoch's weights
    assert np.isfinite(est.impute(X, t).mean).all()


def test_a_fit_without_resume_warns_before_replacing_an_unfinished_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audit A3 #7: a fit without resume silently overwrote an interrupted run's
    checkpoint; a finished run's is replaced without a word, as before (audit R #3: a
    finished 2-epoch run was called unfinished by a 4-epoch fit, and resume=True advised
    where the settings had changed, which resume refuses)."""
    import warnings

    from gpvae.training import FitSession

    X, t = data(n=6, T=8)
    options = {**OPTIONS, "hidden": (8,), "checkpoint_dir": tmp_path}
    end = FitSession.on_epoch_end

    def interrupt(self: FitSession, state: Any, optimizer: Any) -> None:
        end(self, state, optimizer)
        if state.epoch == 2:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch, warnings.catch_warnings():
        patch.setattr(FitSession, "on_epoch_end", interrupt)
        warnings.simplefilter("ignore", UserWarning)  # the interrupted fit's own note
        with pytest.raises(KeyboardInterrupt):
            GPVAE(**options, epochs=4).fit(X, t)  # interrupted after 2 of 4 epochs
    unfinished = (
        r"^resume: the checkpoint in .* is of a fit that had not finished \(2 of its "
        r"4 epochs ran\)"
    )
    with pytest.warns(UserWarning, match=unfinished + r"; this fit starts afresh and replaces "
                      r"that checkpoint at its first epoch's end: interrupt it and pass "
                      r"resume=True"):  # fmt: skip
        GPVAE(**options, epochs=4).fit(X, t)
    with warnings.catch_warnings():  # finished (4 of 4 epochs): replaced without a word
        warnings.filterwarnings("error", message="resume: ")
        GPVAE(**options, epochs=6).fit(X, t)  # (more epochs than it ran: still finished)
    with monkeypatch.context() as patch, warnings.catch_warnings():
        patch.setattr(FitSession, "on_epoch_end", interrupt)
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(KeyboardInterrupt):
            GPVAE(**options, epochs=4).fit(X, t)
    with pytest.warns(UserWarning, match=unfinished + r"; this fit has other settings "
                      r"\(lr changed.*: give another checkpoint_dir to keep it"):  # fmt: skip
        GPVAE(**{**options, "lr": 2e-3}, epochs=4).fit(X, t)


def test_resume_after_a_setting_that_reshapes_the_data_names_it(tmp_path: Path) -> None:
    """Audit A3 #9: a changed window (or val_pattern, difference) said the checkpoint was
    "written for other data or by another program" (the data's fingerprint was checked
    first) instead of naming the setting."""
    from gpvae.errors import ValidationError

    X, t = data(n=6, T=8)
    options = {**OPTIONS, "hidden": (8,), "checkpoint_dir": tmp_path, "epochs": 2}
    GPVAE(**options).fit(X, t)
    with pytest.raises(ValidationError, match=r"found window changed \(window: None then 4\)"):
        GPVAE(**{**options, "window": 4, "epochs": 3}).fit(X, t, resume=True)
    with pytest.raises(ValidationError, match="found one written for other data"):
        GPVAE(**{**options, "epochs": 3}).fit(X + 1.0, t, resume=True)
