"""The command line's start: ``gpvae``, ``gpvae --help`` and ``gpvae --version`` import
neither torch nor pandas (seconds), and their output is the one of the imported commands.

- ``import gpvae`` imports the estimator, ``gp`` and ``kernels`` on first use; every name of
  ``gpvae.__all__`` is there.
- The group's help lists every command of ``gpvae.app.cli.commands.COMMANDS`` with the short
  help read from its module's source, which is the imported command's short help (without
  the sources, the commands are imported and list themselves).
- The distributed checks of :func:`gpvae.app.cli.main` skip torch only where the answer
  cannot depend on it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
