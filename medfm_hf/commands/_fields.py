"""Command-line options from the dataclass arguments that ``evaluate.py`` / ``finetune.py`` parse with
``HfArgumentParser``, so ``medfm-robust evaluate|finetune`` accept exactly the same options."""

from __future__ import annotations

import argparse
import dataclasses

_TYPES = {"int": int, "int | None": int, "float": float, "float | None": float}


def add_dataclass_arguments(parser: argparse.ArgumentParser, fields) -> None:
    """One option per dataclass field, spelled both ``--a_b`` and ``--a-b``; booleans are flags."""
    for f in fields:
        flags = ["--" + f.name.replace("_", "-")] + (["--" + f.name] if "_" in f.name else [])
        help_ = f.metadata.get("help", "")
        if f.type in (bool, "bool"):
            parser.add_argument(*flags, dest=f.name, action="store_true", help=help_)
            continue
        kw: dict = {"dest": f.name, "help": help_}
        if f.default is dataclasses.MISSING:
            kw["required"] = True
        else:
            kw["default"] = f.default
        kind = _TYPES.get(f.type if isinstance(f.type, str) else getattr(f.type, "__name__", ""))
        if kind is not None:
            kw["type"] = kind
        parser.add_argument(*flags, **kw)
