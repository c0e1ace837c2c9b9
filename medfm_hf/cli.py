"""The ``medfm-robust`` command line.

Subcommands live in :mod:`medfm_hf.commands`, one module each, discovered automatically: a module
defines ``NAME``, ``HELP``, ``configure(parser)`` and ``run(args) -> int``. Adding a subcommand is
adding one file.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from medfm_hf import __version__


def _command_modules():
    from medfm_hf import commands

    mods = []
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mods.append(importlib.import_module(f"medfm_hf.commands.{info.name}"))
    return mods


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medfm-robust",
        description="Robustness benchmark for medical foundation models (datasets, metrics, evaluation).",
    )
    parser.add_argument("--version", action="version", version=f"medfm_hf {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.configure(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from medfm_hf.env import is_main_rank

    level = logging.DEBUG if args.verbose else logging.INFO if is_main_rank() else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    from medfm_hf.errors import USER_ERRORS, report_error

    try:
        return int(args._run(args) or 0)
    except USER_ERRORS as exc:
        # Bad input or a failing environment (disk full, permissions): one clear line, no traceback,
        # printed by rank 0 only under `accelerate launch`.
        return report_error(f"medfm-robust {args.command}", exc)
    except Exception as exc:  # noqa: BLE001 - third-party errors (Hub offline, OpenCV): one line, kept in -v
        if args.verbose:
            raise
        return report_error(f"medfm-robust {args.command}", RuntimeError(f"{type(exc).__name__}: {exc} "
                                                                         "(rerun with -v for the traceback)"))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
