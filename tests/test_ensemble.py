"""GPVAEEnsemble: members from consecutive seeds, and the mixture forecast of their draws."""

from __future__ import annotations

import inspect
import json
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpvae import GPVAE, GPVAEEnsemble
from gpvae.app.cli import main
from gpvae.errors import GPVAEError, ModelFileError, NotFittedError
from gpvae.estimator.backtest import backtest

CONFIG = dict(latent_dim=2, epochs=3, window=24, batch_size=4, progress=False)


def _series(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(60)[:, None]
    return [np.sin(t / 5.0 + k) + 0.05 * t + 0.1 * rng.normal(size=(60, 2)) for k in range(3)]


@pytest.fixture(scope="module")
def fitted() -> GPVAEEnsemble:
    return GPVAEEnsemble(2, seed=4, **CONFIG).fit(_series())


def test_members_are_the_configuration_fitted_from_consecutive_seeds(
    fitted: GPVAEEnsemble,
) -> None:
    assert [m.seed for m in fitted.members_] == [4, 5]
    alone = GPVAE(seed=5, **CONFIG).fit(_series())
    a = alone.forecast(_series(), horizon=4, num_samples=6).mean
    b = fitted.members_[1].forecast(_series(), horizon=4, num_samples=6).mean
    np.testing.assert_array_equal(a, b)
    assert fitted.get_config()["members"] == 2
    assert fitted.get_config()["seed"] == 4
    assert fitted.history_ == fitted.members_[0].history_
    assert len(fitted.histories_) == 2


def test_the_forecast_pools_the_members_draws(fitted: GPVAEEnsemble) -> None:
    X = _series()
    fc = fitted.forecast(X, horizon=5, num_samples=7, return_samples=True)
    # 7 paths shared out 4 + 3; each member draws as it would alone
    parts = [
        m.forecast(X, horizon=5, num_samples=s, return_samples=True)
        for m, s in zip(fitted.members_, (4, 3))
    ]
    np.testing.assert_array_equal(fc.samples, np.concatenate([p.samples for p in parts]))
    np.testing.assert_allclose(fc.mean, (parts[0].mean + parts[1].mean) / 2)
    # the interval ends at the predictive positions p (S + 1) of the pooled draws, as a
    # single model's ("weibull" in numpy's terms; clamped to the ends, as 0.05 * 8 < 1)
    lo, hi = np.quantile(fc.samples, [0.05, 0.95], axis=0, method="weibull")
    np.testing.assert_allclose(fc.lower, lo)
    np.testing.assert_allclose(fc.upper, hi)
    np.testing.assert_array_equal(fc.lower, fc.samples.min(axis=0))
    np.testing.assert_array_equal(fc.upper, fc.samples.max(axis=0))
    np.testing.assert_array_equal(fc.times, parts[0].times)
    assert fitted.forecast(X, horizon=5, num_samples=7).samples is None


def test_a_data_frame_in_gives_the_mixture_in_its_frame(fitted: GPVAEEnsemble) -> None:
    frame = pd.DataFrame(
        _series()[0], columns=["a", "b"], index=pd.date_range("2020-01-01", periods=60)
    )
    model = GPVAEEnsemble(2, **CONFIG).fit(frame)
    fc = model.forecast(frame, horizon=3, num_samples=4)
    out = fc.to_frame()
    np.testing.assert_allclose(out[["a", "b"]].to_numpy(), fc.mean[0])
    np.testing.assert_allclose(out[["a_lower", "b_lower"]].to_numpy(), fc.lower[0])
    np.testing.assert_allclose(out[["a_upper", "b_upper"]].to_numpy(), fc.upper[0])
    assert out.index[0] == pd.Timestamp("2020-03-01")


def test_save_and_load_give_the_same_forecasts(fitted: GPVAEEnsemble, tmp_path: Path) -> None:
    fitted.save(tmp_path / "ens")
    back = GPVAEEnsemble.load(tmp_path / "ens")
    assert [m.seed for m in back.members_] == [4, 5]
    a = fitted.forecast(_series(), horizon=4, num_samples=6)
    b = back.forecast(_series(), horizon=4, num_samples=6)
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-6, atol=1e-6)
    (tmp_path / "bad").mkdir()
    with pytest.raises(ModelFileError, match=r"ensemble\.json"):
        GPVAEEnsemble.load(tmp_path / "bad")
    # GPVAE.load said only that config.json was missing
    with pytest.raises(ModelFileError, match=r"^path: .*an ensemble's.*GPVAEEnsemble\.load"):
        GPVAE.load(tmp_path / "ens")


def test_the_ensemble_says_whether_it_is_fitted(fitted: GPVAEEnsemble) -> None:
    fresh = GPVAEEnsemble(3, seed=7, **CONFIG)
    assert not fresh.is_fitted
    assert fitted.is_fitted
    assert repr(fresh) == (
        "GPVAEEnsemble(members=3, seed=7, latent_dim=2, kernel='matern32', "
        "posterior='structured', likelihood='gaussian'; not fitted)"
    )
    assert repr(fitted).endswith("; fitted)")


def test_a_model_saved_over_another_kind_replaces_it(fitted: GPVAEEnsemble, tmp_path: Path) -> None:
    """A single model saved into a folder that held an ensemble (and the reverse) is what
    the folder then holds: the old ensemble.json and members were left behind, so the CLI
    loaded the old ensemble for forecasts and refused the new model for imputation."""
    folder = tmp_path / "m"
    single = GPVAE(seed=9, **{**CONFIG, "latent_dim": 3}).fit(_series())
    fitted.save(folder)
    single.save(folder)
    assert not (folder / "ensemble.json").exists()
    assert not list(folder.glob("member_*"))
    assert GPVAE.load(folder).latent_dim == 3
    with pytest.raises(ModelFileError, match=r"ensemble\.json"):
        GPVAEEnsemble.load(folder)
    GPVAEEnsemble(3, seed=1, **CONFIG).fit(_series()).save(folder)
    fitted.save(folder)  # two members over three
    assert sorted(p.name for p in folder.glob("member_*")) == ["member_0", "member_1"]
    assert not (folder / "config.json").exists()
    assert [m.seed for m in GPVAEEnsemble.load(folder).members_] == [4, 5]


def test_an_ensemble_never_removes_files_gpvae_did_not_write(
    fitted: GPVAEEnsemble, tmp_path: Path
) -> None:
    """save removed any config.json / model.safetensors of its folder (an experiment's own
    settings file) as if they were a single model saved there before."""
    for name in ("config.json", "model.safetensors"):
        folder = tmp_path / name.split(".")[0]
        folder.mkdir()
        (folder / name).write_text('{"experiment": "weather-2026"}')
        with pytest.raises(GPVAEError, match=rf"^path: .*{name}.*not written by gpvae"):
            fitted.save(folder)
        assert (folder / name).read_text() == '{"experiment": "weather-2026"}'
        assert sorted(p.name for p in folder.iterdir()) == [name]  # nothing written
    folder = tmp_path / "gpvae"  # a model's config.json without its weights is still gpvae's
    GPVAE(seed=9, **CONFIG).fit(_series()).save(folder)
    (folder / "model.safetensors").unlink()
    fitted.save(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["ensemble.json", "member_0", "member_1"]


def test_a_single_model_never_replaces_files_gpvae_did_not_write(
    fitted: GPVAEEnsemble, tmp_path: Path
) -> None:
    """GPVAE.save overwrote a config.json of the user's, and removed an ensemble.json (with
    any member_* folders) that was not gpvae's."""
    single = fitted.members_[0]
    for name in ("config.json", "model.safetensors", "ensemble.json"):
        folder = tmp_path / name.split(".")[0]
        folder.mkdir()
        (folder / name).write_text('{"experiment": "weather-2026"}')
        with pytest.raises(GPVAEError, match=rf"^path: expected a folder for the model .*{name}"):
            single.save(folder)
        assert sorted(p.name for p in folder.iterdir()) == [name]  # nothing written
    folder = tmp_path / "ours"  # gpvae's own ensemble and model files are replaced
    fitted.save(folder)
    single.save(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    single.save(folder)  # and its own model again


def test_backtest_refits_every_member(fitted: GPVAEEnsemble) -> None:
    res = GPVAEEnsemble(2, **CONFIG).backtest(
        _series(), horizon=4, num_origins=2, refit="each", num_samples=6
    )
    assert res.mean.shape == (3, 2, 4, 2)
    assert np.isfinite(res.scores["crps"]).all()
    assert len(res.epochs) == 2  # one entry per refit (the first member's epochs)


def test_bad_arguments_name_themselves(fitted: GPVAEEnsemble) -> None:
    with pytest.raises(GPVAEError, match="members"):
        GPVAEEnsemble(0, **CONFIG)
    with pytest.raises(GPVAEError, match="latent_dim"):
        GPVAEEnsemble(2, latent_dim=0)
    # the members' seeds are seed .. seed + members - 1: member 1's overflowed only after
    # member 0 was fitted
    with pytest.raises(GPVAEError, match=r"^seed: expected an integer in \[0, 2\*\*63 - 3\]"):
        GPVAEEnsemble(3, seed=2**63 - 3 + 1, **CONFIG)
    assert GPVAEEnsemble(3, seed=2**63 - 3, **CONFIG)._member(2).seed == 2**63 - 1
    with pytest.raises(GPVAEError, match="num_samples"):
        fitted.forecast(_series(), horizon=2, num_samples=1)
    with pytest.raises(NotFittedError, match="forecast"):
        GPVAEEnsemble(2, **CONFIG).forecast(_series(), horizon=2)


def test_a_failed_refit_keeps_the_fitted_members(fitted: GPVAEEnsemble) -> None:
    before = list(fitted.members_)
    with pytest.raises(GPVAEError):
        fitted.fit("not a data set")
    assert fitted.members_ == before


def test_cli_fit_members_then_forecast_and_backtest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t = pd.date_range("2020-01-01", periods=60, freq="D")
    frame = pd.DataFrame(_series()[0], columns=["a", "b"])
    frame.insert(0, "day", t.strftime("%Y-%m-%d"))
    data = tmp_path / "d.csv"
    frame.to_csv(data, index=False)
    model = tmp_path / "model"
    args = ["fit", str(data), "--time-col", "day", "-o", str(model), "--epochs", "2"]
    args += ["--latent-dim", "2", "--hidden", "16", "--quiet", "--members", "2", "--seed", "3"]
    assert main(args) == 0, capsys.readouterr()
    assert json.loads((model / "model" / "ensemble.json").read_text()) == {"members": 2}
    back = GPVAEEnsemble.load(model / "model")
    assert [m.seed for m in back.members_] == [3, 4]
    # each member checkpointed into its own folder
    assert (model / "checkpoints" / "member_1").is_dir()
    out = tmp_path / "fc.csv"
    fargs = ["forecast", str(model), str(data), "--horizon", "4", "-o", str(out)]
    assert main(fargs) == 0, capsys.readouterr()
    fc = pd.read_csv(out)
    direct = back.forecast(frame.set_index(pd.DatetimeIndex(t))[["a", "b"]], horizon=4)
    assert len(fc) == 4
    np.testing.assert_allclose(fc[["a", "b"]].to_numpy(), direct.mean[0], rtol=1e-5, atol=1e-6)
    bargs = ["backtest", str(model), str(data), "--horizon", "4", "--origins", "2"]
    bargs += ["-o", str(tmp_path / "bt.json")]
    assert main(bargs) == 0, capsys.readouterr()
    assert len(json.loads((tmp_path / "bt.json").read_text())["epochs"]) == 1
    capsys.readouterr()
    iargs = ["impute", str(model), str(data), "-o", str(tmp_path / "imp.csv")]
    assert main(iargs) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "MODEL_DIR: expected a single model, found an ensemble" in err[0]


@pytest.mark.parametrize(
    ("model_flags", "flags"),
    [
        (["--members", "2"], ["--causal-scores"]),
        (["--members", "2"], ["--spread-baseline", "--smooth", "3"]),
        (["--difference"], ["--smooth", "3"]),
        (["--members", "2"], ["--feature-scale", "tail"]),
        (["--difference"], ["--combine", "max"]),
        (["--members", "2"], ["--novelty", "cap"]),
        (["--difference"], ["--no-spread-baseline"]),
    ],
)
def test_cli_fit_of_a_forecaster_refuses_the_anomaly_threshold_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], model_flags: list[str], flags: list[str]
) -> None:
    """An ensemble or a model of increments has no anomaly threshold: the flags that shape
    it are refused by name before any data is read, and nothing is written."""
    model = tmp_path / "model"
    args = ["fit", str(tmp_path / "absent.csv"), "--time-col", "day", "-o", str(model)]
    assert main([*args, "--quiet", *model_flags, *flags]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].split(": ")[1] == flags[0], err
    assert "forecasts and backtests only" in err[0]
    assert not model.exists()


def test_the_best_member_has_the_lowest_validation_score(fitted: GPVAEEnsemble) -> None:
    best = [min(h["val_score"] for h in m.history_) for m in fitted.members_]
    assert best[0] != best[1]
    assert fitted.best_member() is fitted.members_[int(np.argmin(best))]
    three = GPVAEEnsemble(3, **CONFIG)
    with pytest.raises(NotFittedError, match="best_member"):
        three.best_member()
    three.members_ = [GPVAE(seed=k, **CONFIG) for k in range(3)]
    histories = ([0.5, 0.2, 0.3], [0.4, np.nan, 0.25], [0.2, 0.6])  # the last and first tie
    for m, h in zip(three.members_, histories):
        m.history_ = [{"val_score": v} for v in h]
    assert three.best_member() is three.members_[0]
    three.members_[0].history_[1]["val_score"] = 0.21
    assert three.best_member() is three.members_[2]
    for m in three.members_[1:]:  # no finite score: the worst
        m.history_ = [{"val_score": np.nan}]
    assert three.best_member() is three.members_[0]


def test_the_members_warnings_are_said_once(fitted: GPVAEEnsemble) -> None:
    """Every member's forecast warns that its intervals are not calibrated: the ensemble's
    forecast says it once, at the user's call."""
    with pytest.warns(UserWarning, match=r"^forecast_horizon: ") as caught:
        fitted.forecast(_series(), horizon=2, num_samples=40)
    said = [w for w in caught if str(w.message).startswith("forecast_horizon: ")]
    assert len(said) == 1
    assert said[0].filename == __file__


def test_repeated_forecasts_warn_once_under_the_default_filters(fitted: GPVAEEnsemble) -> None:
    """The forecast collected its members' warnings in catch_warnings + simplefilter
    ('always'), which resets every once-per-location registry: the same warning came
    again at every call (and at every plain GPVAE call after it)."""
    X = _series()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):
            fitted.forecast(X, horizon=2, num_samples=40)
            fitted.members_[0].forecast(X, horizon=2, num_samples=40)
    said = [(w.filename, w.lineno) for w in caught if "forecast_horizon: " in str(w.message)]
    assert len(said) == 2  # once at each line
    assert {f for f, _ in said} == {__file__}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(2):
            GPVAE(**{**CONFIG, "val_fraction": 0.0}).backtest(
                X, horizon=4, num_origins=3, refit="each", num_samples=20
            )
    texts = [str(w.message).split(":")[0] for w in caught]
    assert sorted(texts) == ["calibrate", "forecast_horizon"]  # every refit's, once
    assert {w.filename for w in caught} == {__file__}


def test_the_members_fit_warnings_are_said_once_at_the_callers_line() -> None:
    """Every member's fit warned that forecast_blend has no forecast_horizon: the warning
    came once per member, pointing into ensemble.py; it comes once, at the user's line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        GPVAEEnsemble(3, **CONFIG, forecast_blend=True).fit(_series())
    said = [w for w in caught if str(w.message).startswith("forecast_blend: ")]
    assert len(said) == 1
    assert said[0].filename == __file__


def test_the_backtest_function_points_its_warnings_at_the_callers_line() -> None:
    """gpvae.estimator.backtest.backtest(estimator, X) said its collected warnings one frame
    above its caller (sys:1 from a script), as if GPVAE.backtest stood between them; called
    directly or through either estimator's method, they point at the user's line."""
    X = _series()
    X[0][:, 1] = 1.0  # series 0's feature 1 has no MASE scale
    single = GPVAE(**{**CONFIG, "val_fraction": 0.0})
    runs = {"function": partial(backtest, single), "method": single.backtest}
    runs["ensemble"] = GPVAEEnsemble(2, **{**CONFIG, "val_fraction": 0.0}).backtest
    for way, run in runs.items():  # partial adds no Python frame
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
            run(X, horizon=4, num_origins=2, num_samples=20)
        texts = sorted(str(w.message).split(":")[0] for w in caught)
        assert texts == ["calibrate", "forecast_horizon", "season"], way
        assert {(w.filename, w.lineno) for w in caught} == {(__file__, line)}, way


def test_backtest_refuses_too_few_draws_per_member_before_any_fit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_fit(self: GPVAEEnsemble, *args: object, **kwargs: object) -> GPVAEEnsemble:
        raise AssertionError("fitted before checking the arguments")

    monkeypatch.setattr(GPVAEEnsemble, "fit", no_fit)
    with pytest.raises(GPVAEError, match=r"^num_samples: expected at least two draws per member"):
        GPVAEEnsemble(2, **CONFIG).backtest(_series(), horizon=4, num_origins=2, num_samples=3)


def test_the_forecast_docstring_asks_for_the_draws_it_needs(fitted: GPVAEEnsemble) -> None:
    """The docstring said "at least one each"; the forecast refuses fewer than two per member."""
    doc = " ".join((GPVAEEnsemble.forecast.__doc__ or "").split())
    assert "at least two each" in doc
    with pytest.raises(GPVAEError, match=r"^num_samples: expected at least two draws per member"):
        fitted.forecast(_series(), horizon=2, num_samples=3)


def test_an_interrupted_ensemble_says_what_it_keeps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit R #4: Ctrl-C while a member trained said the member's note, "the estimator is
    fitted with the best weights so far", though the ensemble kept none of it (members_
    empty, forecast NotFittedError). It says what the ensemble keeps."""
    from typing import Any

    from gpvae.training import FitSession

    end = FitSession.on_epoch_end
    calls = {"n": 0}

    def interrupt(self: FitSession, state: Any, optimizer: Any) -> None:
        end(self, state, optimizer)
        calls["n"] += 1
        if calls["n"] == 3:  # the second member's first epoch (2 epochs each)
            raise KeyboardInterrupt

    monkeypatch.setattr(FitSession, "on_epoch_end", interrupt)
    ens = GPVAEEnsemble(2, latent_dim=2, hidden=(8,), epochs=2, progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(KeyboardInterrupt):
            ens.fit(_series())
    said = [str(w.message) for w in caught if "interrupted" in str(w.message)]
    assert said == [
        "fit: interrupted (KeyboardInterrupt) while member 2 of 2 trained; the ensemble keeps "
        "nothing (not fitted): the members are replaced only when all the new ones are fitted"
    ]
    assert not ens.is_fitted
