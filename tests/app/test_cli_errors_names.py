"""The command line's errors name its own options, not the estimator's Python arguments."""

from __future__ import annotations

from gpvae.app.cli.errors import cli_message


def test_estimator_argument_names_in_a_message_become_the_options() -> None:
    names = {
        "interp_cross": "--interp-cross",
        "interp_skip": "--interp-skip",
        "kernel": "--kernel",
        "period": "--period",
        "latent_dim": "--latent-dim",
        "lengthscale": "--lengthscale",
    }
    assert (
        cli_message(
            "interp_cross: expected False without interp_skip=True, found True", "fit", names
        )
        == "--interp-cross: expected False without --interp-skip, found True"
    )
    assert (
        cli_message(
            "period: expected None for kernel='matern32' (no periodic factor), found ['7D']",
            "fit",
            names,
        )
        == "--period: expected None for --kernel 'matern32' (no periodic factor), found ['7D']"
    )
    assert (
        cli_message(
            "lengthscale: expected one number or 8 (one per latent channel, latent_dim), found 2",
            "fit",
            names,
        )
        == "--lengthscale: expected one number or 8 (one per latent channel, --latent-dim), found 2"
    )


def test_plain_words_and_longer_names_are_left_alone() -> None:
    names = {"kernel": "--kernel", "interp_skip": "--interp-skip"}
    # "kernel" as a word stays; "interp_skip_x" and "X_val" are other names
    message = "window: the kernel of interp_skip_x and X_val, not X"
    assert cli_message(message, "fit", names) == (
        "fit: window: the kernel of interp_skip_x and X_val, not DATA"
    )


def test_cli_fit_and_predict_sites_errors_name_options(tmp_path, capsys) -> None:
    import numpy as np
    import pandas as pd

    from gpvae.app.cli import main

    frame = pd.DataFrame({"t": np.arange(20), "a": np.sin(np.arange(20.0))})
    data = tmp_path / "d.csv"
    frame.to_csv(data, index=False)
    fit = ["fit", str(data), "--time-col", "t", "-o", str(tmp_path / "m"), "--quiet"]
    assert main([*fit, "--interp-cross"]) != 0
    assert "--interp-cross: expected False without --interp-skip, found True" in (
        capsys.readouterr().err
    )
    assert main([*fit, "--period", "7"]) != 0
    err = capsys.readouterr().err
    assert "--period: expected None for --kernel 'matern32'" in err
    # what a period needs, in the command line's words (audit, session 47 CLI #5)
    assert "a period needs one, e.g. --kernel 'matern32+periodic'" in err, err


def test_resume_and_spatial_errors_name_options(tmp_path, capsys) -> None:
    """They said 'DATA: epochs: ...' and 'latent_dim changed', or 'DATA: lengthscale:'."""
    import numpy as np
    import pandas as pd

    from gpvae.app.cli import main

    frame = pd.DataFrame({"t": np.arange(30), "a": np.sin(np.arange(30.0))})
    data = tmp_path / "d.csv"
    frame.to_csv(data, index=False)
    fit = ["fit", str(data), "--time-col", "t", "-o", str(tmp_path / "m"), "--quiet"]
    fit += ["--hidden", "8", "--latent-dim", "2"]
    # --resume where no checkpoint is yet starts afresh, and says so (audit, session 47)
    assert main([*fit, "--epochs", "2", "--resume"]) == 0
    said = f"--resume: no checkpoint in {str(tmp_path / 'm' / 'checkpoints')!r} yet; fitting"
    assert said in capsys.readouterr().out
    capsys.readouterr()
    assert main([*fit, "--epochs", "1", "--resume"]) != 0
    assert capsys.readouterr().err.startswith("error: --epochs: expected at least the 2 epochs")
    sites = pd.DataFrame(
        {
            "site": np.repeat(["a", "b", "c"], 20),
            "t": np.tile(np.arange(20), 3),
            "lat": np.repeat([39.9, 40.0, 40.1], 20),
            "lon": np.repeat([116.3, 116.4, 116.5], 20),
            "y": np.random.default_rng(0).standard_normal(60),
        }
    )
    sites.to_csv(tmp_path / "s.csv", index=False)
    spatial = ["fit", str(tmp_path / "s.csv"), "--time-col", "t", "--id-col", "site"]
    spatial += ["--coord-cols", "lat,lon", "-o", str(tmp_path / "sm"), "--quiet"]
    assert main([*spatial, "--window", "10", "--lengthscale", "3,6", "--latent-dim", "2"]) != 0
    assert capsys.readouterr().err.startswith("error: --lengthscale: expected one number")


def test_fit_warnings_name_the_options_as_they_come(tmp_path, monkeypatch, capsys) -> None:
    """fit's warnings said the Python arguments (window=W, batch_size, patience): the
    command line has --window, --batch-size and --patience."""
    import warnings

    import numpy as np
    import pandas as pd

    from gpvae import settings
    from gpvae.app.cli import main

    monkeypatch.setattr(settings, "DENSE_PRIOR_WARN_POINTS", 30)
    frame = pd.DataFrame({"t": np.arange(40), "a": np.sin(np.arange(40.0))})
    data = tmp_path / "d.csv"
    frame.to_csv(data, index=False)
    fit = ["fit", str(data), "--time-col", "t", "-o", str(tmp_path / "m"), "--quiet"]
    fit += ["--hidden", "8", "--latent-dim", "2", "--kernel", "rbf", "--epochs", "50"]
    fit += ["--patience", "1"]
    assert main(fit) == 0
    said = capsys.readouterr().err.splitlines()
    (dense,) = [text for text in said if "GP prior is dense" in text]
    assert "give --window W (e.g. 512)" in dense
    assert "--kernel 'rbf' has no state-space form" in dense
    (few,) = [text for text in said if "optimiser steps" in text]
    assert "(--patience 1 epochs without improvement)" in few
    assert "Use a smaller --batch-size" in few
    assert "or --window to cut long series" in few
    assert all("window=" not in text and "batch_size" not in text for text in said)
    # outside the block the Python names stay
    from gpvae.app.cli.errors import cli_warning_words

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with cli_warning_words({"window": "--window"}):
            warnings.warn("give window=W", UserWarning, stacklevel=1)
        warnings.warn("give window=W", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["give --window W", "give window=W"]
    assert all(isinstance(w.message, UserWarning) for w in caught)


def test_spatial_fit_and_backtest_warnings_name_the_options(tmp_path, capsys) -> None:
    """fit --coord-cols and backtest (its refits) said the Python arguments in the training
    advice (batch_size, patience (or None ...), window=) where plain fit says the options."""
    import numpy as np
    import pandas as pd

    from gpvae.app.cli import main

    rng = np.random.default_rng(0)
    sites = pd.DataFrame(
        {
            "site": np.repeat(["a", "b", "c"], 20),
            "t": np.tile(np.arange(20), 3),
            "lat": np.repeat([39.9, 40.0, 40.1], 20),
            "lon": np.repeat([116.3, 116.4, 116.5], 20),
            "y": rng.standard_normal(60),
        }
    )
    sites.to_csv(tmp_path / "s.csv", index=False)
    spatial = ["fit", str(tmp_path / "s.csv"), "--time-col", "t", "--id-col", "site"]
    spatial += ["--coord-cols", "lat,lon", "-o", str(tmp_path / "sm"), "--quiet"]
    spatial += ["--window", "10", "--hidden", "8", "--latent-dim", "2", "--epochs", "30"]
    frame = pd.DataFrame({"t": np.arange(60), "a": rng.standard_normal(60)})
    frame.to_csv(tmp_path / "d.csv", index=False)
    fit = ["fit", str(tmp_path / "d.csv"), "--time-col", "t", "-o", str(tmp_path / "m")]
    fit += ["--quiet", "--hidden", "8", "--latent-dim", "2", "--epochs", "30"]
    backtest = ["backtest", str(tmp_path / "m"), str(tmp_path / "d.csv"), "--horizon", "6"]
    backtest += ["--origins", "2", "-o", str(tmp_path / "bt.json")]
    assert main([*fit, "--patience", "1"]) == 0  # the model that backtest refits
    capsys.readouterr()
    for command in ([*spatial, "--patience", "1"], backtest):
        assert main(command) == 0
        said = capsys.readouterr().err.splitlines()
        few = [text for text in said if "optimiser steps" in text]
        assert few, (command[0], said)
        assert all("Use a smaller --batch-size" in text for text in few), few
        assert all("(or 0 with enough epochs)" in text for text in few), few
        assert all("batch_size" not in t and "window=" not in t for t in said), said


def test_fit_says_a_numerical_failure_in_its_own_words(tmp_path, monkeypatch, capsys) -> None:
    """A numerical failure in training (a Kalman Cholesky, lr=30) was said as DATA's error
    ("error: DATA: markov backend ..."); the estimator's advice of patience=None (never
    stop early) reads as the command line's --patience 0; --help says how never to stop."""
    import warnings

    import numpy as np
    import pandas as pd

    from gpvae import GPVAE
    from gpvae.app.cli import main
    from gpvae.errors import NumericalError

    frame = pd.DataFrame({"t": np.arange(40), "a": np.sin(np.arange(40.0))})
    data = tmp_path / "d.csv"
    frame.to_csv(data, index=False)
    fit = ["fit", str(data), "--time-col", "t", "-o", str(tmp_path / "m"), "--quiet"]
    fit += ["--hidden", "8", "--latent-dim", "2", "--epochs", "2"]

    def fails(self, *args, **kwargs):
        warnings.warn(
            "training: early stopping ended the fit: use a larger patience (or None with "
            "enough epochs); to never stop, give patience=None",
            UserWarning,
            stacklevel=2,
        )
        raise NumericalError("markov backend: Cholesky of the filter covariance failed")

    monkeypatch.setattr(GPVAE, "fit", fails)
    assert main(fit) == 1
    said = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert said[-1] == "error: markov backend: Cholesky of the filter covariance failed", said
    (warned,) = [line for line in said if line.startswith("warning: ")]
    assert "a larger --patience (or 0 with enough epochs)" in warned, warned
    assert "to never stop, give --patience 0" in warned, warned
    assert "None" not in warned, warned
    assert main(["fit", "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "(0: never stop early;" in shown, shown


def test_quoted_names_are_not_options() -> None:
    """Audit R #6: a feature named 'X' became 'DATA' in the command line's words."""
    from gpvae.app.cli.errors import _option_words

    names = {"X": "DATA", "window": "--window"}
    assert _option_words("for feature(s) 'X' (8); give window=W", names) == (
        "for feature(s) 'X' (8); give --window W"
    )
    assert _option_words('column "window" and X', names) == 'column "window" and DATA'


def test_forecast_memory_remedy_says_data_rows_on_the_command_line() -> None:
    """forecast's refusal for memory advised 'only the recent history (X[-k:] and its
    times)', which the command line showed as 'DATA[-k:] and its times'."""
    from gpvae.estimator.context import PredictContext

    text = f"num_samples, X: expected less; {PredictContext.draws_remedy(False, 0, 30)}"
    said = cli_message(text, "DATA", {"num_samples": "--num-samples"})
    assert said.startswith("--num-samples, DATA: expected less;")
    assert "or only DATA's recent rows, on which alone the forecast then conditions" in said
    assert "[-k:]" not in said


def test_impute_forecast_detect_show_progress_unless_quiet(tmp_path, monkeypatch, capsys) -> None:
    """gpvae impute on a 1e5-row file ran 45 s with nothing on stderr and had no --quiet
    (audit B3 #6): impute, forecast and detect show a progress bar for long work (here any
    length: PREDICT_PROGRESS_DELAY 0) whatever fit's --quiet was, and --quiet hides it."""
    import numpy as np
    import pandas as pd

    from gpvae import settings
    from gpvae.app.cli import main

    monkeypatch.setattr(settings, "PREDICT_PROGRESS_DELAY", 0.0)
    monkeypatch.setattr(settings, "ANOMALY_WINDOW_BATCH", 2)  # detect's windows: batches
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"id": np.repeat(list("abcdef"), 12), "t": np.tile(np.arange(12), 6)}
        | {"y": rng.standard_normal(72)}
    )
    frame.loc[::5, "y"] = np.nan
    frame.to_csv(tmp_path / "d.csv", index=False)
    fit = ["fit", str(tmp_path / "d.csv"), "--time-col", "t", "--id-col", "id", "--quiet"]
    fit += ["-o", str(tmp_path / "m"), "--epochs", "1", "--batch-size", "2", "--hidden", "8"]
    assert main(fit) == 0
    capsys.readouterr()
    data, model = str(tmp_path / "d.csv"), str(tmp_path / "m")
    commands = {
        "impute": ["impute", model, data, "-o", str(tmp_path / "i.csv")],
        "forecast": ["forecast", model, data, "--horizon", "2", "-o", str(tmp_path / "f.csv")],
        "anomaly scores": ["detect", model, data, "-o", str(tmp_path / "a.csv")],
    }
    for bar, command in commands.items():
        assert main(command) == 0
        assert f"{bar}:" in capsys.readouterr().err, command[0]
        assert main([*command, "--quiet"]) == 0
        assert f"{bar}:" not in capsys.readouterr().err, command[0]


def test_detect_says_the_thresholds_remedies_in_the_command_lines_words(tmp_path, capsys) -> None:
    """detect on data with many more gaps than fit's DATA warns that the alarm flags more
    normal steps (fixA), but its remedy said "call fit_threshold", a Python call the command
    line has none of, and named X: it names DATA and a refit with 'gpvae fit'."""
    import numpy as np
    import pandas as pd

    from gpvae.app.cli import main

    rng = np.random.default_rng(0)
    t = np.arange(80.0)
    frame = pd.DataFrame(
        {"id": np.repeat(["a", "b", "c"], 80), "t": np.tile(t, 3)}
        | {f: np.tile(np.sin(t / (4 + k)), 3) + 0.1 * rng.standard_normal(240)
           for k, f in enumerate("xyz")}
    )  # fmt: skip
    frame.to_csv(tmp_path / "d.csv", index=False)
    fit = ["fit", str(tmp_path / "d.csv"), "--time-col", "t", "--id-col", "id", "--quiet"]
    fit += ["-o", str(tmp_path / "m"), "--epochs", "2", "--hidden", "8", "--window", "40"]
    assert main(fit) == 0
    capsys.readouterr()
    gaps = frame.copy()
    hidden = rng.random((240, 3)) < 0.4
    hidden[:, 0] &= ~hidden.all(axis=1)  # every step keeps an observed entry
    gaps[["x", "y", "z"]] = gaps[["x", "y", "z"]].mask(hidden)
    gaps.to_csv(tmp_path / "g.csv", index=False)
    detect = ["detect", str(tmp_path / "m"), str(tmp_path / "g.csv"), "--quiet"]
    assert main([*detect, "-o", str(tmp_path / "a.csv")]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert "DATA: " in said
    assert "of the entries are missing" in said
    assert "refit with 'gpvae fit' on normal data that has gaps like this data's" in said
    assert "fit_threshold" not in said
    # with a threshold of its own (the quantile of DATA's scores) the warning does not apply
    for own in (["--quantile", "0.99"], ["--threshold", "3"]):
        assert main([*detect, "-o", str(tmp_path / "b.csv"), *own]) == 0
        assert "of the entries are missing" not in capsys.readouterr().err


def test_plots_of_a_durations_time_column_name_hours_on_their_axis(tmp_path, monkeypatch) -> None:
    """A time column of durations is drawn as numbers of hours, and the axis said only its
    name (forecast --plot: 270 ... 310 under "time", audit R #6): it names the unit."""
    import numpy as np
    import pandas as pd

    from gpvae.app.cli import main, tables

    frame = pd.DataFrame(
        {"t": pd.to_timedelta(np.arange(60) * 6, unit="h").astype(str), "a": np.sin(np.arange(60))}
    )
    frame.to_csv(tmp_path / "d.csv", index=False)
    fit = ["fit", str(tmp_path / "d.csv"), "--time-col", "t", "-o", str(tmp_path / "m")]
    assert main([*fit, "--quiet", "--epochs", "1", "--hidden", "8", "--window", "20"]) == 0
    labels: list[str] = []
    monkeypatch.setattr(
        tables, "save_figure", lambda fig, path: labels.append(fig.axes[0].get_xlabel())
    )
    forecast = ["forecast", str(tmp_path / "m"), str(tmp_path / "d.csv"), "--horizon", "3"]
    forecast += ["-o", str(tmp_path / "f.csv"), "--plot", str(tmp_path / "f.png"), "--quiet"]
    assert main(forecast) == 0
    assert labels == ["t (hours)"]
