"""Source adapters: raw datasets on disk (or the embedded demo set) -> clean records.

Every module here registers its adapters with :func:`medfm_hf.sources.base.register_source`.
"""

from __future__ import annotations

import importlib
import pkgutil

from medfm_hf.sources.base import (
    SourceReport,
    SourceSpec,
    get_source,
    list_sources,
    load_source,
    parse_sources_arg,
    register_source,
)

for _info in pkgutil.iter_modules(__path__):
    if _info.name not in ("base",) and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["SourceReport", "SourceSpec", "get_source", "list_sources", "load_source", "parse_sources_arg",
           "register_source"]
