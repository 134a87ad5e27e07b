"""Distributed training: the pieces in one process, and a 2-process fit under torchrun.

In one process: the batch shares of every process together are the one-process batches;
a process's ELBO of its rows (drawing inside ``gpvae.rng.batch_rows``) equals those rows of
the whole batch's ELBO for every posterior family and backend; the scaler merged from
per-process statistics equals the scaler of all the series.

Under ``torchrun --nproc-per-node 2`` (gloo, CPU; ``_ddp_fit.py``): float64 fits whose
weights after every optimiser step of two epochs equal the one-process fit's with the same
global batch and seed; a fit whose processes hold their own series gives the same weights on
both processes and the same result when run again; a NaN loss on one process rolls every
process back alike, an error on one process stops both with that process's error, and
processes that should hold the same series but do not are refused.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gpvae.data import Scaler, to_series_set
from gpvae.data.batching import (
    batch_indices,
    local_batch_indices,
    local_num_steps,
    local_share,
    shard_bounds,
    sharded_batch_indices,
)
from gpvae.errors import ValidationError
from gpvae.estimator.assembly import ModelSpec, build_model
from gpvae.estimator.fitting import _local_stats as local_stats
from gpvae.estimator.fitting import merge_scaler
from gpvae.rng import batch_normal, batch_rows

TESTS = Path(__file__).resolve().parent
TORCHRUN = Path(sys.executable).with_name("torchrun")


def torchrun(args: list[str], *, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node 2 ARGS`` with one thread per process (a
    process that dies of a signal prints every thread's Python stack)."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore",
        "PYTHONFAULTHANDLER": "1",
    }
    cmd = [str(TORCHRUN), "--standalone", "--nproc-per-node", "2", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


needs_torchrun = pytest.mark.skipif(
    not TORCHRUN.exists() or not torch.distributed.is_gloo_available(),
    reason="torchrun with the gloo backend is not available",
)


# ------------------------------------------------------------------------ batch shares


@pytest.mark.parametrize(("n", "B", "W"), [(21, 4, 2), (10, 3, 3), (7, 7, 2), (1, 2, 2), (9, 4, 4)])
def test_shares_of_every_process_make_the_one_process_batches(n: int, B: int, W: int) -> None:
    whole = list(batch_indices(n, B, shuffle=True, seed=11))
    plans = [sharded_batch_indices(n, B, r, W, shuffle=True, seed=11) for r in range(W)]
    assert all(len(p) == len(whole) for p in plans)
    for k, batch in enumerate(whole):
        parts = [plan[k] for plan in plans]
        assert all(np.array_equal(p.whole, batch) for p in parts)
        got = np.concatenate([p.indices for p in parts])
        assert sorted(got.tolist()) == sorted(batch.tolist())  # disjoint, cover the batch
        for p in parts:
            assert np.array_equal(batch[p.rows], p.indices)


def test_batch_size_below_the_number_of_processes_is_refused() -> None:
    with pytest.raises(ValidationError, match="batch_size"):
        sharded_batch_indices(10, 2, 0, 3)
    with pytest.raises(ValidationError, match="batch_size"):
        local_share(2, 1, 3)


@pytest.mark.parametrize(("n", "W"), [(10, 3), (3, 3), (2, 4), (0, 2), (17, 1)])
def test_shard_bounds_split_the_series_in_blocks(n: int, W: int) -> None:
    blocks = [shard_bounds(n, r, W) for r in range(W)]
    covered = [i for a, b in blocks for i in range(a, b)]
    assert covered == list(range(n))  # disjoint, in order, every series
    sizes = [b - a for a, b in blocks]
    assert max(sizes) - min(sizes) <= 1


def test_own_series_batches_go_through_every_series_once() -> None:
    W, B = 3, 8
    sizes = [shard_bounds(50, r, W) for r in range(W)]
    n_local = [b - a for a, b in sizes]
    steps = max(local_num_steps(n, B, r, W) for r, n in enumerate(n_local))
    assert sum(local_share(B, r, W) for r in range(W)) == B
    for r in range(W):
        plan = local_batch_indices(n_local[r], B, r, W, steps, seed=r)
        assert len(plan) == steps
        seen = np.concatenate([p.indices for p in plan])
        assert sorted(seen.tolist()) == list(range(n_local[r]))
        assert all(len(p.indices) <= local_share(B, r, W) for p in plan)


# ------------------------------------------------------------------------ noise and ELBO


def test_batch_rows_draws_the_rows_of_the_whole_batch() -> None:
    g = torch.Generator().manual_seed(0)
    whole = torch.randn((3, 5, 4, 2), generator=g)
    after = g.get_state()
    g2 = torch.Generator().manual_seed(0)
    with batch_rows([4, 1], 5):
        part = batch_normal((3, 2, 4, 2), 1, g2, torch.float32, "cpu")
    assert torch.equal(part, whole[:, [4, 1]])
    assert torch.equal(g2.get_state(), after)  # the generator moves as for the whole batch
    g3 = torch.Generator().manual_seed(0)
    assert torch.equal(batch_normal((3, 5, 4, 2), 1, g3, torch.float32, "cpu"), whole)
    with batch_rows([0], 5), pytest.raises(ValueError, match="rows"):
        batch_normal((3, 2, 4, 2), 1, g3, torch.float32, "cpu")


def _ragged(n: int, D: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        T = int(rng.integers(5, 12))
        v = rng.normal(size=(T, D))
        v[rng.random(v.shape) < 0.3] = np.nan
        v[0, 0] = 0.5
        out.append(v)
    return out


@pytest.mark.parametrize(
    ("posterior", "backend", "likelihood", "mask"),
    [
        ("structured", "markov", "gaussian", ""),
        ("structured", "dense", "student_t", ""),
        ("banded", "auto", "gaussian", ""),
        ("diagonal", "auto", "gaussian_gp", ""),
        ("structured", "markov", "gaussian", "points"),
        ("diagonal", "auto", "gaussian", "blocks"),
    ],
)
def test_elbo_of_some_rows_is_those_rows_of_the_whole_batch(
    posterior: str, backend: str, likelihood: str, mask: str
) -> None:
    """What a process computes for its rows of a batch (padded to the batch's length, with
    the whole batch's noise and training masks) is exactly those rows of the one-process
    ELBO (per series)."""
    ss = to_series_set(_ragged(6, 3, 1))
    ss = Scaler().fit(ss).transform(ss)
    spec = ModelSpec(
        2, "matern32", posterior, backend, likelihood, "mlp", "mlp", (8,), 1.0, None,
        mask_rate=0.4 if mask else 0.0, mask_pattern=mask or "points", block_lengths=(2, 3),
    )  # fmt: skip
    torch.manual_seed(0)
    model = build_model(spec, 3).double()
    idx = np.arange(6)
    whole = model.elbo(
        ss.to_batch(idx, dtype=torch.float64), 2, generator=torch.Generator().manual_seed(4)
    )
    N = ss.max_length
    for rows in ([0, 2, 4], [5], [3, 1]):
        part = ss.to_batch(np.array(rows), dtype=torch.float64, length=N)
        with batch_rows(rows, 6):
            got = model.elbo(part, 2, generator=torch.Generator().manual_seed(4))
        for a, b in zip(got, whole):
            if a is not None:
                torch.testing.assert_close(a, b[rows], rtol=1e-12, atol=1e-12)
    assert not torch.equal(whole.elbo[0], whole.elbo[1])  # rows differ: the check can fail


# ------------------------------------------------------------------------ scaler


def test_scaler_merged_from_processes_equals_the_scaler_of_all_series() -> None:
    values = _ragged(13, 3, 2)
    values[4] = values[4] * 1e200  # the statistics survive values near the float64 range
    times = [np.cumsum(np.random.default_rng(i).choice([1.0, 2.0, 0.5], len(v))) + i
             for i, v in enumerate(values)]  # fmt: skip
    ss = to_series_set(values, times)
    want = Scaler().fit(ss)
    for W in (1, 2, 5):
        parts = [local_stats(ss.subset(np.arange(*shard_bounds(13, r, W)))) for r in range(W)]
        got = merge_scaler(parts, ss)
        assert got.time_step_ == want.time_step_  # the median, exactly
        assert got.time_origin_ == want.time_origin_
        np.testing.assert_allclose(got.mean_, want.mean_, rtol=1e-12)
        np.testing.assert_allclose(got.std_, want.std_, rtol=1e-12)
    assert not np.allclose(want.mean_, 0)


# ------------------------------------------------------------------------ under torchrun


@needs_torchrun
def test_two_processes_train_like_one(tmp_path: Path) -> None:
    sys.path.insert(0, str(TESTS))
    try:
        import _ddp_fit as cases
    finally:
        sys.path.remove(str(TESTS))
    out = tmp_path / "ddp.pt"
    res = torchrun([str(TESTS / "_ddp_fit.py"), str(out)], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    got = torch.load(out, weights_only=False)
    torch.set_num_threads(1)
    for name, posterior, backend, batch_size, options in cases.CASES:
        ref = cases.fit(posterior, backend, batch_size, None, options=options)
        assert got[name]["steps"] == ref["steps"] == cases.EPOCHS * -(-21 // batch_size)
        for key, want in ref["weights"].items():
            torch.testing.assert_close(got[name]["weights"][key], want, rtol=1e-10, atol=1e-12)
        for a, b in zip(got[name]["history"], ref["history"]):
            assert a.keys() == b.keys()
            for k in a:
                assert a[k] == pytest.approx(b[k], rel=1e-10, abs=1e-12), (name, k)
        moved = max(float((ref["weights"][k] - init).abs().max())
                    for k, init in cases.initial(posterior, backend, options).items())  # fmt: skip
        assert moved > 1e-3  # the fit changed the weights, so equality is not trivial
        if "hidden" in options:  # scored on the hidden block, summed over both processes
            assert all(
                np.isfinite(h["val_score"]) and h["val_score"] != h["loss"] for h in ref["history"]
            )
    # GPVAE.fit with X_val_target and training masks: the validation MAE of the hidden
    # entries and the interval scales are those of one process (sums over both processes)
    ref = cases.estimator_hidden(False, None)
    got_hidden = got["estimator_hidden"]
    assert got_hidden["val_score"] == pytest.approx(ref["val_score"], rel=1e-4)
    np.testing.assert_allclose(got_hidden["interval_scale"], ref["interval_scale"], rtol=1e-3)
    np.testing.assert_allclose(got_hidden["forecast_scale"], ref["forecast_scale"], rtol=1e-3)
    assert ref["val_score"] != pytest.approx(ref["loss"], rel=1e-2)  # scored on hidden entries
    assert not np.allclose(ref["interval_scale"], 1.0)  # calibrated: the check can fail
    # each process passing its own training and hidden-validation series: one score of all
    # the hidden entries, the same on both processes (each holds about half of them)
    scores = got["estimator_hidden_sharded_scores"]
    assert scores[0] == scores[1]
    assert all(np.isfinite(scores[0]))
    assert not np.allclose(got["estimator_hidden_sharded"]["interval_scale"], 1.0)
    forecast = got["estimator_hidden_sharded_forecast"]  # of both processes' series
    assert forecast[0] is not None
    assert not np.allclose(forecast[0], 1.0)
    np.testing.assert_array_equal(forecast[0], forecast[1])
    # forecast-interval calibration: each process forecasts the origins of its block (its
    # own series, or its share of them all); every process gets the one-process factors
    union = cases.forecast_factors(None)
    assert union is not None
    assert not np.allclose(union, 1.0)
    own = cases.forecast_factors(None, first=11)  # process 0's series alone differ
    assert own is not None
    assert not np.array_equal(own, union)
    for how in ("own", "all"):
        for factors in got[f"forecast_factors_{how}"]:
            np.testing.assert_array_equal(factors, union)
    assert got["sharded_ranks_agree"]
    for key, value in got["sharded"]["weights"].items():
        assert torch.equal(value, got["sharded_again"]["weights"][key])
    assert got["sharded"]["steps"] == cases.EPOCHS * 6  # ceil(11 / 2) steps per epoch
    nan = got["nan_on_one_process"]
    assert nan["bad_steps"] == 1
    assert nan["agree"]
    assert nan["lr"] == pytest.approx(0.5 * 0.05)  # the step was rolled back, lr halved
    assert got["other_series"].startswith("X: expected the same series in every process")
    assert got["threshold_other_series"].startswith(
        "X: expected the same series in every process (sharded=False)"
    )
    assert "in process 1 of 2" in got["error_on_one_process"]
    assert "ValidationError" in got["error_on_one_process"]


def test_scaler_refuses_processes_with_other_features() -> None:
    ss = to_series_set(_ragged(4, 3, 5))
    other = to_series_set([v[:, :2] for v in _ragged(4, 3, 6)])
    with pytest.raises(ValidationError, match=r"^X: expected the same features in every process"):
        merge_scaler([local_stats(ss), local_stats(other)], ss)
    empty = ss.with_values([np.where(np.arange(3) == 2, np.nan, v) for v in ss.values])
    with pytest.raises(ValidationError, match="never observed"):
        merge_scaler([local_stats(empty), local_stats(empty)], empty)


def test_a_lost_peer_is_told_from_other_runtime_errors() -> None:
    """DDP's gradient all-reduce runs inside ``backward``; when gloo loses a peer there it
    raises a plain RuntimeError (seen when a process of a torchrun job was killed), which
    must be reported as a lost peer with the advice to resume, and nothing else must be."""
    import torch.distributed as dist

    from gpvae.errors import DistributedError, NumericalError
    from gpvae.training.distributed import is_peer_failure, peer_error

    gloo = RuntimeError(
        "[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error "
        "[127.0.0.1]:32711: Connection reset by peer"
    )
    assert is_peer_failure(gloo)
    assert is_peer_failure(RuntimeError("Connection closed by peer [127.0.0.1]:5000"))
    if hasattr(dist, "DistError"):
        assert is_peer_failure(dist.DistError("timed out"))
    assert not is_peer_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_peer_failure(NumericalError("loss: not finite"))
    assert not is_peer_failure(ValueError("Connection reset by peer"))
    out = peer_error(gloo)
    assert isinstance(out, DistributedError)
    assert str(out).startswith("another process of the job stopped")
    assert "pair.cc" not in str(out)
    assert "Read error" in str(out)


def test_resume_with_another_number_of_processes_says_so(tmp_path: Path) -> None:
    """The checkpoint of a fit whose 2 processes each held their own series, resumed by one
    process: its fingerprint covers both processes' parts, so it was reported as "written
    for other data" before the documented process-count message could show."""
    from gpvae import GPVAE
    from gpvae.io import load_checkpoint, save_checkpoint
    from gpvae.training import CHECKPOINT_FILE

    X = _ragged(6, 2, 7)
    settings = {"latent_dim": 2, "hidden": (8,), "epochs": 2, "batch_size": 4, "progress": False}
    GPVAE(**settings, checkpoint_dir=tmp_path).fit(X)
    file = tmp_path / CHECKPOINT_FILE
    tensors, meta = load_checkpoint(file)
    meta.update(sharded=True, world_size=2, fingerprint="of both processes' series")
    save_checkpoint(file, tensors, meta)
    with pytest.raises(ValidationError, match=r"^resume: expected 2 processes .* found 1$"):
        GPVAE(**{**settings, "epochs": 3}, checkpoint_dir=tmp_path).fit(X, resume=True)
    meta.update(sharded=False, world_size=2)  # every process held every series: the data
    save_checkpoint(file, tensors, meta)
    with pytest.raises(ValidationError, match=r"^resume: expected a checkpoint of a fit on"):
        GPVAE(**{**settings, "epochs": 3}, checkpoint_dir=tmp_path).fit(X, resume=True)


def test_the_exit_handler_drops_an_error_raised_while_it_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """torchrun stops the other processes with SIGTERM when one is killed; the command line's
    handler raises an error, which arrived in the exit handler's sleep and was printed as
    "Exception ignored in atexit callback" with a traceback after the reported error."""
    import torch.distributed as dist

    from gpvae.errors import DistributedError
    from gpvae.training import distributed

    def stopped(seconds: float) -> None:
        raise DistributedError("the job was stopped (SIGTERM)")

    destroyed = []
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "destroy_process_group", lambda: destroyed.append(True))
    monkeypatch.setattr(distributed.time, "sleep", stopped)
    distributed._destroy()
    assert destroyed == [True]
