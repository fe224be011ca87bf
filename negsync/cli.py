"""The ``negsync`` command line: argparse subcommands, each a thin parse → one run function.

Every subcommand lives in the module that owns its concept and exposes two functions,
``add_arguments(parser)`` and ``run(args) -> int``; this module only wires them up and imports
each lazily, so ``negsync simulate`` never pays for the Kubernetes client or a cloud SDK.
Bad input exits with code 2 and one line naming the field, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from negsync import __version__
from negsync.errors import ConfigError

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("negsync.sim.command", "model LB membership latency during rollouts and recommend drain settings"),
    "controller": ("negsync.app", "run the syncer against a Kubernetes cluster"),
    "calibrate": ("negsync.calibration.command",
                  "calibrate the simulator from LB access logs and negsync's timeline, or its metrics"),
}


def build_parser(*, only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="negsync", description="Container-native load balancing for Kubernetes.")
    parser.add_argument("--version", action="version", version=f"negsync {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser("version", help="print the version")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if only in (None, name):
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name != module_name:
                    raise
                continue
            module.add_arguments(sub)
            sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in args_list if not a.startswith("-")), None)
    # Only the named subcommand's module is imported ("" = none, for `negsync --version`/`--help`):
    # the controller's pulls in the Kubernetes client and OpenTelemetry.
    parser = build_parser(only=command or "")
    args = parser.parse_args(args_list)
    if args.command == "version":
        print(f"negsync {__version__}")
        return 0
    run = getattr(args, "_run", None)
    if run is None:
        print(f"negsync {args.command}: not built yet in this version", file=sys.stderr)
        return 0 if args.command == "simulate" else 1
    try:
        return int(run(args))
    except ConfigError as exc:
        print(f"negsync {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``negsync simulate | head``): quiet, as the Python docs advise
        # (library/signal.html, "Note on SIGPIPE"): point stdout at devnull so the flush at exit
        # does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
