"""``medfm-robust sources [NAME]``: the registered source adapters and the layout each expects."""

from __future__ import annotations

import argparse
import inspect
import textwrap

NAME = "sources"
HELP = "List the data sources (adapters) with the folder layout, licence and origin each expects."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="show the full documentation of one source")


def run(args: argparse.Namespace) -> int:
    from medfm_hf.sources import get_source, list_sources

    if args.name:
        spec = get_source(args.name)
        module = inspect.getmodule(spec.loader)
        print(f"{spec.name}: {spec.description}")
        print(f"  licence:   {spec.licence}")
        print(f"  reference: {spec.reference}")
        print(f"  layout:    {spec.layout}")
        doc = inspect.getdoc(module) if module is not None else None
        if doc:
            print()
            print(doc)
        return 0
    specs = list_sources()
    print(f"{len(specs)} sources (use: --sources NAME=PATH[,NAME=PATH]; details: medfm-robust sources NAME)")
    for spec in specs:
        print()
        print(f"{spec.name}  [{spec.licence}]  {spec.description}")
        if spec.reference:
            print(f"  from:   {spec.reference}")
        print(textwrap.fill(spec.layout, width=100, initial_indent="  layout: ", subsequent_indent="          "))
    return 0
