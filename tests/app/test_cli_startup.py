"""The command line's start: ``gpvae``, ``gpvae --help`` and ``gpvae --version`` import
neither torch nor pandas (seconds), and their output is the one of the imported commands.

- ``import gpvae`` imports the estimator, ``gp`` and ``kernels`` on first use; every name of
  ``gpvae.__all__`` is there.
- The group's help lists every command of ``gpvae.app.cli.commands.COMMANDS`` with the short
  help read from its module's source, which is the imported command's short help (without
  the sources, the commands are imported and list themselves).
- The distributed checks of :func:`gpvae.app.cli.main` skip torch only where the answer
  cannot depend on it.
- Every command's ``--help`` and its usage errors (found by click before any work) import
  neither torch nor pandas: the command modules import them where the work starts, and the
  choices of ``fit`` come from :mod:`gpvae.app.cli.choices`, which holds the registries' names.
- What a command can check before its work, it checks first: a Parquet OUT without a Parquet
  engine is refused before MODEL_DIR is read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest

import gpvae.app.cli as cli_module
from gpvae.app.cli import main
from gpvae.app.cli.commands import COMMANDS

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


def _runs_in_fresh_process(runs: list[list[str]]) -> dict[str, object]:
    """``main(args)`` for each of ``runs`` in one new interpreter: ``found``, [exit code,
    stdout, stderr] per run, and ``heavy``, the modules of HEAVY it imported."""
    code = (
        "import contextlib, io, json, sys\n"
        "from gpvae.app.cli import main\n"
        "found = []\n"
        f"for args in {runs!r}:\n"
        "    out, err = io.StringIO(), io.StringIO()\n"
        "    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):\n"
        "        rc = main(args)\n"
        "    found.append([rc, out.getvalue(), err.getvalue()])\n"
        f"print(json.dumps({{'found': found,\n"
        f"                  'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))\n"
    )
    return _fresh(code)


@pytest.mark.parametrize("args", [["--help"], ["-h"], [], ["--version"]])
def test_group_help_and_version_import_neither_torch_nor_pandas(args: list[str]) -> None:
    code = (
        "import contextlib, io, json, sys\n"
        "from gpvae.app.cli import main\n"
        "out, err = io.StringIO(), io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):\n"
        f"    rc = main({args!r})\n"
        f"print(json.dumps({{'rc': rc, 'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))\n"
    )
    found = _fresh(code)
    assert found == {"rc": 2 if not args else 0, "heavy": []}


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


def test_the_package_modules_are_attributes_of_gpvae_on_first_use() -> None:
    # an eager ``import gpvae`` had loaded gpvae.data and gpvae.settings with the estimator,
    # and the README uses them so (gpvae.data.merge_duplicate_times): lazily they were gone
    code = (
        "import json, sys\n"
        "import gpvae\n"
        "light = not any(m in sys.modules for m in ('torch', 'pandas'))\n"
        "names = [gpvae.settings.EARLY_STOP_MIN_STEPS > 0,\n"
        "         callable(gpvae.data.merge_duplicate_times),\n"
        "         gpvae.estimator.GPVAE is gpvae.GPVAE, gpvae.errors.ValidationError.__name__]\n"
        "print(json.dumps({'light': light, 'names': names}))\n"
    )
    found = _fresh(code)
    assert found["light"] is True
    assert found["names"] == [True, True, True, "ValidationError"]


def test_unknown_attribute_of_gpvae_is_an_attribute_error() -> None:
    import gpvae

    with pytest.raises(AttributeError, match="module 'gpvae' has no attribute 'GPVae'"):
        _ = gpvae.GPVae  # type: ignore[attr-defined]


def test_the_listed_commands_are_the_commands() -> None:
    assert list(cli_module.COMMAND_MODULES) == [c.name for c in COMMANDS]
    for name, module in cli_module.COMMAND_MODULES.items():
        command = next(c for c in COMMANDS if c.name == name)
        assert command.callback is not None
        assert command.callback.__module__ == f"gpvae.app.cli.commands.{module}"


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
@pytest.mark.parametrize("limit", [20, 45, 86, 200])
def test_short_help_read_from_source_is_the_commands(command: click.Command, limit: int) -> None:
    assert command.name is not None
    shown = cli_module._short_help_command(command.name)
    assert shown.get_short_help_str(limit) == command.get_short_help_str(limit)


def test_group_help_before_and_after_importing_the_commands_is_the_same() -> None:
    code = (
        "import contextlib, io, json\n"
        "import click\n"
        "from gpvae.app.cli import cli, main\n"
        "def helped():\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        main(['--help'])\n"
        "    return out.getvalue()\n"
        "lazy = helped()\n"
        "before = dict(cli.commands)\n"
        "cli.get_command(click.Context(cli), 'fit')\n"
        "print(json.dumps({'lazy': lazy, 'loaded': helped(), 'before': list(before),\n"
        "                  'after': list(cli.commands)}))\n"
    )
    found = _fresh(code)
    assert found["before"] == []
    assert found["after"] == [c.name for c in COMMANDS]
    assert found["lazy"] == found["loaded"]
    assert "  predict-sites  Predict every feature at the sites of SITES" in str(found["lazy"])


def test_group_help_without_the_command_sources_imports_the_commands() -> None:
    # an install that ships only .pyc files (or runs from a zip) has no sources to read
    code = (
        "import contextlib, io, json\n"
        "import gpvae.app.cli as cli_module\n"
        "def unreadable(name):\n"
        "    raise FileNotFoundError(name)\n"
        "cli_module._short_help_command = unreadable\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    code = cli_module.main(['--help'])\n"
        "print(json.dumps({'code': code, 'help': out.getvalue(),\n"
        "                  'loaded': list(cli_module.cli.commands)}))\n"
    )
    found = _fresh(code)
    assert found["code"] == 0
    assert found["loaded"] == [c.name for c in COMMANDS]
    for command in COMMANDS:
        assert f"  {command.name}  " in str(found["help"])


def test_unknown_command_still_suggests_the_close_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fitt"]) == 2
    assert "No such command 'fitt'. Did you mean 'fit'?" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("env", "launched", "main_process"),
    [
        ({"WORLD_SIZE": "2", "RANK": "1"}, True, False),
        ({"WORLD_SIZE": "2", "RANK": "0"}, True, True),
        ({"WORLD_SIZE": "1", "RANK": "0"}, False, True),
        ({}, False, True),
    ],
)
def test_distributed_checks_are_those_of_the_training_layer(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], launched: bool, main_process: bool
) -> None:
    from gpvae.training import distributed

    for name in ("WORLD_SIZE", "RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli_module._launched() is launched is distributed.launched()
    assert cli_module._is_main_process() is main_process is distributed.is_main_process()


def test_distributed_checks_in_a_fresh_process_without_torchrun_skip_torch() -> None:
    code = (
        "import json, os, sys\n"
        "os.environ.pop('WORLD_SIZE', None)\n"
        "from gpvae.app import cli\n"
        "found = [cli._launched(), cli._is_main_process()]\n"
        "print(json.dumps({'found': found, 'torch': 'torch' in sys.modules}))\n"
    )
    assert _fresh(code) == {"found": [False, True], "torch": False}


#: Per command: a usage error that click finds before any data is read (a missing argument,
#: an unknown option, a bad value of a choice or a typed option).
USAGE_ERRORS = {
    "demo": ["demo", "--epochs", "abc"],
    "fit": ["fit", "x.csv", "--time-col", "t", "-o", "m", "--kernel", "bogus"],
    "impute": ["impute", "m", "x.csv", "-o", "o.csv", "--num-samples", "0"],
    "forecast": ["forecast", "m", "x.csv", "-o", "o.csv"],
    "backtest": ["backtest", "m", "x.csv", "-o", "o", "--horizon", "2", "--refit", "bogus"],
    "detect": ["detect", "m", "x.csv", "-o", "o.csv", "--threshold", "nan"],
    "sample": ["sample", "m", "--length", "x", "-o", "o.csv"],
    "predict-sites": ["predict-sites", "m", "x.csv"],
}


@pytest.mark.parametrize("name", list(cli_module.COMMAND_MODULES))
def test_command_help_and_usage_errors_import_neither_torch_nor_pandas(name: str) -> None:
    runs = [[name, "--help"], [name, "--no-such-option"], USAGE_ERRORS[name]]
    if name != "demo":
        runs.append([name])
    found = _runs_in_fresh_process(runs)
    assert found["heavy"] == []
    (help_rc, helped, _), *errors = found["found"]  # type: ignore[misc]
    assert help_rc == 0
    assert helped.startswith(f"Usage: gpvae {name} [OPTIONS]")
    for rc, out, err in errors:
        assert (rc, out) == (2, "")
        assert err.startswith("error: "), err
        assert err.endswith(f"(see 'gpvae {name} --help')\n"), err


@pytest.mark.parametrize("name", list(cli_module.COMMAND_MODULES))
def test_threads_before_a_command_help_or_usage_error_imports_no_torch(name: str) -> None:
    """``gpvae --threads N`` set torch's threads in the group's callback, which click runs
    before it parses the command's arguments: ``--threads 1 fit --help`` imported torch
    (2-3 s) for a help that needs none. The command applies it once its arguments parse."""
    runs = [["--threads", "1", name, "--help"], ["--threads", "2", *USAGE_ERRORS[name]]]
    found = _runs_in_fresh_process(runs)
    assert found["heavy"] == []
    (help_rc, helped, _), (rc, out, err) = found["found"]  # type: ignore[misc]
    assert (help_rc, rc, out) == (0, 2, "")
    assert helped.startswith(f"Usage: gpvae {name} [OPTIONS]")
    assert err.endswith(f"(see 'gpvae {name} --help')\n"), err


def test_threads_are_set_before_the_commands_work(tmp_path: Path) -> None:
    # the command fails on its MODEL_DIR, after its arguments parsed: --threads is set
    args = ["--threads", "3", "sample", str(tmp_path / "no-model"), "--length", "5"]
    code = (
        "import contextlib, io, json\n"
        "from gpvae.app.cli import main\n"
        "err = io.StringIO()\n"
        "with contextlib.redirect_stderr(err):\n"
        f"    rc = main({[*args, '-o', str(tmp_path / 's.csv')]!r})\n"
        "import torch\n"
        "print(json.dumps({'rc': rc, 'err': err.getvalue()[:29], 'n': torch.get_num_threads()}))\n"
    )
    assert _fresh(code) == {"rc": 1, "err": "error: MODEL_DIR: not found: ", "n": 3}


def test_every_command_applies_threads() -> None:
    from gpvae.app.cli.options import Command

    assert all(isinstance(command, Command) for command in COMMANDS)


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("0", "0 is not in the range x>=1"),
        ("-1", "-1 is not in the range x>=1"),
        ("x", "'x' is not a valid integer range"),
    ],
)
def test_bad_threads_are_usage_errors_naming_threads(
    value: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--threads", value, "fit"]) == 2
    assert capsys.readouterr().err == (
        f"error: Invalid value for '--threads': {said}. (see 'gpvae --help')\n"
    )


def test_fit_bad_choice_lists_the_registrys_names_without_torch() -> None:
    code = (
        "import contextlib, io, json, sys\n"
        "from gpvae.app.cli import main\n"
        "err = io.StringIO()\n"
        "with contextlib.redirect_stderr(err):\n"
        f"    rc = main({USAGE_ERRORS['fit']!r})\n"
        "print(json.dumps({'rc': rc, 'err': err.getvalue(), 'torch': 'torch' in sys.modules}))\n"
    )
    found = _fresh(code)
    from gpvae.kernels import kernel_names

    listed = ", ".join(map(repr, kernel_names()))
    assert found == {
        "rc": 2,
        "err": f"error: Invalid value for '--kernel': 'bogus' is not one of {listed}. "
        "(see 'gpvae fit --help')\n",
        "torch": False,
    }


def test_command_line_choices_are_the_registries() -> None:
    from gpvae.app.cli import choices
    from gpvae.data.holdout import HIDE_PATTERNS, MASK_PATTERNS
    from gpvae.kernels import available_kernels, kernel_names
    from gpvae.likelihoods import _ALIASES, likelihood_names
    from gpvae.nets.registry import decoder_names, encoder_names

    assert list(choices.KERNEL_NAMES) == kernel_names()
    assert sorted((*choices.KERNEL_NAMES, *choices.KERNEL_ALIASES)) == available_kernels()
    assert list(choices.LIKELIHOOD_NAMES) == likelihood_names()
    assert choices.LIKELIHOOD_ALIASES == _ALIASES
    assert list(choices.ENCODER_NAMES) == encoder_names()
    assert list(choices.DECODER_NAMES) == decoder_names()
    assert choices.MASK_PATTERNS == MASK_PATTERNS
    assert choices.HIDE_PATTERNS == HIDE_PATTERNS


def _key_or_error(key: Any, value: object) -> str:
    from gpvae.errors import GPVAEError

    try:
        return str(key(value))
    except GPVAEError:
        return "error"


#: Values for the keys: names, aliases, other cases and '-', composites, blanks, unknowns.
KEY_VALUES = [
    *("matern32", "SE", " Rational-Quadratic ", "periodic_exact", "Periodic-Exact"),
    *("matern32+periodic", "periodic * Matern32", "rbf+", "+", "*rbf", "rbf++white", ""),
    *("gaussian", "Student-T", "studentt", "STUDENTT", "gaussian-gp-per-feature", "t"),
    *("mlp", "CNN", "partial", "Conv", "gru ", "lstm", "bogus", "matern 32", None, 3),
]


@pytest.mark.parametrize("value", KEY_VALUES)
def test_command_line_keys_take_what_the_registries_take(value: object) -> None:
    from gpvae.app.cli import choices
    from gpvae.kernels import kernel_key
    from gpvae.likelihoods import likelihood_key
    from gpvae.nets.registry import decoder_key, encoder_key

    for ours, theirs in [
        (choices.kernel_key, kernel_key),
        (choices.likelihood_key, likelihood_key),
        (choices.encoder_key, encoder_key),
        (choices.decoder_key, decoder_key),
    ]:
        assert _key_or_error(ours, value) == _key_or_error(theirs, value)


def test_remedies_are_made_on_first_use_from_the_estimators_words() -> None:
    import re

    from gpvae.app.cli import errors
    from gpvae.estimator.forecasting import CALIBRATE_REMEDY, UNCALIBRATED_REMEDY

    said = [
        re.sub(a, c, t)
        for t in (UNCALIBRATED_REMEDY, CALIBRATE_REMEDY.format(furthest=30))
        for a, c in errors.REMEDIES
        if re.search(a, t)
    ]
    assert said == [
        "refit with 'gpvae fit --forecast-horizon H' to calibrate them",
        "refit with 'gpvae fit --forecast-horizon 30' to calibrate them",
    ]
    with pytest.raises(AttributeError, match="has no attribute 'REMEDY'"):
        _ = errors.REMEDY  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["impute", "{tmp}/no-model", "x.csv", "-o", "{tmp}/out.parquet"], "a Parquet file"),
        (["impute", "{tmp}/no-model", "x.csv", "-o", "{tmp}/parts"], "a folder of Parquet parts"),
        (
            ["forecast", "{tmp}/no-model", "x.csv", "--horizon", "2", "-o", "{tmp}/f.pq"],
            "a Parquet file",
        ),
        (["sample", "{tmp}/no-model", "--length", "5", "-o", "{tmp}/s.parquet"], "a Parquet file"),
        (["impute", "{tmp}/no-model", "x.csv", "-o", "{tmp}/out.csv"], None),
    ],
)
def test_parquet_out_without_an_engine_is_refused_before_the_work(
    args: list[str], said: str | None, tmp_path: Path
) -> None:
    """Without pyarrow (and fastparquet) a .parquet OUT, file or folder, failed only when
    the table was written, after the model was loaded and used; it is refused with the
    other checks of OUT, before MODEL_DIR is even read (a CSV OUT is not)."""
    args = [a.format(tmp=tmp_path) for a in args]
    code = (
        "import contextlib, io, json, sys\n"
        "sys.modules['pyarrow'] = sys.modules['fastparquet'] = None  # neither imports\n"
        "from pandas.io.parquet import get_engine\n"
        "try:\n"
        "    get_engine('auto')\n"
        "    hidden = False\n"
        "except ImportError:\n"
        "    hidden = True\n"
        "from gpvae.app.cli import main\n"
        "err = io.StringIO()\n"
        "with contextlib.redirect_stderr(err):\n"
        f"    rc = main({args!r})\n"
        "print(json.dumps({'hidden': hidden, 'rc': rc, 'err': err.getvalue()}))\n"
    )
    found = _fresh(code)
    assert found["hidden"] is True
    assert found["rc"] == 1
    if said is None:
        assert str(found["err"]).startswith(f"error: MODEL_DIR: not found: '{tmp_path}/no-model'")
        return
    assert str(found["err"]).startswith(
        f"error: OUT: writing {said} needs pyarrow or fastparquet, neither of which imports ("
    )
    assert str(found["err"]).endswith(
        "): install pyarrow (pip install pyarrow), or give OUT a .csv file name\n"
    )
    assert not (tmp_path / "parts").exists()
