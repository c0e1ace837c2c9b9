"""``medfm-robust info``: versions and what this installation provides."""

from __future__ import annotations

import argparse

from medfm_hf.env import versions

NAME = "info"
HELP = "Show package versions, modalities and the registered components."


def configure(parser: argparse.ArgumentParser) -> None:
    del parser


def run(args: argparse.Namespace) -> int:
    from medfm_hf import MODALITIES, TASKS, __version__

    print(f"medfm_hf {__version__}")
    for name, ver in versions().items():
        print(f"  {name:16s} {ver}")
    print(f"modalities: {', '.join(MODALITIES)}")
    print(f"tasks: {', '.join(TASKS)}")
    return 0
