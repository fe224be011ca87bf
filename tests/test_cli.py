"""The command line's wiring (:mod:`negsync.cli`): lazy subcommands and how a run's outcome becomes an exit code.

Each subcommand's own flags are tested beside its module (tests/test_app.py, tests/sim/test_command.py,
tests/calibration/test_command.py); the reference page against the parser is tests/test_reference.py.
Here a stand-in subcommand module raises what a real one can, so every exit path is reached.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from negsync import __version__, cli
from negsync.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[BaseException | int], None]]:
    """A ``probe`` subcommand whose ``run`` returns or raises what it is told."""
    outcome: list[BaseException | int] = [0]
    module = types.ModuleType("tests_cli_probe")

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--field", default="x")

    def run(args: argparse.Namespace) -> int:
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]

    module.add_arguments = add_arguments  # type: ignore[attr-defined]
    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tests_cli_probe", module)
    monkeypatch.setitem(cli.SUBCOMMANDS, "probe", ("tests_cli_probe", "a stand-in"))

    def set_outcome(value: BaseException | int) -> None:
        outcome[0] = value

    yield set_outcome


def test_the_run_functions_code_is_the_exit_code(probe: Callable[[BaseException | int], None]) -> None:
    probe(3)
    assert cli.main(["probe"]) == 3


def test_a_config_error_is_exit_2_and_one_line_naming_the_field(probe: Callable[[BaseException | int], None],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    probe(ConfigError("--field", "must be a number"))
    assert cli.main(["probe", "--field", "y"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "negsync probe: error: --field: must be a number\n" and captured.out == ""


def test_an_interrupt_is_exit_130_without_a_traceback(probe: Callable[[BaseException | int], None],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    probe(KeyboardInterrupt())
    assert cli.main(["probe"]) == 130
    assert capsys.readouterr().err == ""


def test_a_closed_pipe_is_exit_141_and_stdout_goes_quiet(probe: Callable[[BaseException | int], None],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """``negsync simulate | head``: stdout is pointed at devnull so the flush at exit cannot raise again."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    with open(write_end, "w") as stdout:
        monkeypatch.setattr(sys, "stdout", stdout)
        probe(BrokenPipeError())
        assert cli.main(["probe"]) == 141
        stdout.write("more output\n")
        stdout.flush()  # would raise BrokenPipeError had the fd still been the closed pipe


def test_other_errors_are_not_swallowed(probe: Callable[[BaseException | int], None]) -> None:
    probe(RuntimeError("a bug"))
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["probe"])


def test_version_subcommand_and_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["version"]) == 0
    assert capsys.readouterr().out == f"negsync {__version__}\n"
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out == f"negsync {__version__}\n"


def test_an_unknown_subcommand_is_argparse_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["frobnicate"])
    assert exited.value.code == 2 and "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_a_missing_subcommand_module_leaves_the_others_working(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(cli.SUBCOMMANDS, "later", ("negsync.not_built_yet", "a future command"))
    assert cli.main(["later"]) == 1
    assert "negsync later: not built yet in this version" in capsys.readouterr().err


def test_only_the_named_subcommands_module_is_imported() -> None:
    """``negsync simulate`` never pays for the Kubernetes client or a cloud SDK."""
    code = ("import sys\nfrom negsync.cli import main\n"
            "try:\n    main(['simulate', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'kubernetes', 'boto3', 'googleapiclient'}),"
            " 'negsync.app' in sys.modules, 'negsync.sim.command' in sys.modules, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True,
                            cwd=REPO)
    assert result.stderr.strip().splitlines()[-1] == "[] False True"
